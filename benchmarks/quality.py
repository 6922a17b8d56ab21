"""Quality under an equal wall-clock budget: recipes and single-knob ablations on real polyp data.

    python benchmarks/quality.py --recipes seed strong --seeds 0 1 --minutes 20 --size 192
    python benchmarks/quality.py --recipes "seed+loss.name=bce_dice" --minutes 10      # an ablation
    python benchmarks/quality.py --table                                                # rebuild docs/results.md

Each (data set, recipe, seed) trains with ``--max-minutes`` on 2 CPU cores at a CPU-friendly size,
then is evaluated on the validation split at original resolution with threshold 0.5 (no tuning:
tuning on the split we report would flatter it). Results go to
``benchmarks/results/quality-<dataset>-<recipe>-s<seed>.json``; run folders to ``runs/quality/``.

Resumable: a finished result is skipped; an interrupted run resumes from its ``last.ckpt`` with the
rest of its budget (the seconds already spent are read from its ``metrics.csv``).

A recipe spec is a recipe name, optionally followed by ``+key=value`` overrides (dotted keys, YAML
values): ``seed+loss.name=bce_dice+optimizer.name=adamw``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import yaml

from polypseg.config import load_recipe
from polypseg.evaluate import evaluate
from polypseg.train import fit, read_metrics

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
DATASETS = {
    "polyp-train": [str(SHARED / "polyp-train" / "kvasir"), str(SHARED / "polyp-train" / "clinicdb")],
    "polypgen": [str(SHARED / "polypgen")],
}


def parse_spec(spec: str) -> tuple[str, dict]:
    """``"seed+loss.name=bce_dice"`` -> ``("seed", {"loss.name": "bce_dice"})``."""
    name, *parts = spec.split("+")
    overrides = {}
    for p in parts:
        key, _, value = p.partition("=")
        overrides[key] = yaml.safe_load(value)
    return name, overrides


def slug(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", spec)


def run_one(dataset: str, spec: str, seed: int, minutes: float, size: int) -> dict:
    out_json = RESULTS / f"quality-{dataset}-{slug(spec)}-s{seed}.json"
    if out_json.exists():
        print(f"skip (done): {out_json.name}")
        return json.loads(out_json.read_text())
    name, overrides = parse_spec(spec)
    recipe = load_recipe(name, {**overrides, "seed": seed, "data.size": size, "data.test_fraction": 0.0,
                                "data.val_fraction": 0.1})  # fmt: skip
    run_dir = ROOT / "runs" / "quality" / dataset / f"{slug(spec)}-s{seed}"
    t0 = time.perf_counter()
    if (run_dir / "checkpoints" / "last.ckpt").exists():
        spent = sum(r.get("seconds", 0) for r in read_metrics(run_dir)) / 60
        print(f"resume {run_dir} ({spent:.1f} of {minutes} min spent)")
        if spent < minutes:
            fit(None, [], run_dir, resume=True, max_minutes=minutes - spent, progress=False)
    else:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        fit(recipe, DATASETS[dataset], run_dir, max_minutes=minutes, progress=False)
    train_s = time.perf_counter() - t0
    res = evaluate(run_dir, split="val", threshold=0.5, out_dir=run_dir / "eval" / "val")
    rows = read_metrics(run_dir)
    m = res.summary["metrics"]
    result = {
        "dataset": dataset,
        "recipe": spec,
        "seed": seed,
        "budget_minutes": minutes,
        "size": size,
        "epochs_done": len(rows),
        "train_seconds_this_call": train_s,
        "best_epoch": int(max(rows, key=lambda r: r["val_dice"])["epoch"]) if rows else -1,
        "n_val": m["n_images"],
        "mDice": m["mean"]["dice"],
        "mIoU": m["mean"]["iou"],
        "precision": m["mean"]["precision"],
        "recall": m["mean"]["recall"],
        "pooled_dice": m["pooled"]["dice"],
        "s_measure": res.summary["structure"]["s_measure"],
        "mae": res.summary["structure"]["mae"],
        "command": f"python benchmarks/quality.py --datasets {dataset} --recipes '{spec}' --seeds {seed} "
        f"--minutes {minutes:g} --size {size}",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    out_json.write_text(json.dumps(result, indent=1))
    print(f"{dataset} {spec} seed {seed}: mDice {result['mDice']:.4f} ({result['epochs_done']} epochs)")
    return result


MARKER = "<!-- written by hand below this line; benchmarks/quality.py --table keeps it -->"


def write_table(path: Path = ROOT / "docs" / "results.md") -> None:
    """Rebuild the markdown table from every result JSON, the seed recipe as the baseline row."""
    results = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("quality-*.json"))]
    lines = [
        "# Quality results",
        "",
        "Measured by `benchmarks/quality.py` on 2 CPU cores: each recipe trains for the stated wall-clock",
        "budget, then is scored on the validation split at original resolution, threshold 0.5.",
        "Δ mDice is against the `seed` recipe (same data set, same budget, mean over its seeds).",
        "",
    ]
    for dataset in sorted({r["dataset"] for r in results}):
        rs = [r for r in results if r["dataset"] == dataset]
        base = [r["mDice"] for r in rs if r["recipe"] == "seed"]
        base_mean = sum(base) / len(base) if base else None
        lines += [
            f"## {dataset}",
            "",
            "| recipe | seed | budget (min) | size | epochs | mDice | Δ mDice | mIoU | precision | recall "
            "| S-measure | MAE |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        rs.sort(key=lambda r: (r["recipe"] != "seed", r["recipe"] != "strong", r["recipe"], r["seed"]))
        for r in rs:
            delta = f"{r['mDice'] - base_mean:+.4f}" if base_mean is not None else "n/a"
            lines.append(
                f"| `{r['recipe']}` | {r['seed']} | {r['budget_minutes']:g} | {r['size']} | {r['epochs_done']} | "
                f"{r['mDice']:.4f} | {delta} | {r['mIoU']:.4f} | {r['precision']:.4f} | {r['recall']:.4f} | "
                f"{r['s_measure']:.4f} | {r['mae']:.4f} |"
            )
        lines += ["", "Commands:", ""] + [f"- `{r['command']}`" for r in rs] + [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = ""
    if path.exists() and MARKER in path.read_text():
        kept = path.read_text().split(MARKER, 1)[1]  # the hand-written observations below the marker
    path.write_text("\n".join(lines) + "\n" + MARKER + kept)
    print(f"written {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", nargs="+", default=["seed", "strong"])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--table", action="store_true", help="only rebuild docs/results.md")
    args = ap.parse_args()
    if not args.table:
        if not SHARED.exists():
            raise SystemExit(f"{SHARED} is absent: this benchmark needs the shared polyp data")
        for dataset in args.datasets:
            for spec in args.recipes:
                for seed in args.seeds:
                    run_one(dataset, spec, seed, args.minutes, args.size)
    write_table()


if __name__ == "__main__":
    main()
