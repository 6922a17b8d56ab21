"""What may close the gap of a CPU training step: torch.compile and the Adam implementation, per model.

    python benchmarks/train_step.py [--models unet_b16 unet_b16_s2 monai_unet] [--min-seconds 2] [--no-compile]

For each model, a training step (forward, BCE loss, backward, Adam step) on a fixed batch of 8 at 256 px,
fp32 channels_last (what ``precision: auto`` trains on a CPU without bf16 units), timed as the median of
3 blocks of at least ``--min-seconds``:

- eager with torch's default Adam (the reference of the row), with ``foreach=True``, with ``fused=True``;
- the Adam step alone (the optimiser's share of a step);
- ``torch.compile`` of the model (inductor), with its one-off compile time and the largest difference of
  its logits from eager on the batch (a compiled model that computes something else is not a speed-up).

Prints ratios against the eager default in the same run; run under ``ONEDNN_MAX_CPU_ISA=AVX2
ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2`` for the AVX2 code path (recorded). JSON:
``benchmarks/results/train-step-<isa>-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from speed import cpu_info, monai_models, our_models
from torch import nn

from polypseg.atomic import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"


def median_seconds(fn: Callable[[], None], min_seconds: float, blocks: int = 3) -> float:
    fn()  # warm-up
    per_call = []
    for _ in range(blocks):
        n, t0 = 0, time.perf_counter()
        while n == 0 or time.perf_counter() - t0 < min_seconds:
            fn()
            n += 1
        per_call.append((time.perf_counter() - t0) / n)
    return statistics.median(per_call)


def step_fn(model: nn.Module, runner: nn.Module, x: torch.Tensor, y: torch.Tensor, adam: dict) -> Callable[[], None]:
    opt = torch.optim.Adam(model.parameters(), 1e-4, **adam)

    def step() -> None:
        loss = nn.functional.binary_cross_entropy_with_logits(runner(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def measure(name: str, make: Callable[[], nn.Module], args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    x = torch.randn(8, 3, 256, 256).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(8, 1, 256, 256) > 0.8).float()
    row: dict = {"model": name}
    for label, adam in (("default", {}), ("foreach", {"foreach": True}), ("fused", {"fused": True})):
        model = make().to(memory_format=torch.channels_last).train()
        row[f"eager_adam_{label}_s"] = median_seconds(step_fn(model, model, x, y, adam), args.min_seconds)
    model = make().to(memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    nn.functional.binary_cross_entropy_with_logits(model(x), y).backward()
    row["adam_step_alone_s"] = median_seconds(opt.step, args.min_seconds / 4)
    if not args.no_compile:
        model = make().to(memory_format=torch.channels_last).train()
        compiled = torch.compile(model)
        t0 = time.perf_counter()
        with torch.no_grad():
            model.eval()
            eager_out = model(x)
            compiled_out = compiled(x)
            model.train()
        row["compile_first_call_s"] = time.perf_counter() - t0
        row["compiled_max_abs_logit_diff"] = float((compiled_out - eager_out).abs().max())
        row["compiled_s"] = median_seconds(step_fn(model, compiled, x, y, {}), args.min_seconds)
    base = row["eager_adam_default_s"]
    ratios = {
        k.removesuffix("_s"): base / v
        for k, v in row.items()
        if k.endswith("_s") and k.startswith(("eager", "compiled"))
    }
    row["speedup_vs_eager_default"] = ratios
    row["adam_share_of_step"] = row["adam_step_alone_s"] / base
    print(f"{name}: eager {base * 1e3:.0f} ms/step; " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items())
          + f"; Adam step alone {100 * row['adam_share_of_step']:.1f} % of a step"
          + (f"; compile {row['compile_first_call_s']:.0f} s, max |logit diff| {row['compiled_max_abs_logit_diff']:.2e}"
             if "compiled_s" in row else ""), flush=True)  # fmt: skip
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["unet_b16", "unet_b16_s2", "monai_unet"])
    ap.add_argument("--min-seconds", type=float, default=2.0)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    cpu = cpu_info()
    isa = "avx2-emulated" if os.environ.get("ONEDNN_MAX_CPU_ISA") else "native"
    print(f"CPU: {cpu['kind']}, {cpu['cores']} cores, {torch.get_num_threads()} threads; {isa}", flush=True)
    makers = {**our_models(), **monai_models()}
    rows = [measure(m, makers[m], args) for m in args.models if m in makers]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"train-step-{isa}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    command = "python benchmarks/train_step.py " + " ".join(sys.argv[1:])
    result = {"cpu": cpu, "isa": isa, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "rows": rows, "command": command, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip
    atomic_write_text(out, json.dumps(result, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
