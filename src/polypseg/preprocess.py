"""The preprocessing rule shared by training, evaluation and inference: resize, then standardise.

- Images are resized to the model's square training size with area averaging when shrinking and
  bilinear interpolation when enlarging; masks with nearest neighbour (they stay in {0, 1}).
- Probabilities go back to the frame's own size bilinearly, before thresholding.
- Pixels are scaled to [0, 1] and standardised per channel with the checkpoint's mean / std
  (ImageNet's by default).

Nothing here imports Lightning or albumentations: a deployed model needs only this.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 RGB ``(H, W, 3)`` -> ``(size, size, 3)``: area averaging when shrinking, bilinear when enlarging."""
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if (h > size or w > size) else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``(H, W)`` in {0, 1} -> ``(size, size)`` by nearest neighbour (never interpolated)."""
    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)


def resize_pair(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Both of :func:`resize_image` and :func:`resize_mask`, for a training pair."""
    return resize_image(image, size), resize_mask(mask, size)


def resize_probability(prob: np.ndarray, height: int, width: int) -> np.ndarray:
    """float32 ``(S, S)`` probabilities -> ``(height, width)`` bilinearly (unchanged when already that size)."""
    if prob.shape == (height, width):
        return prob
    return cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR)


def normalise(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` or ``(H, W, 3)`` -> float32 ``(N, 3, H, W)`` or ``(3, H, W)``, standardised:
    ``(pixel / 255 - mean) / std`` per channel."""
    t = torch.from_numpy(np.array(images, dtype=np.float32, order="C")).div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32)
    s = torch.tensor(std, dtype=torch.float32)
    t = (t - m) / s
    return t.permute(0, 3, 1, 2) if t.ndim == 4 else t.permute(2, 0, 1)
