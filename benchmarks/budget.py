"""The best recipe per CPU budget: candidates against ``strong`` under the same wall-clock budget.

    python benchmarks/budget.py [--minutes 20] [--candidates strong size256 base24 ...] [--seed 0]
        [--note "..."] [--table] [--adopt-ref FINISHED_STRONG_RUN] [--isa avx2]

Every candidate is ``strong`` (192 px unless it changes the size) with the changes in its name, trained
on PolypGen train (its own 140-frame val split picks the checkpoint and tunes the threshold) for the
budget (the run's total training time, resumable: an interrupted call continues with the rest of the
budget, a finished candidate is skipped), then scored on PolypGen val and, whole, on Kvasir-SEG (900)
and CVC-ClinicDB (550): the ``polypgen`` experiment of ``generalise.py``, with the candidate's
overrides.

Results: ``benchmarks/results/generalise-polypgen-strong+<candidate>-<size>px-s<seed>-<minutes>min-on-<cpu>.json``
(the reference ``strong`` has the tag ``ref``; ``<cpu>`` is the CPU's kind, its model name with family and model,
since session 15; results from before session 12 lack ``-on-<cpu>`` and record their CPU inside; a result of
one CPU is never taken as done on another); ``--table`` (also run at the end) rebuilds
the budget section of ``docs/results.md``: per budget and CPU, each candidate's epochs, validation
mDice, external mDice per set and their mean, and the differences from ``strong``.

Test-time candidates (``tta`` and ``<candidate>-tta``: ``TEST_TIME``) train nothing: they copy a trained
candidate's run folder (trained first if missing) and score it with flip test-time augmentation, the
threshold tuned with TTA.

``--isa avx2`` runs the whole call again in a process whose torch is limited to AVX2 code
(:data:`polypseg.device.AVX2_ONLY_ENV`), so that a CPU with bf16 units stands in for one without them
(AMD Zen 3): the same kernels, fp32 by the package's own precision rule, and the fewer epochs a budget
buys there. Its results and runs carry the tag suffix ``-avx2`` and get a table of their own, against a
``strong`` reference trained the same way; the clock speed and cache are still the host's.

``--adopt-ref RUN`` scores a finished run of ``strong`` as the budget's reference instead of training it
again, only when it is that run (:func:`adoptable`: recipe, PolypGen split, precision, epochs inside the
budget); the table's note says so.

Long queues run best from a frozen clone (``git clone . /work/queue && ln -s $PWD/runs /work/queue/runs``,
``PYTHONPATH=/work/queue/src``): a module imported late in a running job would otherwise read the
working tree as it is being edited.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path

import yaml
from generalise import (
    RESULTS,
    ROOT,
    RUNS,
    SHARED,
    has_bf16_units,
    kept_result,
    replace_section,
    result_file,
    result_files,
    run_folder,
    run_name,
    run_one,
    shared_cpu_note,
)

from polypseg.atomic import atomic_write_text
from polypseg.config import Recipe, load_recipe
from polypseg.device import AVX2_ONLY_ENV, bf16_capped, cpu_kind, lightning_precision, resolve_precision
from polypseg.errors import InputError
from polypseg.evaluation.compare import per_image_csv, read_scores
from polypseg.evaluation.stats import paired_comparison
from polypseg.paths import read_metrics
from polypseg.training import fit

START, END = "<!-- budget:start -->", "<!-- budget:end -->"
BASE_SIZE = 192

# the stride-2 stem with a cosine decay spread over the whole budget (``epochs`` 400 is never reached on 2
# cores; the spent fraction of the budget drives the decay)
REALTIME_COSINE = {"model.args.stem_stride": 2, "epochs": 400, "scheduler.name": "cosine", "scheduler.warmup_epochs": 1}
# name -> (training size, recipe overrides on top of strong); what each tests is in its name
CANDIDATES: dict[str, tuple[int, dict]] = {
    "strong": (BASE_SIZE, {}),  # the reference (tag "ref"), rerun under the candidates' conditions or --adopt-ref
    "size256": (256, {}),
    "size320": (320, {}),
    "base24": (BASE_SIZE, {"model.args.base": 24}),
    "base32": (BASE_SIZE, {"model.args.base": 32}),
    "resunet": (BASE_SIZE, {"model.name": "resunet"}),
    "poly-lr3e-3": (BASE_SIZE, {"optimizer.lr": 0.003, "scheduler.name": "poly", "scheduler.warmup_epochs": 1}),
    "ema": (BASE_SIZE, {"ema_decay": 0.99}),
    "strong-aug": (BASE_SIZE, {"data.augment": "strong"}),
    "multiscale": (BASE_SIZE, {"multiscale": [0.75, 1.0, 1.25]}),
    "progressive": (BASE_SIZE, {"progressive": [0.5, 0.75, 1.0]}),  # thirds of the budget at 96, 144, 192 px
    # the real-time candidates (issue 17: 256 px, compared with size256): strided stem, a quarter of the FLOPs
    "realtime": (256, {"model.args.stem_stride": 2}),
    "realtime-base24": (256, {"model.args.stem_stride": 2, "model.args.base": 24}),
    # combinations of the 20-minute winners on validation (progressive) and on both (realtime)
    "realtime-progressive": (256, {"model.args.stem_stride": 2, "progressive": [0.5, 0.75, 1.0]}),
    # for the long budgets: strong's StepLR(30, 0.1) leaves lr 1e-5 after epoch 60, and its 120-minute run
    # of 150 epochs (shipped polyp-unet16) peaked at epoch 50
    "realtime-cosine": (256, REALTIME_COSINE),
    # the regularisers the issue asks for at the long budget, on top of the long-budget schedule (on top of
    # strong's StepLR they would meet the same plateau after epoch 60)
    "realtime-cosine-strong-aug": (256, {**REALTIME_COSINE, "data.augment": "strong"}),
    "realtime-cosine-multiscale": (256, {**REALTIME_COSINE, "multiscale": [0.75, 1.0, 1.25]}),
    # width against epochs at the long budget, on its winner (cpu-2h): base 24 trains about two thirds of
    # the epochs (realtime-base24 trained 34 where realtime trained 52 in 20 minutes), and cpu-2h peaked at
    # epoch 174 of 295 in 120 minutes, so the long budget is where width may pay
    "realtime-cosine-multiscale-base24": (
        256,
        {**REALTIME_COSINE, "multiscale": [0.75, 1.0, 1.25], "model.args.base": 24},
    ),
}
# --isa avx2: every candidate (the reference too) trains with torch limited to AVX2 code, hence in fp32, on
# a CPU with bf16 units, standing in for a CPU without them; filed with this tag suffix, tabled apart
AVX2_TAG = "-avx2"
# test-time candidates: name -> the trained candidate whose weights they reuse, scored with flip TTA
# (threshold tuned with TTA on the same validation images); no training of their own
TEST_TIME: dict[str, str] = {"tta": "strong", "realtime-tta": "realtime", "realtime-cosine-tta": "realtime-cosine",
                             "realtime-cosine-strong-aug-tta": "realtime-cosine-strong-aug"}  # fmt: skip


def run_candidate(name: str, minutes: float, seed: int, avx2: bool = False) -> dict:
    """Train and score one candidate (the reference ``strong`` is stored with the tag ``ref``); a test-time
    candidate first makes sure the candidate it reuses is trained. ``avx2``: this process runs with torch
    limited to AVX2 code (``--isa avx2``); the tag gets the suffix :data:`AVX2_TAG`."""
    command = f"python benchmarks/budget.py --minutes {minutes:g} --candidates {name} --seed {seed}"
    command, suffix = (f"{command} --isa avx2", AVX2_TAG) if avx2 else (command, "")
    if name in TEST_TIME:
        trained = run_candidate(TEST_TIME[name], minutes, seed, avx2)
        size, extra = CANDIDATES[TEST_TIME[name]]
        return run_one("polypgen", "strong", minutes, size, seed, extra=extra, tag=name + suffix, command=command,
                       tta=True, weights_from=run_folder(trained))  # fmt: skip
    size, extra = CANDIDATES[name]
    tag = ("ref" if name == "strong" else name) + suffix
    return run_one("polypgen", "strong", minutes, size, seed, extra=extra, tag=tag, command=command)


def candidate_name(result: dict) -> str:
    """The candidate a stored result is of (``strong`` for the reference), without the AVX2 suffix."""
    tag = result.get("tag", "").removesuffix(AVX2_TAG)
    return "strong" if tag == "ref" else tag


def adoptable(source: Path, minutes: float, seed: int, polypgen: Path = SHARED / "polypgen") -> list[str]:
    """Why the finished run ``source`` cannot stand in for this budget's ``strong`` reference (empty: it can).

    It can when it IS the run the reference would be: the recipe resolves to ``strong`` at 192 px with this
    seed (name, description and the split fractions aside: PolypGen's split is its train / val folders), its
    training and validation images are the frames of ``polypgen``'s train and val folders (by file name), it
    ran with the precision this machine would use, and it finished all its epochs inside ``minutes``.
    """
    frozen = yaml.safe_load((source / "config.yaml").read_text())
    expected = load_recipe("strong", {"seed": seed, "data.size": BASE_SIZE, "data.test_fraction": 0.0}).model_dump()
    problems = []
    got = Recipe.model_validate(frozen["recipe"]).model_dump()  # as fit --resume reads it: defaults filled
    for key in sorted(set(expected) | set(got)):
        a, b = expected.get(key), got.get(key)
        if key in ("name", "description"):
            continue
        if key == "data":
            a, b = ({k: v for k, v in (d or {}).items() if k not in ("val_fraction", "test_fraction")} for d in (a, b))
        if a != b:
            problems.append(f"recipe {key}: {b!r}, strong's is {a!r}")
    split = json.loads((source / "split.json").read_text())["splits"]
    for part in ("train", "val"):
        names = {Path(i).name for i in split[part]}
        frames = {f.stem for f in (polypgen / part / "images").iterdir()}
        if names != frames:
            problems.append(f"its {part} split is not PolypGen's {part} folder ({len(names ^ frames)} frames differ)")
    precision = json.loads((source / "env.json").read_text()).get("precision")
    here = lightning_precision(resolve_precision(expected["precision"], "cpu"))  # what strong trains with here
    if precision != here:
        problems.append(f"trained with precision {precision}, this CPU would use {here}")
    epochs, spent = trained(source)
    if epochs < expected["epochs"] and spent < minutes * 0.98:
        problems.append(f"it stopped after {epochs} epochs and {spent:.0f} min: neither its epochs nor the budget")
    if spent > minutes * 1.02:  # the budget stops a run after the batch that spends it
        problems.append(f"it trained {spent:.0f} min, more than the {minutes:g}-minute budget")
    return problems


def trained(run: Path) -> tuple[int, float]:
    """(epochs finished, minutes of training) of a run folder, from its ``metrics.csv``."""
    rows = read_metrics(run)
    return len(rows), sum(r.get("seconds", 0.0) for r in rows) / 60


def adopt_reference(source: Path, minutes: float, seed: int) -> dict:
    """Score the finished run ``source`` as this budget's ``strong`` reference instead of training it again
    (refused unless :func:`adoptable`); its folder is copied, its result says where it came from."""
    import generalise

    problems = adoptable(source, minutes, seed)
    if problems:
        raise SystemExit(f"{source} cannot be the {minutes:g}-minute strong reference: " + "; ".join(problems))
    epochs, spent = trained(source)
    note = (f"adopted, not retrained: {source.name} (same recipe, images, seed and precision), which finished its "
            f"{epochs} epochs in {spent:.0f} min of training, inside the budget; slow epochs there (other load) "
            "did not change what it trained")  # fmt: skip
    command = (
        f"python benchmarks/budget.py --minutes {minutes:g} --candidates strong --seed {seed} --adopt-ref {source}"
    )
    given = generalise.NOTE[0]
    generalise.NOTE[0] = "; ".join(x for x in (given, note) if x)  # this result's note only
    try:
        return run_one("polypgen", "strong", minutes, BASE_SIZE, seed, tag="ref", command=command, weights_from=source)
    finally:
        generalise.NOTE[0] = given


def val_scores(result: dict) -> dict[str, float] | None:
    """``{image id: Dice}`` of a result on PolypGen val: kept in its JSON (``validation.per_image_dice``), else
    read from its run folder's ``eval/val/per_image.csv`` when that folder is its run (run folders do not name
    the CPU: the folder of the same name may be another CPU's run, known by a mean that is not this result's
    mDice); None otherwise (a result from before the JSON kept them, on a machine without its run folder)."""
    kept = result["validation"].get("per_image_dice")
    if kept:
        return kept
    try:
        scores = read_scores(per_image_csv(run_folder(result) / "eval" / "val"), "dice")
    except (FileNotFoundError, InputError):
        return None
    mean = sum(scores.values()) / max(len(scores), 1)
    return scores if abs(mean - result["validation"]["mDice"]) < 1e-9 else None


def probe_epoch_seconds(seed: int, epochs: int = 3) -> tuple[float, int]:
    """(median seconds, epochs timed) of an epoch of the ``strong`` reference's own training on this machine
    (PolypGen train, 192 px, this seed), from at least ``epochs`` epochs in a probe run folder (reused when it
    has them)."""
    import generalise

    run = RUNS / f"probe-strong-{BASE_SIZE}px-s{seed}-{epochs}ep"
    if not (run / "metrics.csv").exists() or len(read_metrics(run)) < epochs:
        shutil.rmtree(run, ignore_errors=True)
        data, overrides, _ = generalise.plan("polypgen")
        recipe = load_recipe("strong", {"seed": seed, "data.size": BASE_SIZE, "data.test_fraction": 0.0, **overrides,
                                        "epochs": epochs})  # fmt: skip
        fit(recipe, data, run, progress=False)
    rows = read_metrics(run)
    return statistics.median(r["seconds"] for r in rows), len(rows)


def borrowable(source: dict, minutes: float, seed: int, epoch_seconds: float) -> list[str]:
    """Why ``source``, the budget's ``strong`` reference measured on another CPU, cannot stand in for this
    CPU's (empty: it can), given ``epoch_seconds``, the median epoch of the same training here.

    It can when a run here would keep the same epoch: ``strong``'s schedule counts epochs (StepLR), so a run
    here follows the source's schedule epoch by epoch until the budget stops it, and it keeps its best
    validation epoch; when the source's best epoch ends inside the budget here too, no later epoch of the
    source beat it, so the kept epoch is the same (up to this CPU's rounding of the same arithmetic). Also
    required: the same budget, seed and precision."""
    expected = load_recipe("strong", {"seed": seed})
    problems = []
    if expected.scheduler.name != "step":
        problems.append(f"strong's schedule is {expected.scheduler.name}, not one that counts epochs (step)")
    if (source["budget_minutes"], source["seed"]) != (minutes, seed):
        problems.append(f"it is the {source['budget_minutes']:g}-minute reference of seed {source['seed']}")
    here = lightning_precision(resolve_precision(expected.precision, "cpu"))
    if source.get("precision_used") != here:
        problems.append(f"it trained with precision {source.get('precision_used')}, this CPU would use {here}")
    best = source.get("best_epoch")
    if best is None:
        problems.append("it does not record its best epoch")
    elif (best + 1) * epoch_seconds > minutes * 60:
        problems.append(f"its best epoch ({best}) would end after {(best + 1) * epoch_seconds / 60:.0f} min here "
                        f"({epoch_seconds:.0f} s an epoch), past the budget")  # fmt: skip
    return problems


def borrow_reference(minutes: float, seed: int) -> dict:
    """Store the budget's ``strong`` reference of another CPU as this CPU's (refused unless :func:`borrowable`,
    with the epoch time measured here by :func:`probe_epoch_seconds`), so that a candidate trained here is
    compared with it in this CPU's table; the row and its note say where it was trained."""
    here = cpu_kind()
    name = run_name("polypgen", "strong", minutes, BASE_SIZE, seed, "ref")
    out = result_path(minutes, seed)
    if out.exists():
        raise SystemExit(f"{out.name}: this CPU ({here}) has its reference: nothing to borrow")
    others = [(p, json.loads(p.read_text())) for p in result_files(name)]
    others = [(p, r) for p, r in others if "borrowed_from" not in r]
    if not others:
        raise SystemExit(f"no {minutes:g}-minute strong reference of another CPU to borrow (generalise-{name}*.json)")
    path, source = others[0]
    epoch_s, timed = probe_epoch_seconds(seed)
    problems = borrowable(source, minutes, seed, epoch_s)
    if problems:
        raise SystemExit(f"{path.name} cannot stand in for the reference on {here}: " + "; ".join(problems))
    best = source["best_epoch"]
    note = (f"borrowed, not trained here: the run on {source['cpu']} (bf16 units: "
            f"{'yes' if source['bf16_units'] else 'no'}), whose best epoch was {best} of {source['epochs_done']}; "
            f"strong's epoch takes {epoch_s:.0f} s here (median of {timed} epochs of the same training), so epoch "
            f"{best} ends after about {(best + 1) * epoch_s / 60:.0f} min, inside the budget, and strong's "
            f"schedule counts epochs: a run here would keep the same epoch. Its epochs and timing are the other "
            f"CPU's")  # fmt: skip
    command = f"python benchmarks/budget.py --minutes {minutes:g} --seed {seed} --borrow-ref"
    result = {**source, "cpu": here, "bf16_units": has_bf16_units(), "note": note, "command": command,
              "borrowed_from": {"cpu": source["cpu"], "result": path.name}, "probe_epoch_seconds": epoch_s,
              "time": time.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip
    result.pop("epoch_seconds", None)  # the source's timing is not this CPU's: no shared-CPU note from it
    atomic_write_text(out, json.dumps(result, indent=1))
    print(f"borrowed {path.name} as {out.name}: {note}")
    return result


def paired_val(base: dict, result: dict) -> str:
    """``Δ [95 % interval], p`` of the candidate's validation Dice against the reference, image by image (the
    numbers ``polypseg compare`` gives for the two ``eval/val`` folders). Without per-image scores of both,
    the comparison the result recorded against this very reference (``validation.vs_ref``: made where the
    run folders were), else a remark."""
    a, b = val_scores(base), val_scores(result)
    if a is None or b is None:
        kept = result["validation"].get("vs_ref") or {}
        return kept["text"] if kept.get("ref_time") == base["time"] else "(per-image scores missing)"
    if a.keys() != b.keys():
        return f"(not the same validation images: {len(a.keys() ^ b.keys())} differ)"
    ids = sorted(a)
    c = paired_comparison([a[i] for i in ids], [b[i] for i in ids], metric="dice")
    return f"{c.diff:+.4f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}], p {c.p_value:.3f}"


def keep_scores(path: Path) -> dict:
    """The result stored at ``path``, its per-image validation Dice written into the JSON first when only its
    run folder has them (so that the table can be rebuilt where the folder is gone)."""
    result = kept_result(path)
    if not result["validation"].get("per_image_dice"):
        scores = val_scores(result)
        if scores is not None:
            result["validation"]["per_image_dice"] = scores
            atomic_write_text(path, json.dumps(result, indent=1))
    return result


def result_path(minutes: float, seed: int, tag: str = "ref", size: int = BASE_SIZE, cpu: str | None = None) -> Path:
    """Where the result of one candidate (tag) of this budget and seed is stored for ``cpu`` (default: this
    CPU; :func:`generalise.result_file`)."""
    return result_file(run_name("polypgen", "strong", minutes, size, seed, tag), cpu)


def restore_ref_scores(model: str, minutes: float, seed: int) -> dict:
    """Give the budget's ``strong`` reference its per-image validation Dice again, from the shipped ``model``
    made from the reference's own run, when the reference's run folder is gone.

    Refused unless the model card's fp32 validation mDice is the reference's (the same weights, scored the
    same way). The shipped weights are fp16: the per-image scores are theirs, and the note says how far
    their mean is from the reference's fp32 figure."""
    from polypseg.evaluation.evaluate import evaluate
    from polypseg.zoo import find

    path = result_path(minutes, seed)
    ref = json.loads(path.read_text())
    shipped = find(model)
    if shipped is None:
        raise SystemExit(f"no shipped model {model!r}: `polypseg models` lists them")
    figures = shipped.card.get("figures", {})
    if abs(figures.get("validation_fp32_mdice", -1.0) - ref["validation"]["mDice"]) > 1e-9:
        raise SystemExit(f"{model} was not made from the run of {path.name}: its card's fp32 validation mDice "
                         f"{figures.get('validation_fp32_mdice')} is not {ref['validation']['mDice']}")  # fmt: skip
    out = RUNS / f"{model}-on-polypgen-val"
    summary = evaluate(model, data=[str(SHARED / "polypgen" / "val")], out_dir=out, threshold=ref["threshold"]).summary
    scores = {f"polypgen/val/{i.rsplit('/', 1)[-1]}": d for i, d in read_scores(out / "per_image.csv", "dice").items()}
    mean = summary["metrics"]["mean"]["dice"]
    ref["validation"]["per_image_dice"] = scores
    ref["validation"]["per_image_dice_source"] = (
        f"the shipped {model} (this run's weights in fp16), scored again on the {len(scores)} PolypGen val frames: "
        f"mDice {mean:.5f} against {ref['validation']['mDice']:.5f} in fp32"
    )
    atomic_write_text(path, json.dumps(ref, indent=1))
    return ref


def _mean_external(result: dict) -> float:
    sets = [r for r in result["external"] if "mean" not in str(r["set"])]  # not the two summary rows
    return sum(r["mDice"] for r in sets) / len(sets)


def write_table(path: Path = ROOT / "docs" / "results.md") -> None:
    """The budget section of ``docs/results.md``: one table per (budget, CPU) from the result JSONs."""
    results = [keep_scores(p) for p in sorted(RESULTS.glob("generalise-polypgen-strong+*.json"))]
    groups: dict[tuple[float, str, bool, bool], list[dict]] = {}
    for r in results:
        avx2 = r.get("tag", "").endswith(AVX2_TAG)
        groups.setdefault((r["budget_minutes"], r["cpu"], r["bf16_units"], avx2), []).append(r)
    lines = [
        START,
        "",
        "## The best recipe per CPU budget (benchmarks/budget.py)",
        "",
        "Each candidate is `strong` with the changes its row lists, trained on PolypGen train (984 frames) for the "
        "budget (the run's own training time on 2 cores), its best validation epoch kept and its threshold tuned "
        "on PolypGen val (140 frames); Kvasir-SEG (900) and CVC-ClinicDB (550) are scored whole at original "
        "resolution. Differences are against `strong` in the same table (same budget, CPU, seed); Δ val is paired "
        "over the 140 validation images (bootstrap interval, sign-flip permutation p; `polypseg compare`). "
        "A test-time candidate (flip TTA) reuses a trained candidate's weights, its threshold tuned again with "
        "TTA on the same validation images; its epochs are those of the weights it reuses.",
    ]
    for (minutes, cpu, bf16, avx2), rows in sorted(groups.items()):
        base = next((r for r in rows if candidate_name(r) == "strong"), None)
        units = ("yes" if bf16 else "no") + (", not used: torch limited to AVX2 code with --isa avx2, so fp32, as "
                                             "on a CPU without them" if avx2 else "")  # fmt: skip
        lines += [
            "",
            f"### {minutes:g} minutes, {cpu} (bf16 units: {units})",
            "",
            "| candidate | change | size | epochs | val mDice | Δ val [95 % CI], p | Kvasir | ClinicDB | external mean "
            "| Δ external |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sorted(rows, key=lambda r: (r is not base, -r["validation"]["mDice"])):
            ext = {str(e["set"]): e["mDice"] for e in r["external"]}
            mean = _mean_external(r)
            dv = paired_val(base, r) if base and r is not base else ""
            de = f"{mean - _mean_external(base):+.4f}" if base and r is not base else ""
            changes = [f"{k}={v}" for k, v in r.get("overrides", {}).items()]
            if r.get("weights_from") and r.get("tta"):
                source = next((x for x in rows if run_folder(x).name == r["weights_from"]), None)
                name = "?" if source is None else candidate_name(source)
                changes.append(f"flip TTA at test time ({name}'s weights)")
            changes += [f"data.size={r['size']}"] if r["size"] != BASE_SIZE else []
            if r.get("borrowed_from"):
                changes.append(f"trained on {r['borrowed_from']['cpu']}, not here (note)")
            change = ", ".join(changes) or "—"
            lines.append(f"| {candidate_name(r)} | {change} | {r['size']} | {r['epochs_done']} | "
                         f"{r['validation']['mDice']:.4f} | {dv} | {ext.get('kvasir', float('nan')):.4f} | "
                         f"{ext.get('clinicdb', float('nan')):.4f} | {mean:.4f} | {de} |")  # fmt: skip
        notes = [f"- {candidate_name(r)}: {n}" for r in rows
                 for n in (r.get("note", ""), shared_cpu_note(r)) if n]  # fmt: skip
        lines += (["", "Notes:", "", *notes] if notes else []) + ["", "Commands:", ""]
        lines += [f"- `{r['command']}`" for r in rows]
    lines += ["", END]
    replace_section(path, START, END, lines)


ADOPT_HELP = "a finished run of strong to score as this budget's reference instead of training one"
BORROW_HELP = "use this budget's strong reference measured on another CPU as this CPU's, when it may (borrowable)"
ISA_HELP = (
    "avx2: run again with torch limited to AVX2 code (so fp32) on a CPU with bf16 units, standing in for a CPU "
    "without them (results tagged -avx2, in a table of their own)"
)


def refuse_mixed_isa(avx2: bool, borrowing: object) -> None:
    """Stop before training when ``--isa avx2`` (``avx2``) and this process's code path do not fit together.

    Raises:
        SystemExit: ``--isa avx2`` on a CPU without bf16 units (it runs AVX2 / fp32 code already) or with a
            stand-in reference (``borrowing``: adopted, borrowed or restored ones are bf16 runs); or a limit
            set by hand in ``ONEDNN_MAX_CPU_ISA`` without ``--isa avx2``, whose fp32 results would be filed as
            this CPU's bf16 ones.
    """
    if avx2 and not has_bf16_units():
        raise SystemExit(f"this CPU ({cpu_kind()}) has no bf16 units and runs fp32 code already: run without "
                         "--isa avx2")  # fmt: skip
    if avx2 and borrowing:
        raise SystemExit("--isa avx2 trains its own reference: drop --adopt-ref, --borrow-ref and "
                         "--ref-scores-from, which stand in a bf16 one")  # fmt: skip
    if not avx2 and bf16_capped() and has_bf16_units():
        raise SystemExit(f"ONEDNN_MAX_CPU_ISA={os.environ['ONEDNN_MAX_CPU_ISA']} keeps torch off this CPU's "
                         "bf16 units, and the results would be filed as its bf16 ones: unset it and pass "
                         "--isa avx2")  # fmt: skip


SCORES_HELP = "restore the reference's per-image validation scores from the shipped model made from its run"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--candidates", nargs="+", default=None, choices=[*CANDIDATES, *TEST_TIME],
                    help="default: all, or none with --adopt-ref / --borrow-ref / --ref-scores-from")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--note", default="", help="a remark stored with each new result (e.g. other load on the CPU)")
    ap.add_argument("--table", action="store_true", help="only rebuild the docs/results.md section")
    ap.add_argument("--adopt-ref", type=Path, default=None, help=ADOPT_HELP)
    ap.add_argument("--borrow-ref", action="store_true", help=BORROW_HELP)
    ap.add_argument("--ref-scores-from", metavar="MODEL", default=None, help=SCORES_HELP)
    ap.add_argument("--isa", choices=["native", "avx2"], default="native", help=ISA_HELP)
    args = ap.parse_args()
    avx2 = args.isa == "avx2"
    if not args.table:
        refuse_mixed_isa(avx2, args.adopt_ref or args.borrow_ref or args.ref_scores_from)
        if avx2 and not bf16_capped():  # torch reads the limit when it loads: a new process
            os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **AVX2_ONLY_ENV})
    import generalise

    generalise.NOTE[0] = args.note
    if not args.table:
        if not SHARED.exists():
            raise SystemExit(f"{SHARED} is absent: this benchmark needs the polyp data")
        print(f"CPU: {cpu_kind()} (bf16 units: {'yes' if has_bf16_units() else 'no'}); "
              f"{shlex.join(sys.argv)}", flush=True)  # fmt: skip
        if args.ref_scores_from is not None:
            restore_ref_scores(args.ref_scores_from, args.minutes, args.seed)
        if args.adopt_ref is not None:
            adopt_reference(args.adopt_ref, args.minutes, args.seed)
        if args.borrow_ref:
            borrow_reference(args.minutes, args.seed)
        reference_only = args.adopt_ref is not None or args.borrow_ref or args.ref_scores_from is not None
        for name in args.candidates or ([] if reference_only else [*CANDIDATES, *TEST_TIME]):
            run_candidate(name, args.minutes, args.seed, avx2)
    write_table()


if __name__ == "__main__":
    main()
