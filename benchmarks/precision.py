"""bf16 autocast against fp32 in training: same epochs, same data, same seeds; speed and validation Dice.

    python benchmarks/precision.py                       # quick recipe, Kvasir, 10 epochs, seeds 0 1
    python benchmarks/precision.py --epochs 6 --seeds 0 1 2

Each (precision, seed) trains the ``quick`` recipe (U-Net base 16, channels_last) for a fixed number
of epochs, so the two precisions see the same number of updates, then is evaluated in fp32 on the
validation split at original resolution, threshold 0.5. Prints the bf16 / fp32 training-speed ratio
and the validation-mDice difference beside the seed-to-seed spread, and writes
``benchmarks/results/precision-cpu-<time>.json``. Resumable: finished (precision, seed) runs under
``runs/precision/`` are read back, not retrained.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from polypseg.atomic import atomic_write_text
from polypseg.config import load_recipe
from polypseg.evaluation.evaluate import evaluate
from polypseg.training import fit, read_metrics

ROOT = Path(__file__).resolve().parents[1]
KVASIR = ROOT.parent / "shared" / "data" / "polyp-train" / "kvasir"
RESULTS = ROOT / "benchmarks" / "results"


def run_one(precision: str, seed: int, epochs: int, data: str, recipe_name: str) -> dict:
    run_dir = ROOT / "runs" / "precision" / f"{recipe_name}-{precision}-s{seed}-e{epochs}"
    done = run_dir / "result.json"
    if done.exists():
        print(f"skip (done): {run_dir.name}")
        return json.loads(done.read_text())
    recipe = load_recipe(recipe_name, {"precision": precision, "seed": seed, "epochs": epochs,
                                       "data.val_fraction": 0.1, "data.test_fraction": 0.0})  # fmt: skip
    resume = (run_dir / "checkpoints" / "last.ckpt").exists()
    fit(None if resume else recipe, [] if resume else [data], run_dir, resume=resume, progress=False)
    rows = read_metrics(run_dir)
    res = evaluate(run_dir, split="val", threshold=0.5, out_dir=run_dir / "eval" / "val")
    env = json.loads((run_dir / "env.json").read_text())
    # epoch 0 includes the one-off decode cache and warm-up: time the later epochs
    later = [r["seconds"] for r in rows[1:]] or [r["seconds"] for r in rows]
    result = {
        "precision": precision,
        "precision_used": env.get("precision"),
        "seed": seed,
        "epochs": len(rows),
        "seconds_per_epoch_after_first": statistics.mean(later),
        "final_val_dice_train_size": rows[-1]["val_dice"],
        "mDice": res.summary["metrics"]["mean"]["dice"],
        "mIoU": res.summary["metrics"]["mean"]["iou"],
        "s_measure": res.summary["structure"]["s_measure"],
        "n_val": res.summary["metrics"]["n_images"],
    }
    atomic_write_text(done, json.dumps(result, indent=1))
    per_epoch = result["seconds_per_epoch_after_first"]
    print(f"{precision} seed {seed}: {per_epoch:.1f} s/epoch, mDice {result['mDice']:.4f}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(KVASIR))
    ap.add_argument("--recipe", default="quick")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    args = ap.parse_args()
    if not Path(args.data).exists():
        raise SystemExit(f"{args.data} is absent: give --data PATH (a polyp data folder)")
    runs = [run_one(p, s, args.epochs, args.data, args.recipe) for s in args.seeds for p in ("bf16-mixed", "32")]

    def pick(p: str, key: str) -> list[float]:
        return [r[key] for r in runs if r["precision"] == p]

    speed = statistics.mean(pick("32", "seconds_per_epoch_after_first")) / statistics.mean(
        pick("bf16-mixed", "seconds_per_epoch_after_first")
    )
    d_bf16, d_fp32 = pick("bf16-mixed", "mDice"), pick("32", "mDice")
    paired = [b - f for b, f in zip(d_bf16, d_fp32, strict=True)]
    spread = max(max(d_bf16) - min(d_bf16), max(d_fp32) - min(d_fp32))
    summary = {
        "recipe": args.recipe,
        "data": args.data,
        "epochs": args.epochs,
        "seeds": args.seeds,
        "runs": runs,
        "bf16_speedup_vs_fp32": speed,
        "mean_mDice_bf16": statistics.mean(d_bf16),
        "mean_mDice_fp32": statistics.mean(d_fp32),
        "paired_mDice_difference_bf16_minus_fp32": paired,
        "seed_spread_mDice": spread,
        "command": f"python benchmarks/precision.py --recipe {args.recipe} --epochs {args.epochs} "
        f"--seeds {' '.join(map(str, args.seeds))}",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"precision-cpu-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write_text(out, json.dumps(summary, indent=1))
    print(
        f"bf16 trains {speed:.2f}x fp32 (s/epoch after the first); validation mDice bf16 "
        f"{summary['mean_mDice_bf16']:.4f} vs fp32 {summary['mean_mDice_fp32']:.4f} "
        f"(paired differences {', '.join(f'{d:+.4f}' for d in paired)}; seed-to-seed spread {spread:.4f})"
    )
    print(f"written {out}")


if __name__ == "__main__":
    main()
