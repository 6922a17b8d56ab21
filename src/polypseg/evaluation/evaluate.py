"""Evaluation of a trained model at the ground truth's original resolution.

``evaluate(run_or_ckpt, data, split)`` predicts every image of the split, resizes the probabilities
back to the image's own size, thresholds them, and scores them per image with
:mod:`polypseg.evaluation.metrics`. It writes ``per_image.csv`` and ``summary.json`` into the output folder
(``RUN/eval/<split>/`` by default) and returns the same numbers.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polypseg.atomic import atomic_open, atomic_write_text
from polypseg.checkpoint import run_dir_of
from polypseg.data.sample import Sample
from polypseg.data.sources import discover_all, read_sample
from polypseg.evaluation.metrics import METRIC_NAMES, image_metrics, summarise
from polypseg.evaluation.selection import default_data, default_layout, select_samples
from polypseg.evaluation.stats import bootstrap_ci
from polypseg.evaluation.structure import StructureMetrics
from polypseg.evaluation.threshold import SweepAccumulator
from polypseg.inference.predictor import Predictor
from polypseg.paths import RunPaths
from polypseg.zoo import resolve_model

EMPTY_RULE = (
    "A ratio whose denominator is zero scores 1.0 if the prediction has no error on that image "
    "(fp + fn == 0) and 0.0 otherwise: an empty ground truth predicted empty scores 1."
)


@dataclass
class EvalResult:
    """Per-image rows and the summary of an evaluation, and the folder they were written to."""

    out_dir: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]


def iter_predictions(
    predictor: Predictor, samples: Sequence[Sample]
) -> Iterator[tuple[Sample, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(sample, image uint8 (H, W, 3), gt uint8 (H, W), prob float32 (H, W))`` at original size."""
    buffer: list[tuple[np.ndarray, np.ndarray]] = []

    def frames() -> Iterator[np.ndarray]:
        for s in samples:
            image, gt = read_sample(s)
            buffer.append((image, gt))
            yield image

    for i, prob in enumerate(predictor.predict_proba(frames())):
        image, gt = buffer[i]
        buffer[i] = (None, None)  # type: ignore[assignment]  # free memory as we go
        yield samples[i], image, gt, prob


#: Polyp size classes by ground-truth area fraction (of the whole image).
SIZE_BINS = (("small", 0.0, 0.03), ("medium", 0.03, 0.15), ("large", 0.15, 1.01))


def size_class(gt_fraction: float) -> str:
    """ "empty", or the :data:`SIZE_BINS` class of a ground-truth area fraction."""
    if gt_fraction == 0:
        return "empty"
    return next(name for name, lo, hi in SIZE_BINS if lo <= gt_fraction < hi)


def _breakdown(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, float]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(str(r[key]), []).append(r)
    return {
        k: {
            "n": len(v),
            "dice": float(np.mean([r["dice"] for r in v])),
            "iou": float(np.mean([r["iou"] for r in v])),
        }
        for k, v in sorted(groups.items())
    }


def evaluate(
    run_or_ckpt: str | Path,
    data: Sequence[str] | None = None,
    split: str | None = None,
    out_dir: str | Path | None = None,
    threshold: float | None = None,
    tta: bool = False,
    layout: str | None = None,
    backend: str | None = None,
    calibrate: str | Path | None = None,
) -> EvalResult:
    """Evaluate a checkpoint (or a run folder's ``best.ckpt``, or an exported ``.onnx``) on data.

    Which images are scored is decided by content (:mod:`polypseg.evaluation.selection`): the run's own
    data by its ``split.json`` (``test`` by default), data the run never saw as a whole external set,
    and data partly the run's training images is refused.

    Args:
        run_or_ckpt: run folder, checkpoint file or ``.onnx`` file.
        data: ``--data`` arguments; default: the run's own data (from ``config.yaml``).
        split: "train", "val", "test", "all", or None (the default: see above).
        out_dir: where to write; default ``RUN/eval/<split>`` for the run's data and
            ``RUN/eval/<data name>`` for external data (``<ckpt folder>/eval-<name>`` without a run folder).
        threshold: override the checkpoint's threshold (tuned on validation, or the recipe's 0.5).
        tta: flip test-time augmentation.
        backend, calibrate: who runs the network (:mod:`polypseg.inference.backends`); the summary's
            ``backend`` says which and why.

    Returns:
        :class:`EvalResult`. ``summary`` holds ``metrics`` (``mean`` over images and ``pooled``) at the
        applied threshold, ``metrics_at_0.5`` beside it, ``structure`` (pysodmetrics), a threshold
        ``sweep`` (for figures only: the threshold is never chosen on this split), and breakdowns
        ``by_size`` and ``by_source``.
    """
    ckpt = resolve_model(run_or_ckpt)
    predictor = Predictor.from_checkpoint(ckpt, threshold=threshold, tta=tta)  # the file's own runtime
    meta = predictor.meta
    run_dir = model_run_dir(ckpt, meta)
    layout = default_layout(data, layout, run_dir)
    data = default_data(data, run_dir)
    labels = (meta.get("recipe") or {}).get("data", {}).get("foreground_labels")
    selection = select_samples(discover_all(list(data), layout, foreground_labels=labels), split, run_dir)
    samples = selection.samples
    used_split = (split or "test") if selection.kind == "run-split" else (split or "all")
    name = used_split if selection.kind == "run-split" else data_name(data) + (f"-{split}" if split else "")
    if out_dir is None:
        out_dir = RunPaths(run_dir).eval_dir(name) if run_dir is not None else ckpt.parent / f"eval-{name}"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if backend is not None:  # built once the data is known to be good: an export or a timing trial is not free
        predictor = Predictor.from_checkpoint(ckpt, threshold=threshold, tta=tta, backend=backend, calibrate=calibrate)

    thr = predictor.threshold
    rows: list[dict[str, Any]] = []
    rows_half: list[dict[str, Any]] = []
    structure = StructureMetrics()
    sweep = SweepAccumulator()
    for s, _image, gt, prob in iter_predictions(predictor, samples):
        pred = prob > thr
        frac = float(gt.mean())
        rows.append(
            {
                "id": s.id,
                "source": s.source,
                "height": gt.shape[0],
                "width": gt.shape[1],
                "gt_fraction": frac,
                "size_class": size_class(frac),
                "pred_fraction": float(pred.mean()),
                **image_metrics(pred, gt),
                **structure.step(prob, gt),
            }
        )
        rows_half.append(image_metrics(prob > 0.5, gt))
        sweep.add(prob, gt)
    sw = sweep.result()
    summary = {
        "checkpoint": str(ckpt),
        "split": used_split,
        "name": name,
        "selection": selection.to_dict(),
        "data": [str(d) for d in data],
        "layout": layout,
        "foreground_labels": labels,
        "threshold": thr,
        "threshold_source": predictor.threshold_source,
        "tta": tta,
        "backend": {"name": predictor.backend.name, "reason": predictor.backend.reason},
        "metrics": summarise(rows),
        "metrics_at_0.5": summarise(rows_half),
        "structure": structure.results(),
        "sweep": {
            "thresholds": sw.thresholds.tolist(),
            "dice": sw.dice.tolist(),
            "precision": sw.precision.tolist(),
            "recall": sw.recall.tolist(),
        },
        "cross_tuned_threshold": _cross_tuned(sweep),
        "ci95": {
            "method": "percentile bootstrap of the mean over images, 2000 resamples, seed 0",
            **{k: list(bootstrap_ci([r[k] for r in rows])) for k in ("dice", "iou")},
        },
        "by_size": _breakdown(rows, "size_class"),
        "by_source": _breakdown(rows, "source"),
        "size_bins": {name: [lo, min(hi, 1.0)] for name, lo, hi in SIZE_BINS},
        "averaging": "mean = per image at original resolution, then averaged over images; "
        "pooled = counts summed over all pixels of all images",
        "empty_rule": EMPTY_RULE,
        "n_empty_gt": int(sum(1 for r in rows if r["tp"] + r["fn"] == 0)),
        "recipe": meta.get("recipe", {}).get("name"),
    }
    with atomic_open(out / "per_image.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))  # last: it marks a finished evaluation
    return EvalResult(out_dir=out, rows=rows, summary=summary)


def model_run_dir(ckpt: Path, meta: dict[str, Any]) -> Path | None:
    """The run folder of a checkpoint, or of the checkpoint an ``.onnx`` file was exported from."""
    found = run_dir_of(ckpt)
    source = meta.get("source_checkpoint")
    if found is None and source and Path(source).exists():
        found = run_dir_of(Path(source))
    return found


def data_name(data: Sequence[str]) -> str:
    """A folder name for an evaluation of external ``data``: its sources' names joined by ``+``."""
    names = [Path(str(d).split(":", 1)[0]).stem or str(d) for d in data]
    return "+".join(dict.fromkeys(names))


def _cross_tuned(sweep: SweepAccumulator, folds: int = 2) -> dict[str, Any] | None:
    """Two-fold estimate of what threshold tuning is worth on this split (None below two images)."""
    if sweep.n < folds:
        return None
    rows, chosen = sweep.cross_tuned(folds)
    return {
        "folds": folds,
        "thresholds": chosen,
        "metrics": summarise(rows),
        "note": "images alternate between folds; each fold is scored at the threshold tuned on the other",
    }


def metric_table_rows(summary: dict[str, Any]) -> list[tuple[str, float, float]]:
    """``(metric, mean over images, pooled)`` for printing."""
    m = summary["metrics"]
    return [(name, m["mean"][name], m["pooled"][name]) for name in METRIC_NAMES]
