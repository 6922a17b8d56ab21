"""Best, median and worst cases: image, ground truth and colour-coded prediction side by side."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from polypseg.atomic import atomic_write_image
from polypseg.data.sources import Sample, read_sample
from polypseg.inference.overlay import overlay
from polypseg.inference.predictor import Predictor


def pick_cases(rows: Sequence[dict[str, Any]], per_kind: int = 2) -> list[tuple[str, dict[str, Any]]]:
    """``[(kind, row)]`` for the ``per_kind`` best, median and worst images by Dice (no repeats)."""
    order = sorted(rows, key=lambda r: (float(r["dice"]), r["id"]))
    n = len(order)
    picks: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    mid = n // 2
    for kind, idx in (
        ("best", range(n - 1, n - 1 - per_kind, -1)),
        ("median", range(mid - per_kind // 2, mid - per_kind // 2 + per_kind)),
        ("worst", range(per_kind)),
    ):
        for i in idx:
            if 0 <= i < n and order[i]["id"] not in seen:
                seen.add(order[i]["id"])
                picks.append((kind, order[i]))
    return picks


def case_panel(image: np.ndarray, gt: np.ndarray, pred: np.ndarray, height: int = 220) -> np.ndarray:
    """uint8 RGB panel: image | ground truth (white) | prediction (TP green, FP red, FN blue)."""
    gt_rgb = np.repeat((gt > 0).astype(np.uint8)[..., None] * 255, 3, axis=2)
    tiles = [image, gt_rgb, overlay(image, pred, gt)]
    h, w = image.shape[:2]
    size = (max(1, round(w * height / h)), height)
    resized = [cv2.resize(t, size, interpolation=cv2.INTER_AREA if h > height else cv2.INTER_NEAREST) for t in tiles]
    gap = np.full((height, 4, 3), 255, np.uint8)
    return np.concatenate([resized[0], gap, resized[1], gap, resized[2]], axis=1)


def render_cases(
    predictor: Predictor, samples: Sequence[Sample], rows: Sequence[dict[str, Any]], out_dir: Path
) -> list[tuple[str, dict[str, Any], Path]]:
    """Write a PNG panel for each picked case; returns ``[(kind, row, path)]``."""
    by_id = {s.id: s for s in samples}
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for k, (kind, row) in enumerate(pick_cases(rows)):
        sample = by_id.get(row["id"])
        if sample is None:
            continue
        image, gt = read_sample(sample)
        pred = next(predictor.predict_mask([image]))
        path = out_dir / f"case{k}_{kind}.png"
        atomic_write_image(path, case_panel(image, gt, pred))
        written.append((kind, row, path))
    return written
