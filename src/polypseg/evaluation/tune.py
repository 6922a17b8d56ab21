"""Choosing the decision threshold on the validation split and storing it in the checkpoint."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from polypseg.checkpoint import resolve_checkpoint, run_dir_of, update_checkpoint_meta
from polypseg.data.sources import discover_all
from polypseg.evaluation.evaluate import iter_predictions
from polypseg.evaluation.selection import default_data, select_samples
from polypseg.evaluation.threshold import SweepAccumulator, ThresholdSweep
from polypseg.inference.predictor import Predictor


def tune_threshold(
    run_or_ckpt: str | Path,
    data: Sequence[str] | None = None,
    beta: float = 1.0,
    layout: str | None = None,
) -> ThresholdSweep:
    """Choose the threshold that maximises mean per-image F-beta (Dice for beta 1) on the
    **validation** split, and store it in the checkpoint (``threshold``, ``threshold_source``).

    Also writes ``RUN/threshold.json`` with the whole sweep when the checkpoint is in a run folder.
    """
    ckpt = resolve_checkpoint(run_or_ckpt)
    run_dir = run_dir_of(ckpt)
    data = default_data(data, run_dir)
    predictor = Predictor.from_checkpoint(ckpt, threshold=0.5)
    recipe = predictor.meta.get("recipe") or {}
    labels = recipe.get("data", {}).get("foreground_labels")
    samples = select_samples(discover_all(list(data), layout, foreground_labels=labels), "val", run_dir, recipe)
    acc = SweepAccumulator(beta=beta)
    for _s, _image, gt, prob in iter_predictions(predictor, samples):
        acc.add(prob, gt)
    sw = acc.result()
    source = f"tuned on val ({len(samples)} images, max mean F{beta:g})"
    update_checkpoint_meta(ckpt, threshold=sw.best, threshold_source=source)
    if run_dir is not None:
        i = int(np.argmin(np.abs(sw.thresholds - sw.best)))
        j = int(np.argmin(np.abs(sw.thresholds - 0.5)))
        (run_dir / "threshold.json").write_text(
            json.dumps(
                {
                    "threshold": sw.best,
                    "source": source,
                    "val_mean_dice_at_best": float(sw.dice[i]),
                    "val_mean_dice_at_0.5": float(sw.dice[j]),
                    "thresholds": sw.thresholds.tolist(),
                    "dice": sw.dice.tolist(),
                    "fbeta": sw.fbeta.tolist(),
                },
                indent=1,
            )
        )
    return sw
