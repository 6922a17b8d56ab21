"""External test sets, each scored on its own, and the literature's table over them.

``evaluate_sets(run, ["Kvasir", "TestDataset/"])`` turns the ``--data`` arguments into test sets (one
per argument, except a PraNet-style ``TestDataset/`` folder, or a PraNet root holding one, which gives
one set per sub-folder), checks that every set is external (no image in common with the run's training
and validation images, by content), scores each whole with :func:`polypseg.evaluation.evaluate` into
``<out>/<set>/`` and writes the table (``table.md``, ``table.csv``, ``table.tex``) into ``<out>/``:
one row per set with images, mDice, mIoU, weighted F, S-measure, mean and max E-measure and MAE, then
the mean over sets and the image-weighted mean.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from polypseg.atomic import atomic_write_text
from polypseg.data.errors import DataError
from polypseg.data.layouts import IMAGE_DIR_NAMES, SPLIT_ALIASES, pair_subfolders
from polypseg.data.sources import discover_all
from polypseg.evaluation.evaluate import EvalResult, data_name, evaluate, model_run_dir
from polypseg.evaluation.selection import select_samples
from polypseg.inference.predictor import Predictor
from polypseg.paths import RunPaths
from polypseg.zoo import resolve_model

#: Table columns: (header, where in summary.json, format).
COLUMNS = (
    ("images", ("metrics", "n_images"), "{:d}"),
    ("mDice", ("metrics", "mean", "dice"), "{:.4f}"),
    ("mIoU", ("metrics", "mean", "iou"), "{:.4f}"),
    ("wF", ("structure", "weighted_f"), "{:.4f}"),
    ("S", ("structure", "s_measure"), "{:.4f}"),
    ("mean E", ("structure", "mean_e_measure"), "{:.4f}"),
    ("max E", ("structure", "max_e_measure"), "{:.4f}"),
    ("MAE", ("structure", "mae"), "{:.4f}"),
)


@dataclass(frozen=True)
class TestSet:
    """One external test set: its name (the table row, the folder under ``<out>/``) and its ``--data`` value."""

    name: str
    data: str


def _is_multi_set_folder(path: Path) -> bool:
    """A folder of test sets: no image folder and no split folders of its own, sub-folders holding pairs."""
    subs = {p.name for p in path.iterdir() if p.is_dir()}
    if subs & set(IMAGE_DIR_NAMES) or subs & set(SPLIT_ALIASES):
        return False
    return bool(pair_subfolders(path))


def expand_sets(data: Sequence[str]) -> list[TestSet]:
    """The test sets the ``--data`` arguments name, in order; repeated names get ``_2``, ``_3``, ...

    ``PATH/TestDataset/`` (PraNet) and any folder whose sub-folders each hold images and masks give one
    set per sub-folder; a PraNet root (holding ``TestDataset/``) gives its test sets; anything else is
    one set.
    """
    found: list[tuple[str, str]] = []
    for arg in data:
        path = Path(str(arg))
        if path.is_dir() and (path / "TestDataset").is_dir():
            path = path / "TestDataset"
        if path.is_dir() and _is_multi_set_folder(path):
            found += [(sub.name, str(sub)) for sub in pair_subfolders(path)]
        else:
            found.append((data_name([str(arg)]), str(arg)))
    taken: set[str] = set()
    out = []
    for name, value in found:
        unique, k = name, 1
        while unique in taken:  # Kvasir, Kvasir_2, ...; never one a later set already has
            k += 1
            unique = f"{name}_{k}"
        taken.add(unique)
        out.append(TestSet(unique, value))
    return out


def is_multi_set(data: Sequence[str] | None) -> bool:
    """Whether ``--data`` names more than one test set (several arguments, or a folder of sets)."""
    return bool(data) and (len(data) > 1 or len(expand_sets(data)) > 1)


@dataclass
class SetsResult:
    """Each set's evaluation, the table rows (sets, then the two means) and the table files."""

    out_dir: Path
    results: list[tuple[TestSet, EvalResult]]
    rows: list[dict[str, object]]
    tables: list[Path]


def _value(summary: dict, where: tuple[str, ...]) -> float:
    value: object = summary
    for key in where:
        value = value[key]  # type: ignore[index]
    return float(value)  # type: ignore[arg-type]


def table_rows(named: Sequence[tuple[str, dict]]) -> list[dict[str, object]]:
    """One row per ``(set name, summary)``, then ``mean over sets`` and ``image-weighted mean``."""
    sets: list[dict[str, object]] = [
        {"set": name, **{h: _value(s, where) for h, where, _ in COLUMNS}} for name, s in named
    ]
    if not sets:
        return []
    n = [float(r["images"]) for r in sets]  # type: ignore[arg-type]
    cols = [h for h, _, _ in COLUMNS if h != "images"]
    values = {h: [float(r[h]) for r in sets] for h in cols}  # type: ignore[arg-type]
    mean = {h: sum(v) / len(v) for h, v in values.items()}
    weighted = {h: sum(x * w for x, w in zip(v, n, strict=True)) / sum(n) for h, v in values.items()}
    return [*sets, {"set": "mean over sets", "images": sum(n), **mean},
            {"set": "image-weighted mean", "images": sum(n), **weighted}]  # fmt: skip


def format_cells(row: dict[str, object]) -> list[str]:
    """A table row as text cells: the set name, then each column in its :data:`COLUMNS` format."""
    return [str(row["set"])] + [fmt.format(int(row[h]) if h == "images" else row[h]) for h, _, fmt in COLUMNS]


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}  # fmt: skip


def _latex_escape(text: str) -> str:
    return "".join(_LATEX.get(c, c) for c in text)


def render_tables(rows: Sequence[dict[str, object]], caption: str) -> dict[str, str]:
    """``{"table.md": ..., "table.csv": ..., "table.tex": ...}`` for the rows of :func:`table_rows`."""
    heads = ["set", *(h for h, _, _ in COLUMNS)]
    n_sets = len(rows) - 2
    md = [f"| {' | '.join(heads)} |", "|" + "---|" + "---:|" * len(COLUMNS)]
    md += ["| " + " | ".join(c.replace("|", "\\|") for c in format_cells(r)) + " |" for r in rows]
    md += [
        "",
        f"{caption}. Means are taken over the {n_sets} set(s) above them; images are each scored at "
        "their original resolution; the structure metrics (wF, S, E, MAE) follow the PraNet evaluation toolbox.",
    ]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(heads)
    for r in rows:
        w.writerow([r["set"], *(int(r[h]) if h == "images" else r[h] for h, _, _ in COLUMNS)])
    tex = ["\\begin{table}[t]", "\\centering", "\\begin{tabular}{l" + "r" * len(COLUMNS) + "}", "\\toprule",
           " & ".join(["Set", "Images", "mDice", "mIoU", "$F^w_\\beta$", "$S_\\alpha$", "mean $E_\\phi$",
                       "max $E_\\phi$", "MAE"]) + " \\\\", "\\midrule"]  # fmt: skip
    for k, r in enumerate(rows):
        if k == n_sets:
            tex.append("\\midrule")
        tex.append(" & ".join([_latex_escape(c) for c in format_cells(r)]) + " \\\\")
    tex += ["\\bottomrule", "\\end{tabular}", f"\\caption{{{_latex_escape(caption)}}}", "\\end{table}"]
    return {"table.md": "\n".join(md) + "\n", "table.csv": buf.getvalue(), "table.tex": "\n".join(tex) + "\n"}


def check_external(run_or_ckpt: str | Path, sets: Sequence[TestSet], layout: str | None = None) -> None:
    """Refuse, before anything is scored, every set that shares images with the run's training or validation
    images (with the counts), so a table never mixes seen and unseen images.

    Raises:
        DataError: one line per set that is not external.
    """
    ckpt = resolve_model(run_or_ckpt)
    meta = Predictor.from_checkpoint(ckpt).meta
    run_dir = model_run_dir(ckpt, meta)
    labels = (meta.get("recipe") or {}).get("data", {}).get("foreground_labels")
    problems = []
    for s in sets:
        samples = discover_all([s.data], layout, foreground_labels=labels)
        try:
            sel = select_samples(samples, None, run_dir)
        except DataError as exc:
            problems.append(f"{s.name} ({s.data}): {str(exc).splitlines()[0]}")
            continue
        if sel.kind == "run-split":
            problems.append(
                f"{s.name} ({s.data}): all {len(samples)} images are the run's own data (train, val or test "
                "split); a table of external sets holds none of them: drop it, or evaluate without --data to "
                "score the run's own test split"
            )
    if problems:
        raise DataError("these test sets are not external to the run; nothing was scored", problems)


def evaluate_sets(
    run_or_ckpt: str | Path,
    data: Sequence[str],
    out_dir: str | Path | None = None,
    threshold: float | None = None,
    tta: bool = False,
    layout: str | None = None,
    backend: str | None = None,
    calibrate: str | Path | None = None,
) -> SetsResult:
    """Score each external test set of ``data`` whole and write the table (see the module docstring).

    Args:
        out_dir: default ``RUN/eval/<sets joined by +>`` (``<ckpt folder>/eval-<...>`` without a run folder).
        backend, calibrate: as :func:`polypseg.evaluation.evaluate.evaluate`.
    """
    sets = expand_sets(data)
    check_external(run_or_ckpt, sets, layout)
    ckpt = resolve_model(run_or_ckpt)
    run_dir = model_run_dir(ckpt, Predictor.from_checkpoint(ckpt).meta)
    name = data_name(list(data)) if len(data) == 1 else "+".join(s.name for s in sets)
    if out_dir is None:
        out_dir = RunPaths(run_dir).eval_dir(name) if run_dir is not None else ckpt.parent / f"eval-{name}"
    out = Path(out_dir)
    results = [(s, evaluate(ckpt, [s.data], None, out / s.name, threshold, tta, layout, backend, calibrate))
               for s in sets]  # fmt: skip
    rows = table_rows([(s.name, r.summary) for s, r in results])
    thr = results[0][1].summary["threshold"] if results else 0.5
    caption = f"{ckpt} on {len(sets)} external test set(s), threshold {thr:.3f}" + (", flip TTA" if tta else "")
    tables = []
    for file, text in render_tables(rows, caption).items():
        atomic_write_text(out / file, text)
        tables.append(out / file)
    return SetsResult(out, results, rows, tables)
