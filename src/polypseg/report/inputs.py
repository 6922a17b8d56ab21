"""Which evaluation a report shows: an existing ``summary.json`` only when it is of the data asked for, else a new one.

A report reads ``summary.json`` and ``per_image.csv`` and re-reads the images of its best, median and worst
cases, so it needs the same data, layout and foreground labels the evaluation used. :func:`report_inputs`
reuses an evaluation only when it matches the ``--data`` (and ``--layout``) asked for and when its images are
all found in that data read that way; otherwise it evaluates again, and says why through ``log``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polypseg.data.sample import Sample
from polypseg.data.sources import discover_all, parse_synthetic_spec
from polypseg.errors import InputError
from polypseg.inference.predictor import Predictor


@dataclass
class ReportInputs:
    """The evaluation a report shows and what it needs to draw its cases."""

    summary: dict[str, Any]
    samples: list[Sample]  # the evaluated data, read with the evaluation's layout and labels
    predictor: Predictor  # at the evaluation's threshold and TTA


def _data_key(spec: str) -> tuple[str, ...]:
    """A ``--data`` argument in a comparable form: a synthetic spec's settings, or an existing path resolved."""
    if spec == "synthetic" or spec.startswith("synthetic:"):
        return ("synthetic", *(f"{k}={v}" for k, v in sorted(parse_synthetic_spec(spec).items())))
    p = Path(spec)
    return ("path", str(p.resolve()) if p.exists() else spec)


def same_data(recorded: Sequence[str], given: Sequence[str]) -> bool:
    """Whether two lists of ``--data`` arguments name the same sources (in any order)."""
    return sorted(map(_data_key, recorded)) == sorted(map(_data_key, given))


def _labels(values: Sequence[int] | None) -> list[int] | None:
    return sorted({int(v) for v in values}) if values else None


def report_inputs(
    ckpt: Path,
    split: str,
    eval_dir: Path,
    data: Sequence[str] | None = None,
    layout: str | None = None,
    foreground_labels: Sequence[int] | None = None,
    log: Callable[[str], None] | None = None,
) -> ReportInputs:
    """The evaluation in ``eval_dir`` if it is of ``data`` (default: whatever it recorded), else a new one.

    Evaluates (into ``eval_dir``) when there is no ``summary.json``, when ``data`` is given and differs from
    the data the summary records, when ``layout`` differs from a layout it records, or when its images are
    not all found in the data read with ``layout`` and the labels. A new evaluation keeps the old one's TTA and
    a threshold that was given as an argument.

    Raises:
        ValueError: ``foreground_labels`` differ from the labels the evaluation scores with (the checkpoint's
            recipe's), or the evaluated images are not in the data even after evaluating again.
        DataError, FileNotFoundError: from reading the data or the checkpoint.
    """
    from polypseg.evaluation.evaluate import evaluate

    say = log or (lambda _msg: None)
    predictor = Predictor.from_checkpoint(ckpt)
    recipe_labels = _labels((predictor.meta.get("recipe") or {}).get("data", {}).get("foreground_labels"))
    path = eval_dir / "summary.json"
    summary = json.loads(path.read_text()) if path.exists() else None
    scored_labels = _labels(summary.get("foreground_labels", recipe_labels)) if summary else recipe_labels
    labels = _labels(foreground_labels)
    if labels is not None and labels != scored_labels:
        raise InputError(
            f"--foreground-labels {','.join(map(str, labels))} differ from the labels the evaluation scores "
            f"masks with ({', '.join(map(str, scored_labels)) if scored_labels else 'none: binary masks'}, from "
            "the checkpoint's recipe); the report would show other masks than were scored: leave the option out "
            "or give the recipe's labels"
        )
    labels = scored_labels

    def run_evaluation(reason: str, old: dict[str, Any] | None) -> dict[str, Any]:
        say(f"evaluating the {split} split into {eval_dir}: {reason}")
        thr = old["threshold"] if old and old.get("threshold_source") == "argument" else None
        tta = bool(old.get("tta", False)) if old else False
        todo = list(data) if data else (list(old["data"]) if old else None)
        return evaluate(ckpt, todo, split, eval_dir, thr, tta, layout).summary

    reason = None
    if summary is not None and layout is None:
        layout = summary.get("layout")  # the layout the evaluation was made with
    if summary is None:
        reason = f"{path} does not exist yet"
    elif not (eval_dir / "per_image.csv").exists():
        reason = f"{eval_dir / 'per_image.csv'} does not exist"
    elif data and not same_data(summary["data"], data):
        reason = f"--data {', '.join(data)} is not the data of {path} ({', '.join(summary['data'])}); it is replaced"
    elif layout and summary.get("layout", layout) != layout:
        reason = f"--layout {layout} is not the layout of {path} ({summary['layout']}); it is replaced"
    else:
        samples = discover_all(summary["data"], layout, foreground_labels=labels)
        missing = _missing_ids(eval_dir, samples)
        if missing:
            reason = f"{len(missing)} images of {path} (e.g. {missing[0]}) are not in its data as read now"
    if reason is not None:
        summary = run_evaluation(reason, summary)
        samples = discover_all(summary["data"], layout, foreground_labels=labels)
        missing = _missing_ids(eval_dir, samples)
        if missing:
            how = f" with --layout {layout}" if layout else ""
            raise InputError(
                f"{len(missing)} evaluated images (e.g. {missing[0]}) are not in {', '.join(summary['data'])} as "
                f"read{how}: check --data and --layout"
            )
    predictor.threshold = float(summary["threshold"])
    predictor.tta = bool(summary.get("tta", False))
    return ReportInputs(summary=summary, samples=samples, predictor=predictor)


def _missing_ids(eval_dir: Path, samples: Sequence[Sample]) -> list[str]:
    """Ids of ``eval_dir/per_image.csv`` that no sample has."""
    known = {s.id for s in samples}
    with (eval_dir / "per_image.csv").open(newline="") as fh:
        return [row["id"] for row in csv.DictReader(fh) if row["id"] not in known]
