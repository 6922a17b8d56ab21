"""Reading images and masks from disk into the arrays the rest of polypseg uses.

Images become ``uint8`` RGB arrays ``(H, W, 3)``; masks become ``uint8`` arrays ``(H, W)`` in {0, 1}.

**Mask rule.** A mask is first reduced to one channel: palette images by their palette index, RGB(A)
by the maximum over the colour channels (so a red, green or white polyp counts as foreground),
16-bit by scaling to 0..255. Then:

- values within {0, 1} or within {0, 255} are taken as they are (255 and 1 are foreground);
- a mask whose distinct values are more than two but all below 10 is a multi-label map: an error,
  unless ``foreground_labels`` names the labels that count as polyp;
- anything else (JPEG compression noise, anti-aliased edges) is thresholded: ``value > 127`` is
  foreground. Such masks are reported as "normalised" so the user can see how many needed it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from polypseg.data.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: Images above this many pixels are refused (decompression-bomb guard): 8192 x 8192.
MAX_PIXELS = 8192 * 8192
MASK_THRESHOLD = 127


@dataclass
class ReadNotes:
    """What had to be done to a file to read it (for the data report)."""

    converted: list[str] = field(default_factory=list)

    def add(self, note: str) -> None:
        self.converted.append(note)


def _open(path: Path, max_pixels: int) -> Image.Image:
    try:
        img = Image.open(path)
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(
            f"cannot read {path}: not an image file ({exc}). Remove it or replace it with a valid image."
        ) from None
    w, h = img.size
    if w * h > max_pixels:
        raise DataError(
            f"{path} is {w}x{h} = {w * h} pixels, above the limit of {max_pixels}; "
            "downscale it first (this guards against decompression bombs)."
        )
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot decode {path}: the file is truncated or corrupt ({exc}).") from None
    return img


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        top = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        return np.clip(np.rint(arr / top * 255), 0, 255).astype(np.uint8)
    top = 65535 if arr.max(initial=0) > 255 else 255
    return (arr.astype(np.uint32) * 255 // top).astype(np.uint8)


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS, notes: ReadNotes | None = None) -> np.ndarray:
    """Read an image file as ``uint8`` RGB ``(H, W, 3)``.

    Grayscale, RGBA, 16-bit and palette images are converted (and noted in ``notes``).

    Raises:
        DataError: missing, unreadable, truncated or oversized file; the message names it.
    """
    path = Path(path)
    img = _open(path, max_pixels)
    if img.mode != "RGB":
        if notes is not None:
            notes.add(f"{path.name}: image mode {img.mode} converted to RGB")
        if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            gray = _to_uint8(np.asarray(img))
            return np.repeat(gray[..., None], 3, axis=2)
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def mask_to_binary(
    values: np.ndarray, name: str, foreground_labels: tuple[int, ...] | None = None
) -> tuple[np.ndarray, bool]:
    """Apply the module's mask rule to a one-channel ``uint8`` array.

    Returns ``(mask, normalised)`` where ``mask`` is ``uint8`` in {0, 1} and ``normalised`` says the
    threshold rule was needed. Raises :class:`DataError` for an unlabelled multi-label map.
    """
    if foreground_labels is not None:
        return np.isin(values, foreground_labels).astype(np.uint8), False
    uniq = np.unique(values)
    if np.all(np.isin(uniq, (0, 1))):
        return values.astype(np.uint8), False
    if np.all(np.isin(uniq, (0, 255))):
        return (values > MASK_THRESHOLD).astype(np.uint8), False
    if uniq.max() < 10:
        raise DataError(
            f"mask {name} holds {len(uniq)} labels {uniq.tolist()}; polypseg segments one class. "
            "Name the polyp label(s) with --foreground-labels (for example --foreground-labels 1)."
        )
    return (values > MASK_THRESHOLD).astype(np.uint8), True


def read_mask(
    path: str | Path,
    max_pixels: int = MAX_PIXELS,
    foreground_labels: tuple[int, ...] | None = None,
) -> tuple[np.ndarray, bool]:
    """Read a mask file as ``uint8`` ``(H, W)`` in {0, 1} by the module's mask rule.

    Returns ``(mask, normalised)``; ``normalised`` is True when the threshold rule was needed.
    """
    path = Path(path)
    img = _open(path, max_pixels)
    if img.mode == "P":
        values = np.asarray(img)  # palette indices
    else:
        arr = np.asarray(img)
        if arr.ndim == 3:
            arr = arr[..., :3].max(axis=2) if arr.shape[2] >= 3 else arr[..., 0]
        values = _to_uint8(arr)
    return mask_to_binary(values, str(path), foreground_labels)


def read_pair(
    image_path: Path,
    mask_path: Path,
    notes: ReadNotes | None = None,
    foreground_labels: tuple[int, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read an image and its mask, checking they have the same height and width.

    Returns ``(image uint8 (H, W, 3), mask uint8 (H, W) in {0, 1})``.
    """
    image = read_image(image_path, notes=notes)
    mask, normalised = read_mask(mask_path, foreground_labels=foreground_labels)
    if normalised and notes is not None:
        notes.add(f"{mask_path.name}: mask values normalised by threshold > {MASK_THRESHOLD}")
    if image.shape[:2] != mask.shape:
        raise DataError(
            f"size mismatch: image {image_path} is {image.shape[1]}x{image.shape[0]} but mask "
            f"{mask_path} is {mask.shape[1]}x{mask.shape[0]} (width x height). "
            "Masks must match their image pixel for pixel; fix or remove the pair."
        )
    return image, mask
