"""Training and inference speed of our models against MONAI's, in one process, with the machine's peak.

    python benchmarks/speed.py                 # the default grid for this device (a few minutes on 2 cores)
    python benchmarks/speed.py --full          # every model x setting (long on a CPU)
    python benchmarks/speed.py --device cuda   # on a GPU (bf16, channels_last, torch.compile, CUDA graphs)

For each model and setting it reports: parameters, forward GFLOPs per image (counted with
``torch.utils.flop_counter``, 1 multiply-add = 2 FLOPs), training images/s (forward + backward + Adam
step; counted as 3x the forward FLOPs), inference images/s (no grad), and the achieved GFLOP/s as a
fraction of the peak of 3x3 convolutions (the best over the U-Net's level shapes) measured in the same
run with the same dtype and memory format; on CUDA also as a fraction of the bf16 matrix-product peak.
Compile settings: eager, ``torch.compile`` (default mode) and, on CUDA only, CUDA graphs
(``torch.compile(mode="reduce-overhead")``, which captures the compiled step as a graph and replays it,
removing the per-kernel launch cost that dominates small batches). References in the same run: MONAI ``UNet`` (channels
32..512, strides 2, 2 residual units) and ``AttentionUnet`` (install with ``pip install -e .[bench]``). Results go to
``benchmarks/results/speed-<device>-<time>.json`` and the printed table is markdown.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from polypseg.atomic import atomic_write_text
from polypseg.device import cpu_flags, cpu_has_bf16_units, cpu_kind, cpu_model_name
from polypseg.models import build_model

RESULTS = Path(__file__).resolve().parent / "results"


#: /proc/cpuinfo flags worth naming: the vector units that decide CPU speed here.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx_vnni", "avx512_vnni")


def cpu_info() -> dict:
    """The CPU's model name and kind (:func:`polypseg.device.cpu_kind`: with family and model, which the name
    alone does not tell apart), core count, the :data:`ISA_FLAGS` it has, ``ONEDNN_MAX_CPU_ISA`` (an emulated
    narrower CPU when set) and whether bf16 runs on units (not emulated)."""
    flags = cpu_flags()
    return {"model": cpu_model_name(), "kind": cpu_kind(), "cores": os.cpu_count(),
            "isa": {f: f in flags for f in ISA_FLAGS},
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"), "bf16_units": cpu_has_bf16_units(),
            "aten_cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY"),
            "mkl_enable_instructions": os.environ.get("MKL_ENABLE_INSTRUCTIONS")}  # fmt: skip


#: MONAI's reference models (the 'bench' extra), by the names :func:`monai_models` gives them.
MONAI_MODELS = ("monai_unet", "monai_attention_unet")


def monai_models() -> dict[str, Callable[[], nn.Module]]:
    try:
        from monai.networks.nets import AttentionUnet, UNet
    except ImportError:
        print("MONAI is not installed (pip install -e .[bench]): reference rows are skipped")
        return {}
    return {
        "monai_unet": lambda: UNet(2, 3, 1, channels=(32, 64, 128, 256, 512), strides=(2, 2, 2, 2), num_res_units=2),
        "monai_attention_unet": lambda: AttentionUnet(2, 3, 1, channels=(32, 64, 128, 256, 512), strides=(2, 2, 2, 2)),
    }


def our_models() -> dict[str, Callable[[], nn.Module]]:
    return {
        "unet_b16": lambda: build_model("unet", base=16),
        "unet_b16_s2": lambda: build_model("unet", base=16, stem_stride=2),  # the real-time model's shape
        "unet_b32": lambda: build_model("unet", base=32),
        "unet_b32_s2": lambda: build_model("unet", base=32, stem_stride=2),  # MONAI UNet's FLOPs, our blocks
        "unet_b64": lambda: build_model("unet", base=64),
        "attention_unet_b32": lambda: build_model("attention_unet", base=32),
    }


def select_models(names: list[str] | None) -> dict[str, Callable[[], nn.Module]]:
    """The model makers to measure: all of ours and MONAI's (``names`` None or empty), else those named. A name
    of :data:`MONAI_MODELS` without MONAI installed is skipped with a printed line (a GPU run keeps our rows).

    Raises:
        SystemExit: a name that is neither one of ours nor one of :data:`MONAI_MODELS`.
    """
    makers = {**our_models(), **monai_models()}
    if not names:
        return makers
    unknown = [n for n in names if n not in our_models() and n not in MONAI_MODELS]
    if unknown:
        raise SystemExit(f"--models {' '.join(unknown)}: no such model here; known: "
                         f"{', '.join([*our_models(), *MONAI_MODELS])}")  # fmt: skip
    skipped = [n for n in names if n not in makers]
    if skipped:
        print(f"skipped {', '.join(skipped)}: MONAI is not installed (pip install -e .[bench])", flush=True)
    return {k: v for k, v in makers.items() if k in names}


def write_result(path: Path, result: dict) -> None:
    """Write ``result`` as JSON to ``path`` atomically: speed.py rewrites its file after every row and gpu.sh
    stops it with SIGINT at its time limit, which must leave the rows already written, never a truncated file."""
    atomic_write_text(path, json.dumps(result, indent=1))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def forward_gflops(model: nn.Module, size: int, device: torch.device) -> float:
    x = torch.randn(1, 3, size, size, device=device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(x)
    return counter.get_total_flops() / 1e9


def timed(fn: Callable[[], None], device: torch.device, min_seconds: float, min_iters: int = 2) -> float:
    """Seconds per call of ``fn`` after one warm-up call (repeats until both minimums are reached)."""
    fn()
    sync(device)
    n, t0 = 0, time.perf_counter()
    while n < min_iters or time.perf_counter() - t0 < min_seconds:
        fn()
        n += 1
    sync(device)
    return (time.perf_counter() - t0) / n


#: How the table names a row's compile setting.
COMPILE_LABEL: dict[bool | str, str] = {False: "no", True: "yes", "graphs": "CUDA graphs"}

#: (batch, channels, side) of the 3x3 convolutions probed for the peak: the U-Net's own level shapes.
PEAK_SHAPES = ((8, 64, 128), (8, 128, 64), (8, 256, 32), (8, 512, 16))


def conv_peak(device: torch.device, bf16: bool, channels_last: bool, min_seconds: float) -> float:
    """Peak GFLOP/s: the best of 3x3 convolutions C -> C over :data:`PEAK_SHAPES`, forward only.

    (A single 64-channel probe underestimates the peak: the wider convolutions of the deeper U-Net
    levels run faster, so models then appear to exceed 100 % of it.)
    """
    best = 0.0
    ctx = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else nullcontext
    for n, c, side in PEAK_SHAPES:
        conv = nn.Conv2d(c, c, 3, padding=1, bias=False).to(device)
        x = torch.randn(n, c, side, side, device=device)
        if channels_last:
            conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        flops = 2 * n * c * c * 9 * side * side

        @torch.no_grad()
        def run(conv: nn.Module = conv, x: torch.Tensor = x) -> None:
            with ctx():
                conv(x)

        best = max(best, flops / timed(run, device, min_seconds / len(PEAK_SHAPES)) / 1e9)
    return best


def matmul_peak(device: torch.device, min_seconds: float, n: int = 8192) -> float:
    """bf16 matrix-product GFLOP/s (n x n x n, random data): the GPU's matrix peak as the hardware runs it."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    return 2 * n**3 / timed(lambda: torch.mm(a, b), device, min_seconds, min_iters=5) / 1e9


def make_train_step(
    model: nn.Module, runner: nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool
) -> Callable[[], None]:
    """One training step (forward under optional bf16 autocast, BCE, backward, Adam) on a fixed batch.

    ``runner`` is ``model`` or its compiled form; the optimiser holds ``model``'s parameters.
    """
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    ctx = (lambda: torch.autocast(x.device.type, dtype=torch.bfloat16)) if bf16 else nullcontext

    def train_step() -> None:
        with ctx():
            out = runner(x)
        loss = nn.functional.binary_cross_entropy_with_logits(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return train_step


def measure(
    make: Callable[[], nn.Module],
    device: torch.device,
    size: int,
    batch: int,
    bf16: bool,
    channels_last: bool,
    compiled: bool | str,
    min_seconds: float,
) -> dict[str, float]:
    """Training and inference images/s of one model in one setting.

    ``compiled``: ``False`` (eager), ``True`` (``torch.compile``) or ``"graphs"`` (``torch.compile``
    with ``mode="reduce-overhead"``: CUDA graphs on a GPU).
    """
    torch.manual_seed(0)
    model = make().to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    runner = torch.compile(model, mode="reduce-overhead" if compiled == "graphs" else None) if compiled else model
    x = torch.randn(batch, 3, size, size, device=device)
    y = (torch.rand(batch, 1, size, size, device=device) > 0.9).float()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    train_step = make_train_step(model, runner, x, y, bf16)
    ctx = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else nullcontext

    @torch.no_grad()
    def infer() -> None:
        with ctx():
            runner(x)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model.train()
    t_train = timed(train_step, device, min_seconds)
    model.eval()
    t_infer = timed(infer, device, min_seconds)
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {"train_img_s": batch / t_train, "infer_img_s": batch / t_infer, "peak_mem_mib": peak}


def predictor_fps(device: torch.device, min_seconds: float, bf16_rows: bool = True) -> list[dict]:
    """End-to-end frames/s of :class:`polypseg.inference.Predictor` on 256x256 uint8 frames, batch 8
    (resize, normalise, model, sigmoid, resize back), for the real-time model (U-Net base 16) in fp32,
    bf16 autocast and ONNX Runtime, against the full model (U-Net base 64)."""
    import numpy as np

    from polypseg.inference import Predictor

    frames = [np.random.default_rng(i).integers(0, 256, (256, 256, 3), dtype=np.uint8) for i in range(8)]
    rows = []
    for name, base in (("unet_b16", 16), ("unet_b64", 64)):
        for bf16 in (False, True) if bf16_rows else (False,):
            pred = Predictor(
                build_model("unet", base=base),
                256,
                (0.5,) * 3,
                (0.5,) * 3,
                device=device,
                precision="bf16" if bf16 else "32",
            )
            sec = timed(lambda p=pred: list(p.predict_mask(frames)), device, min_seconds)
            rows.append({"model": name, "backend": "torch " + ("bf16" if bf16 else "fp32"), "fps": 8 / sec})
            print(f"predictor {name} {rows[-1]['backend']}: {rows[-1]['fps']:.1f} frames/s", flush=True)
    if device.type == "cpu":
        try:
            import onnxruntime as ort

            onnx_path = RESULTS / "_speed_unet_b16.onnx"
            model = build_model("unet", base=16).eval()
            torch.onnx.export(model, (torch.randn(2, 3, 256, 256),), str(onnx_path), dynamo=True,
                              input_names=["image"], output_names=["logits"],
                              dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=64)}},
                              external_data=False)  # fmt: skip
            sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
            pred = Predictor(None, 256, (0.5,) * 3, (0.5,) * 3, onnx_session=sess)
            sec = timed(lambda: list(pred.predict_mask(frames)), device, min_seconds)
            rows.append({"model": "unet_b16", "backend": "onnxruntime fp32", "fps": 8 / sec})
            print(f"predictor unet_b16 onnxruntime fp32: {rows[-1]['fps']:.1f} frames/s", flush=True)
            onnx_path.unlink()
        except ImportError:
            print("onnxruntime / onnxscript not installed: ONNX row skipped")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--full", action="store_true", help="every model x setting")
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--min-seconds", type=float, default=2.0)
    ap.add_argument("--gpu-batch", type=int, default=8, help="the larger batch of the GPU grid")
    ap.add_argument("--size", type=int, default=None, help="run the default grid at this image size instead")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile settings")
    ap.add_argument("--results-dir", type=Path, default=RESULTS)
    ap.add_argument("--bf16-anyway", action="store_true", help="keep bf16 rows on a CPU without bf16 units")
    args = ap.parse_args()
    device = torch.device(args.device)
    cpu_desc = cpu_info()
    if device.type == "cpu":
        isa = ", ".join(f for f, on in cpu_desc["isa"].items() if on) or "none of " + ", ".join(ISA_FLAGS)
        emulated = f"; ONEDNN_MAX_CPU_ISA={cpu_desc['onednn_max_cpu_isa']} (emulates a narrower CPU)" if cpu_desc[
            "onednn_max_cpu_isa"] else ""  # fmt: skip
        print(f"CPU: {cpu_desc['model']}, {cpu_desc['cores']} cores; {isa}; bf16 units: "
              f"{'yes' if cpu_desc['bf16_units'] else 'no'}{emulated}", flush=True)  # fmt: skip
    makers = select_models(args.models)
    cpu = device.type == "cpu"
    if args.full:
        modes: list[bool | str] = [False, True] if cpu else [False, True, "graphs"]
        grid = list(itertools.product([256, 352], [1, 8], [False, True], [False, True], modes))
    elif cpu:
        # (size, batch, bf16, channels_last, compiled): the settings that decide the CPU default
        grid = [(256, 8, False, False, False), (256, 8, False, True, False), (256, 8, True, True, False),
                (256, 1, True, True, False), (256, 8, True, True, True)]  # fmt: skip
    else:
        b = args.gpu_batch
        grid = [(352, b, False, False, False), (352, b, True, False, False), (352, b, True, True, False),
                (352, b, True, True, True), (352, b, True, True, "graphs"), (352, 1, True, True, False),
                (352, 1, True, True, "graphs"), (256, b, True, True, False)]  # fmt: skip
    if args.size:
        grid = [(args.size, *g[1:]) for g in grid]
    if args.no_compile:
        grid = [g for g in grid if not g[4]]
    if device.type == "cpu" and not cpu_desc["bf16_units"] and not args.bf16_anyway:
        print("no bf16 units: bf16 would be emulated (about 9x slower than fp32); bf16 rows skipped "
              "(--bf16-anyway keeps them)", flush=True)  # fmt: skip
        grid = [g for g in grid if not g[2]]
    grid = list(dict.fromkeys(grid))
    # compile rows of the default grid: one of ours against MONAI's UNet, plus the real-time model on a GPU
    compiled_models = ("unet_b32", "monai_unet") if cpu else ("unet_b16", "unet_b32", "monai_unet")
    peaks: dict[str, float] = {}
    for bf16, cl in sorted({(g[2], g[3]) for g in grid}):
        key = f"{'bf16' if bf16 else 'fp32'}/{'channels_last' if cl else 'nchw'}"
        peaks[key] = conv_peak(device, bf16, cl, args.min_seconds)
        print(f"peak 3x3 conv {key}: {peaks[key]:.1f} GFLOP/s", flush=True)
    if device.type == "cuda":
        peaks["bf16_matmul_8192"] = matmul_peak(device, args.min_seconds)
        print(f"peak bf16 8192^3 matrix product: {peaks['bf16_matmul_8192']:.0f} GFLOP/s", flush=True)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"speed-{device.type}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    rows: list[dict] = []

    def save(complete: bool) -> None:
        """Written after every row, so a run stopped by its time limit keeps what it measured."""
        out = {
            "complete": complete,
            "predictor_fps_256_batch8": predictor_rows,
            "device": str(device),
            "device_name": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor(),
            "torch": str(torch.__version__),
            "threads": torch.get_num_threads(),
            "cpu": cpu_desc,
            "peaks_gflop_s": peaks,
            "rows": rows,
            "command": "python benchmarks/speed.py"
            + (" --full" if args.full else "")
            + f" --device {device.type}"
            + (f" --size {args.size}" if args.size else "")
            + (" --no-compile" if args.no_compile else "")
            + (" --bf16-anyway" if args.bf16_anyway else "")
            + (f" --models {' '.join(args.models)}" if args.models else ""),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        write_result(path, out)

    # the video figures first, then every eager row, then the compiled ones: a run cut by its time limit
    # (gpu.sh) keeps the Predictor rows and the whole eager table, references included
    skip_bf16 = device.type == "cpu" and not cpu_desc["bf16_units"] and not args.bf16_anyway
    predictor_rows = predictor_fps(device, args.min_seconds, bf16_rows=not skip_bf16)
    save(False)
    jobs = sorted(itertools.product(makers, grid), key=lambda job: bool(job[1][4]))
    probes = {name: make() for name, make in makers.items()}  # for parameter and FLOP counts
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in probes.items()}
    gflops: dict[tuple[str, int], float] = {}  # (model, size) -> forward GFLOP per image, counted once
    for name, (size, batch, bf16, cl, comp) in jobs:
        if cpu and name == "unet_b64" and not bf16 and size > 256:
            continue  # minutes per step on 2 cores
        if comp and not args.full and name not in compiled_models:
            continue  # torch.compile takes minutes per model on 2 cores (and long on a GPU too)
        if (name, size) not in gflops:
            gflops[name, size] = forward_gflops(probes[name], size, torch.device("cpu"))
        gf = gflops[name, size]
        try:
            r = measure(makers[name], device, size, batch, bf16, cl, comp, args.min_seconds)
        except Exception as exc:
            print(f"{name} {size} b{batch} bf16={bf16} cl={cl} compile={comp}: failed: {exc}", flush=True)
            continue
        key = f"{'bf16' if bf16 else 'fp32'}/{'channels_last' if cl else 'nchw'}"
        achieved = r["train_img_s"] * 3 * gf
        row = {
            "model": name, "params_m": params[name] / 1e6, "size": size, "batch": batch, "bf16": bf16,
            "channels_last": cl, "compiled": comp, "fwd_gflops": gf, **r,
            "train_gflop_s": achieved, "train_frac_peak": achieved / peaks[key],
            "infer_gflop_s": r["infer_img_s"] * gf, "infer_frac_peak": r["infer_img_s"] * gf / peaks[key],
        }  # fmt: skip
        if "bf16_matmul_8192" in peaks:
            row["train_frac_matmul_peak"] = achieved / peaks["bf16_matmul_8192"]
            row["infer_frac_matmul_peak"] = row["infer_gflop_s"] / peaks["bf16_matmul_8192"]
        rows.append(row)
        save(False)
        print(
            f"{name:22s} {size} b{batch} {key:18s} compile={comp!s:6s} {gf:6.1f} GFLOP  "
            f"train {r['train_img_s']:7.2f} img/s ({row['train_frac_peak']:.0%} of peak)  "
            f"infer {r['infer_img_s']:7.1f} img/s ({row['infer_frac_peak']:.0%})",
            flush=True,
        )
    save(True)
    print(
        "\n| model | size | batch | dtype | layout | compile | GFLOP/img | train img/s | % peak "
        "| infer img/s | % peak |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['size']} | {r['batch']} | {'bf16' if r['bf16'] else 'fp32'} | "
            f"{'CL' if r['channels_last'] else 'NCHW'} | {COMPILE_LABEL[r['compiled']]} | {r['fwd_gflops']:.1f} | "
            f"{r['train_img_s']:.2f} | {r['train_frac_peak']:.0%} | {r['infer_img_s']:.1f} | "
            f"{r['infer_frac_peak']:.0%} |"
        )
    print(f"written {path}")


if __name__ == "__main__":
    main()
