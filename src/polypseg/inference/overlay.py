"""Drawing a predicted mask (and optionally its ground truth) over its frame."""

from __future__ import annotations

import cv2
import numpy as np


def overlay(image: np.ndarray, pred: np.ndarray, gt: np.ndarray | None = None, alpha: float = 0.45) -> np.ndarray:
    """RGB overlay of a prediction on its image, uint8 ``(H, W, 3)``.

    Without ``gt`` the predicted region is tinted green with its outline drawn. With ``gt``: true
    positives green, false positives red, false negatives blue.
    """
    out = image.astype(np.float32).copy()
    p = pred.astype(bool)
    if gt is None:
        layers = [(p, (0, 255, 0))]
    else:
        g = gt.astype(bool)
        layers = [(p & g, (0, 255, 0)), (p & ~g, (255, 0, 0)), (~p & g, (0, 0, 255))]
    for region, colour in layers:
        out[region] = (1 - alpha) * out[region] + alpha * np.array(colour, np.float32)
    result = np.clip(out, 0, 255).astype(np.uint8)
    contours, _ = cv2.findContours(p.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(result, contours, -1, (255, 255, 0), 1)
    return result
