"""Real-time inference: frames/s of trained models through ``Predictor``, per backend, with each backend's Dice cost.

    python benchmarks/realtime.py --model RUN [--model RUN2 ...] [--batch 1 8] [--min-seconds 3]
        [--calibration-images 64] [--no-compile] [--isa native avx2]

For each model (a trained run: the Dice cost needs real weights) and each backend:

- ``torch fp32``, ``torch bf16`` (only where the CPU has bf16 units, unless ``--bf16-anyway``),
  ``torch.compile fp32`` (inductor; its one-off compile time is stated), ``onnx fp32`` and ``onnx int8``
  (static QDQ, calibrated on ``--calibration-images`` PolypGen *train* frames, drawn seeded; see
  ``polypseg.inference.export``), all through :class:`polypseg.inference.Predictor`;
- frames/s end to end on the 140 PolypGen *val* frames (decoded beforehand; resize, normalise,
  network, sigmoid, resize back and threshold included), at each ``--batch``; the median over
  ``--repeats`` passes (each of at least ``--min-seconds``);
- the share of the time spent outside the network (pre- and post-processing);
- mDice over the same frames at the run's threshold, and its difference from torch fp32 (the Dice cost).

``--isa avx2`` reruns the whole measurement in a child process with ``ONEDNN_MAX_CPU_ISA=AVX2``,
``ATEN_CPU_CAPABILITY=avx2`` and ``MKL_ENABLE_INSTRUCTIONS=AVX2``: torch then runs the AVX2 code an
AVX2-only CPU runs (an emulation, labelled as such in the results). ONNX Runtime has no such switch:
its rows in an emulated run still use the host's AVX-512 / VNNI kernels, and are marked so.

Results: ``benchmarks/results/realtime-<isa>-<time>.json``; the printed table is markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from polypseg.atomic import atomic_write_text
from polypseg.device import AVX2_ONLY_ENV

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
CALIBRATION = ROOT / "runs" / "realtime-calibration"  # symlinks to PolypGen train frames


def val_frames() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """PolypGen val: uint8 RGB frames and their {0, 1} masks, decoded once."""
    from polypseg.data.sources import discover, read_sample

    samples = [s for s in discover(SHARED / "polypgen") if s.split == "val"]
    pairs = [read_sample(s) for s in samples]
    return [p[0] for p in pairs], [(p[1] > 0).astype(np.uint8) for p in pairs]


def mean_dice(pred_masks: list[np.ndarray], gts: list[np.ndarray]) -> float:
    from polypseg.evaluation.metrics import image_metrics

    return float(
        np.mean([image_metrics(p.astype(bool), g.astype(bool))["dice"] for p, g in zip(pred_masks, gts, strict=True)])
    )


def passes(fn, min_seconds: float, repeats: int) -> float:
    """Median seconds of one call of ``fn`` over ``repeats`` timed blocks of at least ``min_seconds`` each."""
    fn()  # warm-up
    per_call = []
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            if time.perf_counter() - t0 >= min_seconds:
                break
        per_call.append((time.perf_counter() - t0) / n)
    return statistics.median(per_call)


def predictors(run: str, args: argparse.Namespace, bf16_units: bool) -> list[tuple[str, object, dict]]:
    """(backend label, predictor factory, extra facts) for each backend measured."""
    from polypseg.inference import Predictor

    out: list[tuple[str, object, dict]] = [
        ("torch fp32", lambda b: Predictor.from_checkpoint(run, backend="torch", precision="32", batch_size=b), {})
    ]
    if bf16_units or args.bf16_anyway:
        out.append(
            (
                "torch bf16",
                lambda b: Predictor.from_checkpoint(run, backend="torch", precision="bf16", batch_size=b),
                {},
            )
        )
    if not args.no_compile:

        def compiled(b: int) -> object:
            p = Predictor.from_checkpoint(run, backend="torch", precision="32", batch_size=b)
            p.model = torch.compile(p.model)
            return p

        out.append(("torch.compile fp32", compiled, {"compiled": True}))
    out.append(("onnx fp32", lambda b: Predictor.from_checkpoint(run, backend="onnx", batch_size=b), {}))
    cal = CALIBRATION
    out.append(
        (
            "onnx int8",
            lambda b: Predictor.from_checkpoint(run, backend="onnx-int8", calibrate=cal, batch_size=b),
            {"calibration": f"{args.calibration_images} PolypGen train frames (seed 0)"},
        )
    )
    return out


def calibration_folder(n: int) -> Path:
    """``n`` PolypGen train frames (seeded) as symlinks in one plain folder (what ``--calibrate`` takes)."""
    folder = CALIBRATION
    folder.mkdir(parents=True, exist_ok=True)
    images = sorted((SHARED / "polypgen" / "train" / "images").iterdir())
    rng = np.random.default_rng(0)
    for i in sorted(rng.choice(len(images), size=min(n, len(images)), replace=False)):
        link = folder / images[i].name
        if not link.is_symlink():
            link.symlink_to(images[i])
    return folder


def measure(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    from speed import cpu_info

    from polypseg.inference.backends import time_forward

    cpu = cpu_info()
    emulated = bool(os.environ.get("ONEDNN_MAX_CPU_ISA"))
    isa = "avx2-emulated" if emulated else "native"
    mode = "torch runs AVX2 code (ONEDNN_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2)" if emulated else "native ISA"
    print(f"CPU: {cpu['kind']}, {cpu['cores']} cores, threads {torch.get_num_threads()}; {mode}; "
          f"bf16 units: {cpu['bf16_units']}", flush=True)  # fmt: skip
    frames, gts = val_frames()
    frames, gts = frames[: args.frames], gts[: args.frames]
    calibration_folder(args.calibration_images)
    rows = []
    for run in args.model:
        ref_dice = None
        for label, make, facts in predictors(run, args, cpu["bf16_units"]):
            for batch in args.batch:
                t0 = time.perf_counter()
                pred = make(batch)
                first_t0 = time.perf_counter()
                masks = list(pred.predict_mask(frames))  # also the first (compiling) call
                setup_s, first_pass_s = first_t0 - t0, time.perf_counter() - first_t0
                dice = mean_dice(masks, gts)
                if label == "torch fp32" and ref_dice is None:
                    ref_dice = dice
                sec = passes(lambda p=pred: list(p.predict_mask(frames)), args.min_seconds, args.repeats)
                net = time_forward(pred, repeats=5) * len(frames)  # network alone, same frame count
                row = {
                    "model": run, "model_name": pred.meta.get("model_name"), "model_args": pred.meta.get("model_args"),
                    "backend": label, "batch": batch, "fps": len(frames) / sec, "ms_per_frame": 1e3 * sec / len(frames),
                    "outside_network_share": max(0.0, 1 - net / sec), "mDice": dice,
                    "dice_cost": (ref_dice - dice) if ref_dice is not None else None,
                    "setup_s": setup_s, "first_pass_s": first_pass_s, "isa": isa,
                    "onnxruntime_isa": "host (AVX-512/VNNI: no ISA switch)" if emulated and "onnx" in label else None,
                    **facts,
                }  # fmt: skip
                rows.append(row)
                print(f"{Path(run).name} {label} batch {batch}: {row['fps']:.1f} frames/s, outside network "
                      f"{100 * row['outside_network_share']:.0f} %, mDice {dice:.4f} (cost {row['dice_cost']:+.4f}), "
                      f"setup {setup_s:.1f} s, first pass {first_pass_s:.1f} s", flush=True)  # fmt: skip
    result = {"cpu": cpu, "threads": torch.get_num_threads(), "isa": isa, "frames": len(frames),
              "frame_size": list(frames[0].shape), "torch": torch.__version__, "rows": rows,
              "command": "python benchmarks/realtime.py " + " ".join(sys.argv[1:]),
              "time": time.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"realtime-{isa}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write_text(out, json.dumps(result, indent=1))
    print(f"written {out}")
    print_table(result)
    return result


def print_table(result: dict) -> None:
    print("\n| model | backend | batch | frames/s | ms/frame | outside network | mDice | Dice cost | first pass s |\n"
          "|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    for r in result["rows"]:
        args = r.get("model_args") or {}
        name = f"{r['model_name']} base {args.get('base')}" + (
            ", stem stride 2" if args.get("stem_stride") == 2 else ""
        )
        print(f"| {name} | {r['backend']} | {r['batch']} | {r['fps']:.1f} | {r['ms_per_frame']:.1f} | "
              f"{100 * r['outside_network_share']:.0f} % | {r['mDice']:.4f} | {r['dice_cost']:+.4f} | "
              f"{r['first_pass_s']:.1f} |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", required=True, help="trained run folders (or checkpoints)")
    ap.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--min-seconds", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--calibration-images", type=int, default=64)
    ap.add_argument("--frames", type=int, default=None, help="only the first N val frames (a quick check)")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--results-dir", type=Path, default=RESULTS)
    ap.add_argument("--bf16-anyway", action="store_true")
    ap.add_argument("--isa", nargs="+", default=["native"], choices=["native", "avx2"],
                    help="avx2: a child process with torch limited to AVX2 code")  # fmt: skip
    args = ap.parse_args()
    if not SHARED.exists():
        raise SystemExit(f"{SHARED} is absent: this benchmark needs the polyp data")
    for isa in args.isa:
        if isa == "native" or os.environ.get("ONEDNN_MAX_CPU_ISA"):
            measure(args)
            continue
        child = [a for a in sys.argv[1:]]
        at = child.index("--isa")
        child = child[:at] + child[at + 1 :]
        while child[at:] and not child[at].startswith("--"):
            child.pop(at)
        subprocess.run([sys.executable, __file__, *child], env={**os.environ, **AVX2_ONLY_ENV}, check=True)


if __name__ == "__main__":
    main()
