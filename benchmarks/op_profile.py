"""Where a training step's time goes, per operator, for our U-Net and MONAI's in one setting.

    python benchmarks/op_profile.py                          # fp32 NCHW, batch 8, 256 px, base 32 vs MONAI UNet
    python benchmarks/op_profile.py --channels-last --bf16
    python benchmarks/op_profile.py --layers              # each convolution alone: NCHW vs channels_last

Runs a few warm-up training steps (forward + backward + Adam) of each model, then profiles ``--steps``
more with ``torch.profiler`` and prints, per model, the operators with the most self CPU time and what
share of the step they take. The question it answers: where does a model lose against the conv peak
(docs/performance.md). Writes ``benchmarks/results/profile-<setting>-<time>.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch

# benchmarks/ is this script's folder, so on sys.path
from speed import make_train_step, monai_models, our_models, timed
from torch import nn
from torch.profiler import ProfilerActivity, profile

from polypseg.atomic import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"


def profile_model(name: str, model: nn.Module, args: argparse.Namespace) -> dict:
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.train().to(memory_format=fmt)
    x = torch.randn(args.batch, 3, args.size, args.size).contiguous(memory_format=fmt)
    y = (torch.rand(args.batch, 1, args.size, args.size) > 0.8).float()
    step = make_train_step(model, model, x, y, args.bf16)
    for _ in range(2):
        step()
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    step_s = (time.perf_counter() - t0) / args.steps
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[: args.top]
    rows = [
        {
            "op": e.key,
            "self_ms_per_step": e.self_cpu_time_total / 1e3 / args.steps,
            "share": e.self_cpu_time_total / total,
            "calls_per_step": e.count / args.steps,
        }
        for e in top
    ]
    print(f"\n{name}: {step_s * 1e3:.0f} ms per training step (profiled)")
    print("| op | self ms / step | share | calls / step |\n|---|---|---|---|")
    for r in rows:
        print(f"| `{r['op']}` | {r['self_ms_per_step']:.1f} | {r['share']:.1%} | {r['calls_per_step']:.0f} |")
    return {"model": name, "step_seconds_profiled": step_s, "top_ops": rows}


def conv_layers(model: nn.Module, batch: int, size: int) -> list[dict]:
    """Every Conv2d / ConvTranspose2d call of one forward pass: its module, input shape and output shape."""
    calls: list[dict] = []

    def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        calls.append({"module": mod, "in": tuple(inp[0].shape), "out": tuple(out.shape)})

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.no_grad():
        model.eval()(torch.randn(batch, 3, size, size))
    for h in handles:
        h.remove()
    return calls


def layer_speeds(name: str, model: nn.Module, args: argparse.Namespace) -> dict:
    """Forward + backward GFLOP/s of each convolution of ``model`` on its own, NCHW against channels_last
    (fp32 or bf16 per ``--bf16``): which layer shapes lose time, and in which memory format."""
    rows = []
    total_flops = 0.0
    for c in conv_layers(model, args.batch, args.size):
        m: nn.Module = c["module"]
        k = m.kernel_size[0] * m.kernel_size[1]
        # a convolution's multiply-adds: per position of the grid its kernel slides over (the output of a
        # Conv2d, the input of a ConvTranspose2d), in x out channels x kernel area (/ groups)
        grid = c["in"] if isinstance(m, nn.ConvTranspose2d) else c["out"]
        flops = 2 * grid[0] * grid[2] * grid[3] * m.in_channels * m.out_channels * k / m.groups
        total_flops += flops
        row = {"kind": type(m).__name__, "in": c["in"], "out": c["out"], "kernel": m.kernel_size,
               "stride": m.stride, "fwd_gflop": flops / 1e9}  # fmt: skip
        for fmt_name, fmt in (("nchw", torch.contiguous_format), ("cl", torch.channels_last)):
            layer = copy.deepcopy(m).train().to(memory_format=fmt)
            x = torch.randn(c["in"]).contiguous(memory_format=fmt).requires_grad_(True)
            ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.bf16 else nullcontext

            def fwd_bwd(layer: nn.Module = layer, x: torch.Tensor = x, ctx: Callable = ctx) -> None:
                with ctx():
                    out = layer(x)
                out.float().sum().backward()

            sec = timed(fwd_bwd, torch.device("cpu"), args.layer_seconds)
            row[f"gflop_s_{fmt_name}"] = 3 * flops / sec / 1e9
            row[f"ms_{fmt_name}"] = sec * 1e3
        rows.append(row)
    for r in rows:
        r["flop_share"] = r["fwd_gflop"] * 1e9 / total_flops
    t_nchw, t_cl = sum(r["ms_nchw"] for r in rows), sum(r["ms_cl"] for r in rows)
    print(f"\n{name}: convolutions alone, forward + backward: {t_nchw:.0f} ms NCHW, {t_cl:.0f} ms channels_last "
          f"({3 * total_flops / t_nchw / 1e6:.0f} / {3 * total_flops / t_cl / 1e6:.0f} GFLOP/s)")  # fmt: skip
    print("| layer | in | out | FLOP share | GFLOP/s NCHW | GFLOP/s CL | ms NCHW | ms CL |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['kind']} {r['kernel'][0]}x{r['kernel'][1]}/{r['stride'][0]} | {r['in']} | {r['out']} | "
              f"{r['flop_share']:.1%} | {r['gflop_s_nchw']:.0f} | {r['gflop_s_cl']:.0f} | {r['ms_nchw']:.1f} | "
              f"{r['ms_cl']:.1f} |")  # fmt: skip
    return {"model": name, "conv_ms_nchw": t_nchw, "conv_ms_cl": t_cl, "fwd_gflop": total_flops / 1e9, "layers": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["unet_b32", "monai_unet"])
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--layers", action="store_true", help="time each convolution alone, NCHW vs channels_last")
    ap.add_argument("--layer-seconds", type=float, default=0.3)
    args = ap.parse_args()
    torch.manual_seed(0)
    factories = {**our_models(), **monai_models()}
    setting = f"{'bf16' if args.bf16 else 'fp32'}-{'cl' if args.channels_last else 'nchw'}"
    if args.layers:
        setting = f"{'bf16' if args.bf16 else 'fp32'}-layers"
        results = [layer_speeds(m, factories[m](), args) for m in args.models if m in factories]
    else:
        results = [profile_model(m, factories[m](), args) for m in args.models if m in factories]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"profile-{setting}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write_text(out, json.dumps({"setting": setting, "args": vars(args), "results": results}, indent=1))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
