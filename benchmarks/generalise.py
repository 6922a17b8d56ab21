"""Generalisation to other centres: train a recipe on one source, score it whole on sources it never saw.

    python benchmarks/generalise.py [--experiments polypgen kvasir+clinicdb loco-C1 ...] [--recipe strong]
        [--minutes 20] [--size 192] [--seed 0] [--table]

Experiments (data from ``../shared/data``, never copied: leave-one-centre-out folders are symlinks
under ``runs/generalise/data/``):

- ``polypgen``: PolypGen train (984 frames, six centres; its own 140-frame val split for checkpoint
  selection) -> Kvasir-SEG (900) and CVC-ClinicDB (550), each scored whole;
- ``kvasir+clinicdb``: Kvasir + ClinicDB (a seeded 10 % validation split, ClinicDB frames grouped by
  video sequence) -> PolypGen val (140) and PolypGen train (984) as external sets;
- ``loco-C1`` .. ``loco-C6``: PolypGen train + val without centre Ck (a seeded 10 % validation split
  grouped by PolypGen's ``group_id``) -> centre Ck's frames whole (centre from
  ``polypgen_256_split.csv``).

Each trains with ``--max-minutes`` (the run's total training time; resumable: an interrupted run
continues with the rest of its budget, a finished result is skipped), then ``polypseg evaluate`` with
the external sets (``evaluation.sets``: checked external by content, the table with mDice, mIoU,
weighted F, S, E and MAE). The external sets are scored at the threshold tuned on the run's own
validation images (never on a test set). Results: ``benchmarks/results/generalise-<exp>-<recipe>-<size>px-
<minutes>min-on-<cpu>.json``, ``<cpu>`` the CPU's kind (model name, family and model: ``amd-epyc-family-26-model-2``;
:func:`result_file`); ``--table`` (also run at the end) rebuilds the section
of ``docs/results.md`` between the generalisation markers.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import statistics
import time
from pathlib import Path

import yaml

from polypseg.atomic import atomic_write_text
from polypseg.config import load_recipe
from polypseg.device import cpu_bf16_kind, cpu_kind
from polypseg.evaluation.compare import read_scores
from polypseg.evaluation.evaluate import evaluate
from polypseg.evaluation.sets import evaluate_sets
from polypseg.evaluation.tune import tune_threshold
from polypseg.training import fit, read_metrics
from polypseg.training.env import training_precision

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs" / "generalise"
CENTRES = ("C1", "C2", "C3", "C4", "C5", "C6")
EXPERIMENTS = ("polypgen", "kvasir+clinicdb", *(f"loco-{c}" for c in CENTRES))
START, END = "<!-- generalise:start -->", "<!-- generalise:end -->"
NOTE = [""]  # --note, stored with each result written in this call
SHARED_CPU_RATIO = 1.5  # an epoch this many times the median at its training scale: other load on the CPU


def epoch_seconds(rows: list[dict]) -> dict:
    """The slowest full epoch and the median of the epochs at its training scale (seconds: ``metrics.csv``'s
    ``seconds``, grouped by ``train_scale``, so progressive resizing's small phases are not a slowdown); the
    last row is left out when it is shorter than its group's median (an epoch cut by the budget)."""
    timed = [r for r in rows if "seconds" in r]
    if not timed:
        return {}
    groups: dict[float | None, list[float]] = {}
    for k, r in enumerate(timed):
        secs = groups.setdefault(r.get("train_scale"), [])
        if k < len(timed) - 1 or not secs or r["seconds"] >= statistics.median(secs):
            secs.append(r["seconds"])
    scale, secs = max(groups.items(), key=lambda g: max(g[1]) / statistics.median(g[1]))
    out = {"median": round(statistics.median(secs), 2), "max": round(max(secs), 2), "epochs": len(timed)}
    return {**out, "train_scale": scale} if scale is not None else out


def best_epoch(rows: list[dict]) -> int | None:
    """The epoch whose validation Dice the run kept (the first of the highest: the checkpoint is replaced only
    by a strictly better epoch); None without validation."""
    scored = [r for r in rows if r.get("val_dice") is not None]
    return int(max(scored, key=lambda r: (r["val_dice"], -r["epoch"]))["epoch"]) if scored else None


def shared_cpu_note(result: dict) -> str:
    """A sentence for the table's notes when one of the run's epochs took ``SHARED_CPU_RATIO`` times the
    median at its training scale (so other load shared the 2 cores and the run trained fewer epochs than a
    quiet machine would); empty otherwise, or when it cannot be told: the result predates the measurement
    and its run folder is gone or is not its run (:func:`folder_epoch_seconds`), or its progressive-resizing run
    predates ``train_scale`` in ``metrics.csv``."""
    spread = result.get("epoch_seconds")
    if spread is None:
        spread = folder_epoch_seconds(result) or {}
    if not spread or spread["max"] < SHARED_CPU_RATIO * spread["median"]:
        return ""
    return (
        f"its slowest epoch took {spread['max']:.0f} s against a median of {spread['median']:.0f} s "
        f"({spread['max'] / spread['median']:.1f}x): the CPU was shared during part of the run"
    )


def trained_elsewhere(run: Path, cpu: str | None = None) -> list[str]:
    """The CPUs (as the run folder's ``env.json`` describes them, every session in order) that trained ``run``
    other than ``cpu`` (a CPU kind, :func:`polypseg.device.cpu_kind`; default this one's); empty when it is
    ``cpu``'s run or has no ``env.json``. Run folders do not name the CPU, so a folder of the same name may be
    another CPU's. A session recorded before the kind was (``AMD EPYC, 2 cores (...)``) counts by model name."""
    if not (run / "env.json").exists():
        return []
    env = json.loads((run / "env.json").read_text())
    cpu = cpu or cpu_kind()
    name = cpu.split(", family ")[0]
    seen = [s.get("cpu") or "" for s in [env, *env.get("resumes", [])]]

    def same(described: str) -> bool:
        old_style = ", family " not in described  # recorded before the kind was: by model name
        return described.startswith(cpu + ", ") or (old_style and described.startswith(name + ", "))

    return list(dict.fromkeys(d for d in seen if d and not same(d)))


def refuse_foreign(run: Path) -> None:
    """Stop, naming the folder and the fix, when the run folder ``run`` was trained on another CPU."""
    others = trained_elsewhere(run)
    if others:
        raise SystemExit(f"{run} was trained on {', then '.join(others)}, not on this CPU ({cpu_kind()}): "
                         "its figures are not this CPU's; move the folder away to train here")  # fmt: skip


def folder_epoch_seconds(result: dict) -> dict | None:
    """:func:`epoch_seconds` of a result from before its JSON kept them, from its run folder's ``metrics.csv``
    when that folder is its run: trained on the result's CPU (:func:`trained_elsewhere`), with its epoch count,
    and not a reference borrowed from another CPU (whose timing is not this CPU's); ``{}`` for a
    progressive-resizing run from before ``train_scale`` (its phases cannot be told apart), None otherwise."""
    run = run_folder(result)
    rows = read_metrics(run) if (run / "metrics.csv").exists() else []
    if not rows or len(rows) != result.get("epochs_done", len(rows)) or "borrowed_from" in result:
        return None
    if trained_elsewhere(run, result.get("cpu")):
        return None
    frozen = yaml.safe_load((run / "config.yaml").read_text()) or {}
    progressive = frozen.get("recipe", {}).get("progressive")  # config.yaml: the recipe under "recipe"
    return {} if progressive and "train_scale" not in rows[0] else epoch_seconds(rows)


def kept_result(path: Path) -> dict:
    """The result stored at ``path``, its epoch timing written into the JSON first when only its run folder has
    it (so that a table rebuilt where the folder is gone keeps the run's shared-CPU note)."""
    result = json.loads(path.read_text())
    if "epoch_seconds" not in result:
        spread = folder_epoch_seconds(result)
        if spread is not None:
            result["epoch_seconds"] = spread
            atomic_write_text(path, json.dumps(result, indent=1))
    return result


def run_name(exp: str, recipe_name: str, minutes: float, size: int, seed: int, tag: str = "") -> str:
    """The run folder's and result file's name of one experiment."""
    return f"{exp}-{recipe_name}{'+' + tag if tag else ''}-{size}px-s{seed}-{minutes:g}min"


def cpu_slug(cpu: str) -> str:
    """A CPU kind as a file-name part: ``AMD EPYC, family 26 model 2`` -> ``amd-epyc-family-26-model-2``."""
    return re.sub(r"[^a-z0-9]+", "-", cpu.lower()).strip("-")


def result_files(name: str) -> list[Path]:
    """Every stored result of the experiment whose run is called ``name`` (:func:`run_name`), one per CPU:
    ``generalise-<name>-on-<cpu>.json``, and the older ``generalise-<name>.json`` (its CPU is inside)."""
    return sorted(p for p in [RESULTS / f"generalise-{name}.json", *RESULTS.glob(f"generalise-{name}-on-*.json")]
                  if p.exists())  # fmt: skip


def result_file(name: str, cpu: str | None = None, benchmark: str = "generalise", folder: Path | None = None) -> Path:
    """Where the result of the ``benchmark``'s experiment whose run is called ``name`` is stored for ``cpu``
    (default: this one's kind, :func:`polypseg.device.cpu_kind`): the older file without the CPU in its name
    when that is the one it records, else ``<benchmark>-<name>-on-<cpu>.json``, in ``folder`` (default
    ``RESULTS``). A result of one CPU is never taken as done on another."""
    cpu, folder = cpu or cpu_kind(), folder or RESULTS
    older = folder / f"{benchmark}-{name}.json"
    if older.exists() and json.loads(older.read_text()).get("cpu") == cpu:
        return older
    return folder / f"{benchmark}-{name}-on-{cpu_slug(cpu)}.json"


def run_folder(result: dict) -> Path:
    """The run folder of a stored result."""
    return RUNS / run_name(result["experiment"], result["recipe"], result["budget_minutes"], result["size"],
                           result["seed"], result.get("tag", ""))  # fmt: skip


def has_bf16_units() -> bool:
    """Whether this CPU has bf16 matrix units (the tables' "bf16 units" column)."""
    return cpu_bf16_kind() is not None


def _link_pairs(rows: list[dict], root: Path) -> Path:
    """A pair folder of symlinks to the PolypGen frames of ``rows`` (``images/`` + ``masks/``)."""
    for kind, ext in (("images", ".jpg"), ("masks", ".png")):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for r in rows:
            link = root / kind / f"{r['stem']}{ext}"
            if not link.is_symlink():
                link.symlink_to(SHARED / "polypgen" / r["split"] / kind / f"{r['stem']}{ext}")
    return root


def loco_data(centre: str) -> tuple[Path, Path, Path]:
    """(training folder without ``centre``, its group CSV, the centre's folder) built from the split CSV."""
    with (SHARED / "polypgen" / "polypgen_256_split.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    base = RUNS / "data"
    rest = _link_pairs([r for r in rows if r["centre"] != centre], base / f"polypgen-no{centre}")
    held = _link_pairs([r for r in rows if r["centre"] == centre], base / f"polypgen-{centre}")
    groups = base / f"polypgen-no{centre}-groups.csv"
    lines = "".join(f"{r['stem']},{r['group_id']}\n" for r in rows if r["centre"] != centre)
    atomic_write_text(groups, "stem,group\n" + lines)
    return rest, groups, held


def plan(exp: str) -> tuple[list[str], dict, list[str]]:
    """(training --data, recipe overrides, external test sets) of one experiment."""
    pg, pt = SHARED / "polypgen", SHARED / "polyp-train"
    if exp == "polypgen":
        return [str(pg)], {}, [str(pt / "kvasir"), str(pt / "clinicdb")]
    if exp == "kvasir+clinicdb":
        import quality  # the ClinicDB frame -> sequence table lives there

        groups = quality.clinicdb_group_csv(RUNS)
        named = []
        for split in ("val", "train"):  # named links, so the table says PolypGen-val rather than val
            link = RUNS / "data" / f"PolypGen-{split}"
            if not link.is_symlink():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(pg / split, target_is_directory=True)
            named.append(str(link))
        return [str(pt / "kvasir"), str(pt / "clinicdb")], {"data.val_fraction": 0.1, "data.group_csv": groups}, named
    centre = exp.removeprefix("loco-")
    rest, groups, held = loco_data(centre)
    return [str(rest)], {"data.val_fraction": 0.1, "data.group_csv": f"{groups}:group"}, [str(held)]


def run_one(
    exp: str,
    recipe_name: str,
    minutes: float,
    size: int,
    seed: int,
    extra: dict | None = None,
    tag: str = "",
    command: str = "",
    tta: bool = False,
    weights_from: Path | None = None,
) -> dict:
    """Train (or resume) one experiment and score it; ``extra`` recipe overrides (named by ``tag`` in the
    result and run names, e.g. ``base24``) go on top of the experiment's own; ``command`` replaces the
    stored command line (for drivers such as budget.py). ``tta``: tune the threshold and score with flip
    test-time augmentation. ``weights_from``: a finished run folder whose training is reused (copied,
    without its evaluations) instead of training: a test-time-only candidate."""
    name = run_name(exp, recipe_name, minutes, size, seed, tag)
    out_json = result_file(name)
    if out_json.exists():
        print(f"skip (done): {out_json.name}")
        return json.loads(out_json.read_text())
    data, overrides, external = plan(exp)
    overrides = {**overrides, **(extra or {})}
    run = RUNS / name
    for folder in (run, weights_from):
        if folder is not None:
            refuse_foreign(folder)
    t0 = time.perf_counter()
    if weights_from is not None:
        if not (run / "checkpoints" / "best.ckpt").exists():
            shutil.rmtree(run, ignore_errors=True)  # a copy cut short is made again
            shutil.copytree(weights_from, run, ignore=shutil.ignore_patterns("eval", "threshold.json", "*.lock"))
    elif (run / "checkpoints" / "last.ckpt").exists():
        print(f"resume {run} (budget {minutes:g} min in all)")
        fit(None, [], run, resume=True, max_minutes=minutes, progress=False)
    else:
        recipe = load_recipe(recipe_name, {"seed": seed, "data.size": size, "data.test_fraction": 0.0, **overrides})
        fit(recipe, data, run, max_minutes=minutes, progress=False)
    train_s = time.perf_counter() - t0
    sweep = tune_threshold(run, tta=tta)  # on the run's validation images only
    val = evaluate(run, split="val", out_dir=run / "eval" / "val", tta=tta).summary
    res = evaluate_sets(run, external, run / "eval" / "external", tta=tta)
    rows = read_metrics(run)
    env = json.loads((run / "env.json").read_text())
    result = {
        "experiment": exp, "recipe": recipe_name, "tag": tag, "overrides": extra or {}, "size": size, "seed": seed,
        "budget_minutes": minutes,
        "cpu": cpu_kind(), "bf16_units": has_bf16_units(), "threads": env.get("torch_threads"),
        "precision_used": training_precision(env), "epochs_done": len(rows), "train_seconds_this_call": train_s,
        "epoch_seconds": epoch_seconds(rows),
        "threshold": sweep.best, "tta": tta, "train_data": data,
        **({"weights_from": weights_from.name} if weights_from is not None else {}),
        **({"isa_limit": env["isa_limit"]} if env.get("isa_limit") else {}),  # an emulated narrower CPU
        "best_epoch": best_epoch(rows),
        "validation": {"n": val["metrics"]["n_images"], "mDice": val["metrics"]["mean"]["dice"],
                       "mIoU": val["metrics"]["mean"]["iou"],
                       # kept so that paired comparisons outlive the run folder (a new machine has none)
                       "per_image_dice": read_scores(run / "eval" / "val" / "per_image.csv", "dice")},
        "external": res.rows,
        "command": command or f"python benchmarks/generalise.py --experiments {exp} --recipe {recipe_name} "
        f"--minutes {minutes:g} --size {size} --seed {seed}",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **({"note": NOTE[0]} if NOTE[0] else {}),
    }  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_json, json.dumps(result, indent=1))
    print(result_line(result))
    return result


def result_line(result: dict) -> str:
    """One line for the log: experiment, recipe and candidate tag, validation and each external set's mDice
    (the table's last two rows, the mean over sets and the image-weighted mean, left out), epochs trained."""
    name = result["recipe"] + (f"+{result['tag']}" if result.get("tag") else "")
    ext = ", ".join(f"{r['set']} {r['mDice']:.4f}" for r in result["external"][:-2])
    return (f"{result['experiment']} {name}: val mDice {result['validation']['mDice']:.4f}; external {ext} "
            f"({result['epochs_done']} epochs)")  # fmt: skip


def replace_section(path: Path, start: str, end: str, lines: list[str]) -> None:
    """Put ``lines`` (which begin with ``start`` and end with ``end``) in place of that marked section of the
    markdown file ``path``, or append them when the file has no such section; the rest is kept."""
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        text = text.split(start)[0] + "\n".join(lines) + text.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + "\n".join(lines) + "\n"
    atomic_write_text(path, text)
    print(f"written {path}")


def write_table(path: Path = ROOT / "docs" / "results.md") -> None:
    """The generalisation section of ``docs/results.md`` from every result JSON."""
    results = [kept_result(p) for p in sorted(RESULTS.glob("generalise-*.json"))]
    results = [r for r in results if not r.get("tag")]  # budget candidates have their own table (budget.py)
    lines = [START, "", "## Generalisation to unseen centres (benchmarks/generalise.py)", "",
             "Each run trains on the first column's data for the stated budget (the run's total training time), "
             "keeps the best validation epoch, tunes its threshold on its own validation images, and is scored "
             "whole on sets that share no image with it (checked by content). External mDice is the mean over "
             "each set's images at original resolution; the mean over sets weighs each set equally.", "",
             "| trained on | recipe | size | budget | CPU (bf16 units) | epochs | val mDice | external set | images "
             "| mDice | mIoU | wF | S | mean E | MAE |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
             "---|"]  # fmt: skip
    for r in results:
        for k, row in enumerate(r["external"]):
            lead = (f"| {r['experiment']} | `{r['recipe']}` | {r['size']} | {r['budget_minutes']:g} min | {r['cpu']} "
                    f"({'yes' if r['bf16_units'] else 'no'}) | {r['epochs_done']} | {r['validation']['mDice']:.4f} "
                    if k == 0 else "| | | | | | | ")  # fmt: skip
            lines.append(lead + f"| {row['set']} | {int(row['images'])} | {row['mDice']:.4f} | {row['mIoU']:.4f} | "
                         f"{row['wF']:.4f} | {row['S']:.4f} | {row['mean E']:.4f} | {row['MAE']:.4f} |")  # fmt: skip
    notes = [f"- {r['experiment']} ({r['budget_minutes']:g} min): {n}" for r in results
             for n in (r.get("note", ""), shared_cpu_note(r)) if n]  # fmt: skip
    lines += (["", "Notes:", "", *notes] if notes else []) + ["", "Commands:", ""]
    lines += [f"- `{r['command']}`" for r in results] + ["", END]
    replace_section(path, START, END, lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS[:2]), choices=EXPERIMENTS)
    ap.add_argument("--recipe", default="strong")
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--table", action="store_true", help="only rebuild the docs/results.md section")
    ap.add_argument("--note", default="", help="a remark stored with each new result (e.g. other load on the CPU)")
    args = ap.parse_args()
    NOTE[0] = args.note
    if not args.table:
        if not SHARED.exists():
            raise SystemExit(f"{SHARED} is absent: this benchmark needs the polyp data")
        print(f"CPU: {cpu_kind()} (bf16 units: {'yes' if has_bf16_units() else 'no'})", flush=True)
        for exp in args.experiments:
            run_one(exp, args.recipe, args.minutes, args.size, args.seed)
    write_table()


if __name__ == "__main__":
    main()
