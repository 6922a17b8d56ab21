"""Does starting from the shipped model pay? Fine-tuning against training from scratch, same budget.

    python benchmarks/finetune.py [--minutes 10 30] [--data ../shared/data/polyp-train/kvasir] [--model polyp-unet16]
        [--size N] [--seed 0] [--table]

For each budget, two runs of the shipped model's own recipe (the one frozen in its card, so that
``--init`` weights fit the architecture; ``polyp-unet16``: ``strong``, U-Net base 16, deep supervision,
structure loss; at the model's own training size unless ``--size``) on the data (default Kvasir-SEG, 900
frames; a seeded 15 % validation split, the same images for both runs, which pick each run's best epoch)
and a seeded 15 % test split, the same for both): one from random weights, one with ``--init`` from the
shipped model (trained on PolypGen only, so Kvasir is a new centre to it). Each trains for the budget
(the run's total training time; resumable), then is scored on the TEST split at original resolution with
threshold 0.5 (the images that chose the checkpoint are never the ones reported), and the pair is
compared image by image with ``polypseg compare`` (mean difference, 95 % bootstrap interval, sign-flip
permutation p-value).
Results: ``benchmarks/results/finetune-<data>-<model>-<digest8>-<size>px-s<seed>-<minutes>min-on-<cpu>.json``
(``<digest8>``: the shipped weights' digest, so a model reshipped under its name starts afresh; results from
before session 17 lack it, those from before session 15 also ``-on-<cpu>``, recording their CPU inside; a result
of one CPU is never taken as done on another); ``--table`` (also run at the end)
rebuilds the section of ``docs/results.md`` between the fine-tuning markers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from generalise import has_bf16_units, refuse_foreign, replace_section, result_file

from polypseg.atomic import atomic_write_text
from polypseg.config import Recipe, dump_recipe, load_recipe
from polypseg.device import cpu_kind
from polypseg.evaluation.compare import compare
from polypseg.evaluation.evaluate import evaluate
from polypseg.training import fit, read_metrics
from polypseg.zoo import ShippedModel, find, weights_digest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs" / "finetune"
START, END = "<!-- finetune:start -->", "<!-- finetune:end -->"


def shipped_or_exit(model: str) -> ShippedModel:
    """The shipped model named ``model``; a clear exit when polypseg ships none of that name."""
    shipped = find(model)
    if shipped is None:
        raise SystemExit(f"{model} is not a shipped model (polypseg models)")
    return shipped


def model_recipe_file(model: str) -> Path:
    """The shipped model's own recipe (frozen in its card) as a recipe file both runs load, so the scratch
    run trains the same architecture that ``--init`` fills; ``RUNS/<model>-recipe.yaml``."""
    shipped = shipped_or_exit(model)
    path = RUNS / f"{model}-recipe.yaml"
    RUNS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, dump_recipe(Recipe.model_validate(shipped.card["polypseg"]["recipe"])))
    return path


def train_and_score(run: Path, recipe: Path, data: str, size: int, seed: int, minutes: float,
                    init: str | None) -> dict:  # fmt: skip
    refuse_foreign(run)
    if (run / "eval" / "test" / "summary.json").exists():
        summary = json.loads((run / "eval" / "test" / "summary.json").read_text())
    else:
        if (run / "checkpoints" / "last.ckpt").exists():
            fit(None, [], run, resume=True, max_minutes=minutes, progress=False)
        else:
            overrides = {"seed": seed, "data.size": size, "data.val_fraction": 0.15, "data.test_fraction": 0.15,
                         "init_weights": init}  # fmt: skip
            fit(load_recipe(recipe, overrides), [data], run, max_minutes=minutes, progress=False)
        summary = evaluate(run, split="test", threshold=0.5, out_dir=run / "eval" / "test").summary
    rows = read_metrics(run)
    return {"run": str(run), "epochs_done": len(rows), "n_test": summary["metrics"]["n_images"],
            "mDice": summary["metrics"]["mean"]["dice"], "mIoU": summary["metrics"]["mean"]["iou"]}  # fmt: skip


def shipped_id(model: str) -> str:
    """``<model>-<first 8 hex digits of its weights' digest>``: results and runs of one set of shipped weights
    (a model reshipped under its name with new weights, and its recipe, gets new ones)."""
    return f"{model}-{weights_digest(shipped_or_exit(model).weights)[:8]}"


def result_key(data: str, model: str, minutes: float, size: int, seed: int) -> str:
    """The result's name (before the CPU): ``<data folder>-<shipped_id>-<size>px-s<seed>-<minutes>min``."""
    return f"{Path(data).name}-{shipped_id(model)}-{size}px-s{seed}-{minutes:g}min"


def run_budget(data: str, model: str, minutes: float, size: int | None, seed: int) -> dict:
    recipe, shipped = model_recipe_file(model), shipped_or_exit(model)
    size = size or int(shipped.card["polypseg"]["preprocess"]["size"])
    name, key = Path(data).name, result_key(data, model, minutes, size, seed)
    tail = key.removeprefix(f"{name}-")  # <shipped_id>-<size>px-s<seed>-<minutes>min, for the run folders
    out_json = result_file(key, cpu_kind(), "finetune", RESULTS)
    if out_json.exists():
        print(f"skip (done): {out_json.name}")
        return json.loads(out_json.read_text())
    t0 = time.perf_counter()
    scratch = train_and_score(RUNS / f"{name}-scratch-as-{tail}", recipe, data, size, seed, minutes, None)
    tuned = train_and_score(RUNS / f"{name}-init-{tail}", recipe, data, size, seed, minutes, model)
    paired = compare(Path(scratch["run"]) / "eval" / "test", Path(tuned["run"]) / "eval" / "test", "test", "dice")
    result = {
        "data": data, "model": model, "budget_minutes": minutes, "size": size, "seed": seed,
        "recipe": Recipe.model_validate(shipped.card["polypseg"]["recipe"]).name,
        "weights_digest": weights_digest(shipped.weights), "card_recipe": shipped.card["recipe"]["name"],
        "cpu": cpu_kind(), "bf16_units": has_bf16_units(), "scratch": scratch, "init": tuned,
        "paired_init_minus_scratch": paired.to_dict(), "seconds_this_call": time.perf_counter() - t0,
        "command": f"python benchmarks/finetune.py --minutes {minutes:g} --data {data} --model {model} --size {size} "
        f"--seed {seed}",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_json, json.dumps(result, indent=1))
    print(f"{name} {minutes:g} min: scratch {scratch['mDice']:.4f} ({scratch['epochs_done']} epochs), --init {model} "
          f"{tuned['mDice']:.4f} ({tuned['epochs_done']} epochs), paired diff {paired.diff:+.4f} "
          f"[{paired.ci_low:+.4f}, {paired.ci_high:+.4f}], p {paired.p_value:.4f}")  # fmt: skip
    return result


def model_label(result: dict) -> str:
    """The ``--init`` model of a result as the table names it: the model and its recipe, read from the card of
    the weights the result used (its ``weights_digest``, :func:`polypseg.zoo.weights_digest`) when they are the
    ones shipped now, else as recorded."""
    shipped = find(result["model"])
    if shipped is not None and result.get("weights_digest") == weights_digest(shipped.weights):
        recipe = shipped.card["recipe"]
        return f"{result['model']} ({recipe['name']}, {recipe['size']} px)"
    recipe = result.get("card_recipe", result["recipe"])  # the card's name; the frozen one is a budget base's
    return f"{result['model']} as shipped then ({recipe} as it was then, {result['size']} px)"


def write_table(path: Path = ROOT / "docs" / "results.md") -> None:
    """The fine-tuning section of ``docs/results.md`` from every result JSON."""
    results = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("finetune-*.json"))]
    lines = [START, "", "## Fine-tuning from the shipped model against training from scratch (benchmarks/finetune.py)",
             "", "Same recipe (the shipped model's own, frozen in its card), data, seeded 15 % validation split "
             "(picks the best epoch) and wall-clock budget for both runs; scored on a seeded 15 % test split at "
             "original resolution, threshold 0.5. Paired: `polypseg compare` over the same "
             "images (init minus scratch; 95 % bootstrap interval; sign-flip permutation p).", "",
             "| data | `--init` model (its recipe) | budget | CPU (bf16 units) | scratch mDice (epochs) | "
             "`--init` mDice (epochs) | paired diff "
             "[95 % CI] | p | images |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        p, sc, it = r["paired_init_minus_scratch"], r["scratch"], r["init"]
        cpu = f"{r['cpu']} ({'yes' if r['bf16_units'] else 'no'})"
        lines.append(f"| {Path(r['data']).name} | {model_label(r)} | {r['budget_minutes']:g} min | {cpu} "
                     f"| {sc['mDice']:.4f} "
                     f"({sc['epochs_done']}) | {it['mDice']:.4f} ({it['epochs_done']}) | {p['diff']:+.4f} "
                     f"[{p['ci_low']:+.4f}, {p['ci_high']:+.4f}] | {p['p_value']:.4f} | {sc['n_test']} |")  # fmt: skip
    lines += ["", "Commands:", ""] + [f"- `{r['command']}`" for r in results] + ["", END]
    replace_section(path, START, END, lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", nargs="+", type=float, default=[10.0, 30.0])
    ap.add_argument("--data", default=str(SHARED / "polyp-train" / "kvasir"))
    ap.add_argument("--model", default="polyp-unet16")
    ap.add_argument("--size", type=int, default=None, help="training size (default: the model's own)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--table", action="store_true", help="only rebuild the docs/results.md section")
    args = ap.parse_args()
    if not args.table:
        if not Path(args.data).exists():
            raise SystemExit(f"{args.data} is absent: this benchmark needs the polyp data")
        print(f"CPU: {cpu_kind()} (bf16 units: {'yes' if has_bf16_units() else 'no'})", flush=True)
        for minutes in args.minutes:
            run_budget(args.data, args.model, minutes, args.size, args.seed)
    write_table()


if __name__ == "__main__":
    main()
