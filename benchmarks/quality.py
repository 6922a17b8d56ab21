"""Quality under an equal wall-clock budget: recipes and single-knob ablations on real polyp data.

    python benchmarks/quality.py --recipes seed strong --seeds 0 1 --minutes 20 --size 192
    python benchmarks/quality.py --recipes seed16 "seed16+loss.name=bce_dice" --minutes 10   # an ablation
    python benchmarks/quality.py --recipes seed16@tta seed16@threshold --minutes 10        # evaluation knobs
    python benchmarks/quality.py --ablations --datasets polypgen --minutes 10              # every knob
    python benchmarks/quality.py --table                                                   # rebuild docs/results.md

Each (data set, recipe, seed, budget) trains with ``--max-minutes`` on 2 CPU cores at a CPU-friendly
size, then is evaluated on the validation split at original resolution with threshold 0.5 (no tuning:
tuning on the split we report would flatter it). Results go to
``benchmarks/results/quality-<dataset>-<spec>-s<seed>-<minutes>min.json``; run folders to
``runs/quality/<dataset>/``.

Resumable: a finished result is skipped; an interrupted run resumes from its ``last.ckpt`` with the
rest of its budget (the budget is the run's total training time, restored from the checkpoint).

A recipe spec is a recipe name, optionally followed by ``+key=value`` overrides (dotted keys, YAML
values): ``seed+loss.name=bce_dice+optimizer.name=adamw``, and optionally by one evaluation knob that
needs no training of its own: ``@tta`` (flip test-time augmentation) or ``@threshold`` (the threshold
tuned two-fold on the validation images: each half is scored at the threshold tuned on the other,
an honest estimate of what tuning is worth). A spec's Δ in the table is against its base recipe (the
name before ``+`` / ``@``) at the same budget; a plain recipe's Δ is against ``seed``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import yaml

from polypseg.atomic import atomic_write_text
from polypseg.config import load_recipe
from polypseg.evaluation.compare import compare, read_scores
from polypseg.evaluation.evaluate import evaluate
from polypseg.evaluation.stats import bootstrap_ci
from polypseg.training import fit, read_metrics

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs" / "quality"
DATASETS = {
    "polyp-train": ["polyp-train/kvasir", "polyp-train/clinicdb"],  # frame-level split (optimistic: see below)
    "polyp-train-seq": ["polyp-train/kvasir", "polyp-train/clinicdb"],  # ClinicDB frames grouped by sequence
    "polypgen": ["polypgen"],
}
#: CVC-ClinicDB's frame -> video sequence table, from the data set's own README.txt ("The correspondence
#: between the number of frame and the video sequence"): the last frame number of sequences 1 .. 29.
CLINICDB_SEQUENCE_ENDS = (25, 50, 67, 78, 103, 126, 151, 177, 199, 205, 227, 252, 277, 297, 317, 342, 363, 383,
                          408, 428, 447, 466, 478, 503, 528, 546, 571, 591, 612)  # fmt: skip


def clinicdb_group_csv(folder: Path) -> str:
    """Write ``folder/clinicdb_sequences.csv`` (``stem,sequence`` for frames 1..612) and return the
    ``FILE:COLUMN`` that ``data.group_csv`` takes, so a sequence never straddles train and validation."""
    rows, first = ["stem,sequence"], 1
    for seq, last in enumerate(CLINICDB_SEQUENCE_ENDS, start=1):
        rows += [f"{frame},clinicdb-{seq}" for frame in range(first, last + 1)]
        first = last + 1
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "clinicdb_sequences.csv"
    atomic_write_text(path, "\n".join(rows) + "\n")
    return f"{path}:sequence"


#: where the data sets live (--data-root), the device tag of result names (--tag) and extra recipe
#: overrides that do not change what is measured, only how fast (--workers): set by main()
SETTINGS: dict = {"root": SHARED, "tag": "", "extra": {}}


#: The single-knob ablations: each changes one thing of ``seed16`` (the report's recipe at base 16).
ABLATIONS = [
    "seed16",
    "seed16@threshold",
    "seed16@tta",
    "seed16+loss.name=bce_dice",
    "seed16+optimizer.name=adamw+optimizer.lr=0.002+scheduler.name=cosine+scheduler.warmup_epochs=1",
    "seed16+data.augment=strong",
    "seed16+model.args.deep_supervision=true",
    "seed16+multiscale=[0.75,1.0,1.25]",
    "seed16+model.name=attention_unet",
    "seed16+loss.name=structure",
    "seed16+loss.name=focal",
    "seed16+loss.name=bce+loss.args.pos_weight=5",
    "seed16+ema_decay=0.99",
    "seed16+precision=32",
]
EVAL_KNOBS = ("tta", "threshold")


def parse_spec(spec: str) -> tuple[str, dict, str | None]:
    """``"seed+loss.name=bce_dice@tta"`` -> ``("seed", {"loss.name": "bce_dice"}, "tta")``."""
    train_spec, _, knob = spec.partition("@")
    if knob and knob not in EVAL_KNOBS:
        raise SystemExit(f"unknown evaluation knob @{knob} in {spec!r}: use one of {EVAL_KNOBS}")
    name, *parts = train_spec.split("+")
    overrides = {}
    for p in parts:
        key, _, value = p.partition("=")
        overrides[key] = yaml.safe_load(value)
    return name, overrides, knob or None


def slug(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=@-]+", "_", spec)


def base_of(spec: str) -> str:
    """The row a spec's Δ is measured against: its recipe for variants, ``seed`` for plain recipes."""
    name = re.split(r"[+@]", spec, maxsplit=1)[0]
    return name if name != spec else "seed"


def _row(summary: dict, metrics: dict) -> dict:
    return {
        "n_val": metrics["n_images"],
        "mDice": metrics["mean"]["dice"],
        "mIoU": metrics["mean"]["iou"],
        "precision": metrics["mean"]["precision"],
        "recall": metrics["mean"]["recall"],
        "pooled_dice": metrics["pooled"]["dice"],
        "s_measure": summary["structure"]["s_measure"],
        "mae": summary["structure"]["mae"],
    }


def run_one(dataset: str, spec: str, seed: int, minutes: float, size: int) -> dict:
    tag = f"{SETTINGS['tag']}-" if SETTINGS["tag"] else ""
    out_json = RESULTS / f"quality-{tag}{dataset}-{slug(spec)}-s{seed}-{minutes:g}min.json"
    if out_json.exists():
        print(f"skip (done): {out_json.name}")
        return json.loads(out_json.read_text())
    name, overrides, knob = parse_spec(spec)
    train_spec = spec.partition("@")[0]
    run_dir = RUNS / dataset / f"{tag}{slug(train_spec)}-s{seed}-{minutes:g}min"
    if knob is not None:
        run_one(dataset, train_spec, seed, minutes, size)  # the run the knob evaluates (skipped when done)
        return _eval_knob(dataset, spec, seed, minutes, size, run_dir, knob, out_json)
    recipe = load_recipe(name, {**overrides, "seed": seed, "data.size": size, "data.test_fraction": 0.0,
                                "data.val_fraction": 0.1, **SETTINGS["extra"]})  # fmt: skip
    t0 = time.perf_counter()
    if (run_dir / "checkpoints" / "last.ckpt").exists():
        # --max-minutes is the run's TOTAL training time: the resumed run gets what the earlier sessions left
        print(f"resume {run_dir} (budget {minutes} min in all)")
        fit(None, [], run_dir, resume=True, max_minutes=minutes, progress=False)
    else:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        data = [str(Path(SETTINGS["root"]) / d) for d in DATASETS[dataset]]
        if dataset == "polyp-train-seq":
            recipe = recipe.model_copy(update={"data": recipe.data.model_copy(
                update={"group_csv": clinicdb_group_csv(RUNS)})})  # fmt: skip
        fit(recipe, data, run_dir, max_minutes=minutes, progress=False)
    train_s = time.perf_counter() - t0
    res = evaluate(run_dir, split="val", threshold=0.5, out_dir=run_dir / "eval" / "val")
    result = {
        **_header(dataset, spec, seed, minutes, size, run_dir),
        "train_seconds_this_call": train_s,
        **_row(res.summary, res.summary["metrics"]),
    }
    return _save(result, out_json)


def _header(dataset: str, spec: str, seed: int, minutes: float, size: int, run_dir: Path) -> dict:
    rows = read_metrics(run_dir)
    env = json.loads((run_dir / "env.json").read_text())
    return {
        "dataset": dataset,
        "device": ", ".join(env.get("cuda_devices", [])) or f"CPU, {env.get('torch_threads')} threads",
        "recipe": spec,
        "base": base_of(spec),
        "seed": seed,
        "budget_minutes": minutes,
        "size": size,
        "epochs_done": len(rows),
        "precision_used": env.get("precision"),
        "best_epoch": int(max(rows, key=lambda r: r["val_dice"])["epoch"]) if rows else -1,
        "command": f"python benchmarks/quality.py --datasets {dataset} --recipes '{spec}' --seeds {seed} "
        f"--minutes {minutes:g} --size {size}" + (f" --tag {SETTINGS['tag']}" if SETTINGS["tag"] else ""),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "tag": SETTINGS["tag"],
    }


def _save(result: dict, out_json: Path) -> dict:
    atomic_write_text(out_json, json.dumps(result, indent=1))
    print(f"{result['dataset']} {result['recipe']} seed {result['seed']}: mDice {result['mDice']:.4f} "
          f"({result['epochs_done']} epochs)")  # fmt: skip
    return result


def _eval_knob(
    dataset: str, spec: str, seed: int, minutes: float, size: int, run_dir: Path, knob: str, out_json: Path
) -> dict:
    """An evaluation-only knob on the trained run of the spec's training part (``run_dir``)."""
    if knob == "tta":
        res = evaluate(run_dir, split="val", threshold=0.5, tta=True, out_dir=run_dir / "eval" / "val-tta")
        extra = _row(res.summary, res.summary["metrics"])
    else:  # threshold: the two-fold cross-tuned estimate that every evaluation's summary carries
        summary_path = run_dir / "eval" / "val" / "summary.json"
        summary = json.loads(summary_path.read_text())
        if summary.get("cross_tuned_threshold") is None:  # written before evaluations carried it
            summary = evaluate(run_dir, split="val", threshold=0.5, out_dir=run_dir / "eval" / "val").summary
        ct = summary["cross_tuned_threshold"]
        extra = {**_row(summary, ct["metrics"]), "thresholds": ct["thresholds"]}
    return _save({**_header(dataset, spec, seed, minutes, size, run_dir), **extra}, out_json)


def eval_dir(r: dict) -> Path | None:
    """The evaluation folder (``per_image.csv``) behind a result; None for ``@threshold`` (no per-image file)."""
    train_spec, _, knob = r["recipe"].partition("@")
    if knob == "threshold":
        return None
    tag = f"{r['tag']}-" if r.get("tag") else ""
    run_dir = RUNS / r["dataset"] / f"{tag}{slug(train_spec)}-s{r['seed']}-{r['budget_minutes']:g}min"
    return run_dir / "eval" / ("val-tta" if knob == "tta" else "val")


def add_uncertainty(results: list[dict]) -> None:
    """Fill each result's ``mDice_ci95`` (bootstrap over validation images) and ``paired_vs_base`` (the
    paired comparison with its base run: same data set, seed, budget and size, so the same images),
    from the run folders' ``per_image.csv``. Results whose folders are absent keep what they hold."""
    by_key = {(r["dataset"], r["device"], r["budget_minutes"], r["size"], r["seed"], r["recipe"]): r for r in results}
    for r in results:
        mine = eval_dir(r)
        if mine is None or not (mine / "per_image.csv").exists():
            continue
        dice = list(read_scores(mine / "per_image.csv", "dice").values())
        r["mDice_ci95"] = list(bootstrap_ci(dice))
        base = by_key.get((r["dataset"], r["device"], r["budget_minutes"], r["size"], r["seed"], r["base"]))
        theirs = eval_dir(base) if base is not None and base is not r else None
        if theirs is not None and (theirs / "per_image.csv").exists():
            c = compare(theirs, mine, metric="dice")
            r["paired_vs_base"] = {k: getattr(c, k) for k in ("n_images", "diff", "ci_low", "ci_high", "p_value")}


MARKER = "<!-- written by hand below this line; benchmarks/quality.py --table keeps it -->"


def write_table(path: Path = ROOT / "docs" / "results.md") -> None:
    """Rebuild the markdown table from every result JSON, the seed recipe as the baseline row."""
    paths = sorted(RESULTS.glob("quality-*.json"))
    results = [json.loads(p.read_text()) for p in paths]
    for r in results:
        r.setdefault("device", "CPU, 2 threads")  # results written before the field existed
        r.setdefault("base", base_of(r["recipe"]))
    before = [json.dumps(r, sort_keys=True) for r in results]
    add_uncertainty(results)
    for p, r, old in zip(paths, results, before, strict=True):
        if json.dumps(r, sort_keys=True) != old:
            atomic_write_text(p, json.dumps(r, indent=1))
    lines = [
        "# Quality results",
        "",
        "Measured by `benchmarks/quality.py` on the device named in each table's title: each recipe trains",
        "for the stated wall-clock budget, then is scored on the validation split at original resolution,",
        "threshold 0.5.",
        "Δ mDice is against the spec's base at the same budget and data set (mean over the base's seeds):",
        "a plain recipe against `seed`, a `recipe+knob` or `recipe@knob` against `recipe`.",
        "95% CI: percentile bootstrap of mDice over the validation images (2000 resamples). Paired Δ: the",
        "same-seed base run scored on the same images; its bootstrap interval and a sign-flip permutation",
        "p-value (`polypseg compare`). Both measure image sampling, not seed-to-seed training variation.",
        "",
    ]
    keys = {(r["dataset"], r["device"], r["budget_minutes"]) for r in results}
    groups = sorted(keys, key=lambda g: (g[0], g[1], -g[2]))
    for dataset, device, minutes in groups:
        rs = [r for r in results if (r["dataset"], r["device"], r["budget_minutes"]) == (dataset, device, minutes)]
        lines += _table(f"{dataset}, {minutes:g} minutes, {device}", rs)
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = ""
    if path.exists() and MARKER in path.read_text():
        kept = path.read_text().split(MARKER, 1)[1]  # the hand-written observations below the marker
    atomic_write_text(path, "\n".join(lines) + "\n" + MARKER + kept)
    print(f"written {path}")


def _table(title: str, rs: list[dict]) -> list[str]:
    def base_mean(name: str) -> float | None:
        vals = [r["mDice"] for r in rs if r["recipe"] == name]
        return sum(vals) / len(vals) if vals else None

    lines = [
        f"## {title}",
        "",
        "| recipe | seed | size | epochs | mDice | 95% CI | Δ mDice | vs | paired Δ [95% CI], p | mIoU | precision "
        "| recall | S-measure | MAE |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = {"seed": 0, "strong": 1, "seed16": 2}
    rs = sorted(rs, key=lambda r: (order.get(r["recipe"], 3), r["recipe"], r["seed"]))
    for r in rs:
        base = r["base"]  # write_table fills it for results written before the field existed
        ref = base_mean(base)
        delta = "" if r["recipe"] == base else (f"{r['mDice'] - ref:+.4f}" if ref is not None else "n/a")
        ci = r.get("mDice_ci95")
        ci_text = f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else ""
        pv = r.get("paired_vs_base")
        p_text = "<0.001" if pv and pv["p_value"] < 0.001 else (f"{pv['p_value']:.3f}" if pv else "")
        paired = f"{pv['diff']:+.3f} [{pv['ci_low']:+.3f}, {pv['ci_high']:+.3f}], {p_text}" if pv else ""
        lines.append(
            f"| `{r['recipe']}` | {r['seed']} | {r['size']} | {r['epochs_done']} | {r['mDice']:.4f} | {ci_text} | "
            f"{delta} | `{base}` | {paired} | {r['mIoU']:.4f} | {r['precision']:.4f} | {r['recall']:.4f} | "
            f"{r['s_measure']:.4f} | {r['mae']:.4f} |"
        )
    return lines + ["", "Commands:", ""] + [f"- `{r['command']}`" for r in rs] + [""]


def main() -> None:
    global RESULTS, RUNS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", nargs="+", default=["seed", "strong"])
    ap.add_argument("--datasets", nargs="+", default=["polyp-train-seq", "polypgen"], choices=list(DATASETS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--ablations", action="store_true", help="run every single-knob ablation (ABLATIONS)")
    ap.add_argument("--table", action="store_true", help="only rebuild docs/results.md")
    ap.add_argument("--data-root", type=Path, default=SHARED, help="folder holding polyp-train/ and polypgen/")
    ap.add_argument("--results-dir", type=Path, default=RESULTS)
    ap.add_argument("--runs-dir", type=Path, default=RUNS)
    ap.add_argument("--tag", default="", help="device tag in result names, e.g. h200")
    ap.add_argument("--workers", type=int, default=None, help="data loader workers (speed only)")
    args = ap.parse_args()
    RESULTS, RUNS = args.results_dir, args.runs_dir
    SETTINGS.update(root=args.data_root, tag=args.tag)
    if args.workers is not None:
        SETTINGS["extra"]["data.num_workers"] = args.workers
    if args.ablations:
        args.recipes = ABLATIONS
    if not args.table:
        if not args.data_root.exists():
            raise SystemExit(f"{args.data_root} is absent: this benchmark needs the polyp data (--data-root)")
        RESULTS.mkdir(parents=True, exist_ok=True)
        for dataset in args.datasets:
            for spec in args.recipes:
                for seed in args.seeds:
                    run_one(dataset, spec, seed, args.minutes, args.size)
    if args.results_dir == ROOT / "benchmarks" / "results":
        write_table()


if __name__ == "__main__":
    main()
