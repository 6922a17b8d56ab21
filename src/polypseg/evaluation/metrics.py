"""Confusion-based segmentation metrics: statistics first, then a named reduction.

Per image we count true/false positives/negatives (tp, fp, fn, tn) of a binary prediction against a
binary ground truth, both ``(H, W)`` at the ground truth's original resolution. From the counts:

- dice (= F1) = 2 tp / (2 tp + fp + fn)
- iou (Jaccard) = tp / (tp + fp + fn)
- precision = tp / (tp + fp);  recall (sensitivity) = tp / (tp + fn)
- specificity = tn / (tn + fp);  accuracy = (tp + tn) / (tp + fp + fn + tn)

**Zero-denominator rule.** A ratio whose denominator is zero (e.g. Dice when both ground truth and
prediction are empty, precision when nothing is predicted, recall when the ground truth is empty) is
1.0 if the prediction made no error on that image (fp + fn == 0) and 0.0 otherwise. So an empty ground
truth predicted empty scores 1 everywhere; any false positive on an empty ground truth scores Dice,
IoU, recall 0 (and precision 0).

Two reductions, always labelled: ``mean`` (per image, then averaged over images: mDice, mIoU, as the
polyp literature reports) and ``pooled`` (counts summed over all pixels of all images, then the ratio).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from numpy.typing import ArrayLike

METRIC_NAMES: tuple[str, ...] = ("dice", "iou", "precision", "recall", "specificity", "accuracy")


def confusion(pred: np.ndarray, gt: np.ndarray) -> dict[str, int]:
    """tp, fp, fn, tn of boolean-like arrays of the same shape (non-zero = foreground)."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    p = np.asarray(pred).astype(bool)
    g = np.asarray(gt).astype(bool)
    tp = int(np.count_nonzero(p & g))
    fp = int(np.count_nonzero(p & ~g))
    fn = int(np.count_nonzero(~p & g))
    tn = int(p.size - tp - fp - fn)
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


def ratio(num: ArrayLike, den: ArrayLike, perfect: ArrayLike) -> np.ndarray:
    """``num / den`` element-wise, with the module's zero-denominator rule: where ``den == 0`` the result
    is 1.0 if ``perfect`` (no false positive and no false negative on that image) and 0.0 otherwise.

    The one home of the rule: image metrics, the threshold sweep and training's validation Dice use it.
    Arrays broadcast; returns float64 (0-d for scalar inputs).
    """
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    safe = np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)
    return np.where(den == 0, np.where(np.asarray(perfect, dtype=bool), 1.0, 0.0), safe)


def dice_iou(tp: ArrayLike, fp: ArrayLike, fn: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Dice and IoU of per-image counts (arrays of any matching shape), with the zero-denominator rule."""
    tp, fp, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn))
    perfect = (fp + fn) == 0
    return ratio(2 * tp, 2 * tp + fp + fn, perfect), ratio(tp, tp + fp + fn, perfect)


def metrics_from_counts(c: Mapping[str, int]) -> dict[str, float]:
    """The six ratio metrics of one set of counts, with the zero-denominator rule of this module."""
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    perfect = fp + fn == 0
    pairs = {
        "dice": (2 * tp, 2 * tp + fp + fn),
        "iou": (tp, tp + fp + fn),
        "precision": (tp, tp + fp),
        "recall": (tp, tp + fn),
        "specificity": (tn, tn + fp),
        "accuracy": (tp + tn, tp + fp + fn + tn),
    }
    return {name: float(ratio(num, den, perfect)) for name, (num, den) in pairs.items()}


def image_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Counts and metrics of one image: ``{"tp", "fp", "fn", "tn", "dice", ...}``."""
    c = confusion(pred, gt)
    return {**c, **metrics_from_counts(c)}


def summarise(rows: Iterable[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Reduce per-image rows (as from :func:`image_metrics`) two ways.

    Returns ``{"mean": {metric: mean over images}, "pooled": {metric: from summed counts},
    "std": {metric: standard deviation over images}, "n_images": n}``.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("no images to summarise")
    mean = {m: float(np.mean([r[m] for r in rows])) for m in METRIC_NAMES}
    std = {m: float(np.std([r[m] for r in rows])) for m in METRIC_NAMES}
    totals = {k: int(sum(int(r[k]) for r in rows)) for k in ("tp", "fp", "fn", "tn")}
    return {"mean": mean, "pooled": metrics_from_counts(totals), "std": std, "n_images": len(rows)}
