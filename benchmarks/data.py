"""Data pipeline throughput against the training step's consumption, measured in the same run.

    python benchmarks/data.py [--data synthetic:n=200,size=256] [--size 256] [--batches 30]

For 0, 1 and 2 loader workers and the ``seed`` and ``strong`` augmentation presets, it times
cached + augmented + normalised batches (samples/s). In the same process it times training steps
(forward + backward + optimiser step) of the ``seed`` recipe's U-Net (base 64, fp32) and of the
``quick`` recipe's U-Net (base 16, bf16 autocast, channels_last) at the same size, and prints the
ratio pipeline / step. Results go to ``benchmarks/results/data-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from polypseg.atomic import atomic_write_text
from polypseg.config import load_recipe
from polypseg.data.augment import build_augment
from polypseg.data.cache import build_cache
from polypseg.data.datamodule import SegDataset
from polypseg.data.sources import discover_all
from polypseg.losses import build_loss
from polypseg.models import build_model


def loader_rate(arrays, size: int, preset: str, workers: int, batch: int, batches: int) -> float:
    ds = SegDataset(arrays, range(len(arrays.ids)), build_augment(preset, size))
    dl = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0)
    it = iter(dl)
    for _ in range(3):  # warm-up (starts the workers)
        next(it)
    n, t0 = 0, time.perf_counter()
    for _ in range(batches):
        try:
            x, _ = next(it)
        except StopIteration:
            it = iter(dl)
            x, _ = next(it)
        n += x.shape[0]
    return n / (time.perf_counter() - t0)


def step_rate(recipe_name: str, size: int, batch: int, steps: int) -> float:
    r = load_recipe(recipe_name)
    model = build_model(r.model.name, **r.model.args)
    cl = r.channels_last
    if cl:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    loss_fn = build_loss(r.loss.name, **r.loss.args)
    x = torch.randn(batch, 3, size, size)
    y = (torch.rand(batch, 1, size, size) > 0.9).float()
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    bf16 = r.precision == "bf16"

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = loss_fn(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", action="append", default=None)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    data = args.data or [f"synthetic:n=200,size={args.size}"]
    arrays = build_cache(discover_all(data), args.size)
    results: dict = {
        "data": data,
        "size": args.size,
        "batch": args.batch,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": str(torch.__version__),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "pipeline_samples_per_s": {},
        "train_step_samples_per_s": {},
    }
    for preset in ("seed", "strong"):
        for workers in (0, 1, 2):
            rate = loader_rate(arrays, args.size, preset, workers, args.batch, args.batches)
            results["pipeline_samples_per_s"][f"{preset}/workers={workers}"] = rate
            print(f"pipeline {preset:6s} workers={workers}: {rate:8.1f} samples/s", flush=True)
    for recipe in ("seed", "quick"):
        rate = step_rate(recipe, args.size, args.batch, args.steps)
        results["train_step_samples_per_s"][recipe] = rate
        print(f"train step ({recipe} recipe model): {rate:8.2f} samples/s", flush=True)
    ratios = {
        f"{k} / step({r})": v / s
        for k, v in results["pipeline_samples_per_s"].items()
        for r, s in results["train_step_samples_per_s"].items()
    }
    results["ratios"] = ratios
    for k, v in ratios.items():
        print(f"ratio {k}: {v:7.1f}x")
    out = Path(__file__).parent / "results" / f"data-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write_text(out, json.dumps(results, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
