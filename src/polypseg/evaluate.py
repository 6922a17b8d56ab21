"""Evaluation of a trained model at the ground truth's original resolution.

``evaluate(run_or_ckpt, data, split)`` predicts every image of the split, resizes the probabilities
back to the image's own size, thresholds them, and scores them per image with
:mod:`polypseg.metrics`. It writes ``per_image.csv`` and ``summary.json`` into the output folder
(``RUN/eval/<split>/`` by default) and returns the same numbers.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from polypseg.checkpoint import resolve_checkpoint, run_dir_of
from polypseg.data.errors import DataError
from polypseg.data.sources import Sample, discover_all, read_sample
from polypseg.data.split import load_split, make_split
from polypseg.inference import Predictor
from polypseg.metrics import METRIC_NAMES, image_metrics, summarise

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


def select_samples(
    samples: Sequence[Sample], split: str, run_dir: Path | None, recipe: dict[str, Any] | None
) -> list[Sample]:
    """The samples of ``split`` ("train", "val", "test" or "all").

    A run's ``split.json`` decides when the data is the run's; otherwise predefined splits, else a
    seeded split with the recipe's fractions and seed (the same one training made).
    """
    if split == "all":
        return list(samples)
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val, test or all, got {split!r}")
    ids: list[str] | None = None
    if run_dir is not None and (run_dir / "split.json").exists():
        try:
            ids = load_split(run_dir / "split.json", samples)[split]
        except DataError:
            ids = None  # other data than the run's: fall back to the data's own split
    if ids is None:
        data = (recipe or {}).get("data", {})
        ids = make_split(
            samples,
            data.get("val_fraction", 0.15),
            data.get("test_fraction", 0.15),
            (recipe or {}).get("seed", 0),
        )[split]
    chosen = set(ids)
    out = [s for s in samples if s.id in chosen]
    if not out:
        raise DataError(f"the {split!r} split of this data is empty; choose another --split")
    return out


def evaluate(
    run_or_ckpt: str | Path,
    data: Sequence[str] | None = None,
    split: str = "test",
    out_dir: str | Path | None = None,
    threshold: float | None = None,
    tta: bool = False,
    layout: str | None = None,
) -> EvalResult:
    """Evaluate a checkpoint (or a run folder's ``best.ckpt``) on one split of the data.

    Args:
        run_or_ckpt: run folder or checkpoint file.
        data: ``--data`` arguments; default: the run's own data (from ``config.yaml``).
        split: "train", "val", "test" or "all".
        out_dir: where to write; default ``RUN/eval/<split>`` (or ``<ckpt folder>/eval-<split>``).
        threshold: override the checkpoint's threshold.
        tta: flip test-time augmentation.

    Returns:
        :class:`EvalResult`; ``summary["metrics"]`` holds ``mean`` (over images) and ``pooled``.
    """
    ckpt = resolve_checkpoint(run_or_ckpt)
    run_dir = run_dir_of(ckpt)
    if data is None:
        if run_dir is None:
            raise ValueError("give --data: the checkpoint is not inside a run folder that names its data")
        data = yaml.safe_load((run_dir / "config.yaml").read_text())["data"]
    predictor = Predictor.from_checkpoint(ckpt, threshold=threshold, tta=tta)
    meta = predictor.meta
    samples = select_samples(discover_all(list(data), layout), split, run_dir, meta.get("recipe"))
    if out_dir is None:
        out_dir = (run_dir / "eval" / split) if run_dir is not None else ckpt.parent / f"eval-{split}"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    rows: list[dict[str, Any]] = []
    pairs = (read_sample(s) for s in samples)
    images: list[np.ndarray] = []
    masks: list[np.ndarray] = []

    def frames() -> Any:
        for image, mask in pairs:
            images.append(image)
            masks.append(mask)
            yield image

    for i, prob in enumerate(predictor.predict_proba(frames())):
        gt = masks[i]
        pred = prob > predictor.threshold
        s = samples[i]
        rows.append(
            {
                "id": s.id,
                "source": s.source,
                "height": gt.shape[0],
                "width": gt.shape[1],
                "gt_fraction": float(gt.mean()),
                "pred_fraction": float(pred.mean()),
                **image_metrics(pred, gt),
            }
        )
        images[i] = masks[i] = None  # type: ignore[call-overload]  # free memory as we go

    summary = {
        "checkpoint": str(ckpt),
        "split": split,
        "data": [str(d) for d in data],
        "threshold": predictor.threshold,
        "threshold_source": "argument" if threshold is not None else meta.get("threshold_source", "recipe"),
        "tta": tta,
        "metrics": summarise(rows),
        "averaging": "mean = per image at original resolution, then averaged over images; "
        "pooled = counts summed over all pixels of all images",
        "empty_rule": EMPTY_RULE,
        "n_empty_gt": int(sum(1 for r in rows if r["tp"] + r["fn"] == 0)),
        "recipe": meta.get("recipe", {}).get("name"),
    }
    with (out / "per_image.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return EvalResult(out_dir=out, rows=rows, summary=summary)


def metric_table_rows(summary: dict[str, Any]) -> list[tuple[str, float, float]]:
    """``(metric, mean over images, pooled)`` for printing."""
    m = summary["metrics"]
    return [(name, m["mean"][name], m["pooled"][name]) for name in METRIC_NAMES]
