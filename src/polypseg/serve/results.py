"""What ``POST /predict`` returns: PNGs (mask, probability, overlay) at the image's size, or a JSON summary
with the connected components and the mask as COCO-style uncompressed run-length encoding."""

from __future__ import annotations

import cv2
import numpy as np

from polypseg.inference.overlay import overlay

OUTPUTS = ("mask", "probability", "overlay", "json")
#: At most this many components are listed in the JSON (the largest first); ``n_components`` counts all.
MAX_COMPONENTS = 256
RLE_ORDER = "column-major"


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 array: ``(H, W)`` gray or ``(H, W, 3)`` RGB."""
    bgr = array[..., ::-1] if array.ndim == 3 else array
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(bgr), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 array
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def probability_8bit(prob: np.ndarray) -> np.ndarray:
    """float32 ``(H, W)`` probabilities in [0, 1] -> uint8 ``(H, W)``, ``round(255 p)``."""
    return np.rint(np.clip(prob, 0.0, 1.0) * 255).astype(np.uint8)


def render_png(kind: str, image: np.ndarray, prob: np.ndarray, mask: np.ndarray) -> bytes:
    """The PNG of ``kind``: ``mask`` (0 / 255 gray), ``probability`` (8-bit gray, :func:`probability_8bit`)
    or ``overlay`` (the prediction tinted green and outlined on the RGB image, as ``polypseg predict``)."""
    if kind == "mask":
        return encode_png(mask * 255)
    if kind == "probability":
        return encode_png(probability_8bit(prob))
    return encode_png(overlay(image, mask))


def mask_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE of a {0, 1} mask ``(H, W)``: ``{"size": [H, W], "counts": [...]}``.

    The pixels are read in column-major order (down the first column, then the next); ``counts``
    alternates runs of 0 and 1 and starts with a run of 0 (of length 0 when the first pixel is 1).
    """
    flat = np.asarray(mask, np.uint8).ravel(order="F")
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat.size and flat[0] == 1:
        runs = [0, *runs]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(r) for r in runs]}


def rle_decode(rle: dict) -> np.ndarray:
    """The uint8 {0, 1} mask ``(H, W)`` of :func:`mask_rle`'s encoding (for clients and tests)."""
    h, w = rle["size"]
    values = np.arange(len(rle["counts"])) % 2
    flat = np.repeat(values.astype(np.uint8), rle["counts"])
    return flat.reshape((w, h)).T.copy()


def _outline(region: np.ndarray, x0: int, y0: int) -> list[list[int]]:
    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return []
    biggest = max(contours, key=len)[:, 0, :]
    return [[int(x) + x0, int(y) + y0] for x, y in biggest]


def components(mask: np.ndarray, prob: np.ndarray, limit: int = MAX_COMPONENTS) -> tuple[int, list[dict]]:
    """The 8-connected polyp regions of ``mask``, largest first: ``(count, [component, ...])``.

    Each component: ``bbox`` ``[x, y, w, h]`` and ``area`` in pixels, ``mean_probability`` over its
    pixels, and ``polygon``, its outer outline as ``[[x, y], ...]`` pixel coordinates (OpenCV's
    simplified chain: straight runs keep only their end points). Only the ``limit`` largest are listed.
    """
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    sums = np.bincount(labels.ravel(), weights=prob.ravel().astype(np.float64), minlength=n)
    order = sorted(range(1, n), key=lambda i: -int(stats[i, cv2.CC_STAT_AREA]))[:limit]
    out = []
    for i in order:
        x, y, w, h, area = (int(v) for v in stats[i])
        region = labels[y : y + h, x : x + w] == i
        out.append(
            {
                "bbox": [x, y, w, h],
                "area": area,
                "mean_probability": round(float(sums[i] / area), 6),
                "polygon": _outline(region, x, y),
            }
        )
    return n - 1, out


def summary(prob: np.ndarray, mask: np.ndarray, threshold: float) -> dict:
    """The JSON answer for one image: size, threshold, polyp fraction, components and the mask's RLE."""
    count, comps = components(mask, prob)
    return {
        "width": int(mask.shape[1]),
        "height": int(mask.shape[0]),
        "threshold": float(threshold),
        "polyp_fraction": float(mask.mean()) if mask.size else 0.0,
        "n_components": count,
        "components": comps,
        "mask_rle": mask_rle(mask),
        "mask_rle_order": RLE_ORDER,
    }
