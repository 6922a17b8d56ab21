"""Choosing the decision threshold on the validation split and storing it in the checkpoint."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from polypseg.atomic import atomic_write_text
from polypseg.checkpoint import resolve_checkpoint, run_dir_of, update_checkpoint_meta
from polypseg.data.sources import discover_all
from polypseg.evaluation.evaluate import iter_predictions
from polypseg.evaluation.selection import default_data, default_layout, validation_samples
from polypseg.evaluation.threshold import SweepAccumulator, ThresholdSweep
from polypseg.inference.predictor import Predictor
from polypseg.paths import RunPaths
from polypseg.runlock import run_lock


def tune_threshold(
    run_or_ckpt: str | Path,
    data: Sequence[str] | None = None,
    beta: float = 1.0,
    layout: str | None = None,
    tta: bool = False,
) -> ThresholdSweep:
    """Choose the threshold that maximises mean per-image F-beta (Dice for beta 1) on the run's
    **validation** images (never any other image: see :func:`validation_samples`), and store it in the
    checkpoint: ``threshold`` / ``threshold_source`` for plain probabilities, or with ``tta``
    ``tta_threshold`` / ``tta_threshold_source`` (the other mode's threshold is kept: evaluate / predict
    use the one of their own mode, :func:`polypseg.checkpoint.stored_threshold`).

    Args:
        tta: tune the probabilities of flip test-time augmentation (for evaluate / predict ``--tta``).

    Also writes the whole sweep to ``RUN/threshold.json`` (``RUN/threshold-tta.json`` with ``tta``).

    Raises:
        DataError: no run folder, or the data holds none of the run's validation images.
    """
    ckpt = resolve_checkpoint(run_or_ckpt)
    run_dir = run_dir_of(ckpt)
    # the run's lock: a train still writing best.ckpt would otherwise get a threshold tuned for an older one
    with run_lock(run_dir) if run_dir is not None else contextlib.nullcontext():
        return _tune(ckpt, run_dir, data, beta, layout, tta)


def _tune(ckpt: Path, run_dir: Path | None, data: Sequence[str] | None, beta: float, layout: str | None,
          tta: bool) -> ThresholdSweep:  # fmt: skip
    layout = default_layout(data, layout, run_dir)
    data = default_data(data, run_dir)
    predictor = Predictor.from_checkpoint(ckpt, threshold=0.5, tta=tta)
    recipe = predictor.meta.get("recipe") or {}
    labels = recipe.get("data", {}).get("foreground_labels")
    samples = validation_samples(discover_all(list(data), layout, foreground_labels=labels), run_dir).samples
    acc = SweepAccumulator(beta=beta)
    for _s, _image, gt, prob in iter_predictions(predictor, samples):
        acc.add(prob, gt)
    sw = acc.result()
    source = f"tuned on val ({len(samples)} images, max mean F{beta:g}{', flip TTA' if tta else ''})"
    meta = predictor.meta
    if tta:
        update_checkpoint_meta(ckpt, tta_threshold=sw.best, tta_threshold_source=source)
    else:  # the older form's flag goes; when its threshold was tuned with TTA, it stays as the TTA one
        keep = {}
        if meta.get("threshold_tta") is True:
            keep = {"tta_threshold": meta["threshold"], "tta_threshold_source": meta.get("threshold_source")}
        update_checkpoint_meta(ckpt, threshold=sw.best, threshold_source=source, threshold_tta=None, **keep)
    if run_dir is not None:
        i = int(np.argmin(np.abs(sw.thresholds - sw.best)))
        j = int(np.argmin(np.abs(sw.thresholds - 0.5)))
        paths = RunPaths(run_dir)
        atomic_write_text(
            paths.threshold_tta if tta else paths.threshold,
            json.dumps(
                {
                    "threshold": sw.best,
                    "source": source,
                    "tta": tta,
                    "val_mean_dice_at_best": float(sw.dice[i]),
                    "val_mean_dice_at_0.5": float(sw.dice[j]),
                    "thresholds": sw.thresholds.tolist(),
                    "dice": sw.dice.tolist(),
                    "fbeta": sw.fbeta.tolist(),
                },
                indent=1,
            ),
        )
    return sw
