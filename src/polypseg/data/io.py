"""Reading images and masks from disk into the arrays the rest of polypseg uses.

Images become ``uint8`` RGB arrays ``(H, W, 3)``; masks become ``uint8`` arrays ``(H, W)`` in {0, 1}.
``.tif`` / ``.tiff`` files are decoded by ``tifffile`` (Pillow cannot decode some TIFFs, such as the
original CVC-ClinicDB frames); a TIFF that ``tifffile`` cannot decode without the optional
``imagecodecs`` package (LZW, JPEG compression) or in a colour model it does not convert (YCbCr,
CMYK) is read by Pillow instead. Every other format is read by Pillow.

**Mask rule.** A mask is first reduced to one channel: palette images by their palette index, RGB(A)
by the maximum over the colour channels (so a red, green or white polyp counts as foreground; a colour
mask is counted in a note), 16-bit by scaling to 0..255. Then, by the distinct values found:

- ``foreground_labels`` given: those values are polyp, every other value background;
- one value: 0 is an empty mask, any other single value a mask that is polyp everywhere;
- exactly two values ``a < b`` with ``b >= 10`` (or {0, 1}): ``b`` is polyp, ``a`` background
  ({0, 1}, {0, 255}, {0, 100}, {3, 200}; pairs other than {0, 1} and {0, 255} are counted in a note);
  two small labels such as {0, 2} are a label map (next rule);
- other values all below 10 (two small labels or more): a multi-label map, an error asking for
  ``--foreground-labels``;
- JPEG noise: three or more values with at least 99 % of the pixels <= 63 or >= 192 (a JPEG of an
  empty or all-polyp mask has them at one end only) are thresholded, ``value > 127`` is polyp; such
  masks are reported as "normalised" so the user can see how many needed it. The one exception is
  {0, 1, 255}: it mixes the 0/1 and 0/255 conventions, so its 1-pixels may be polyp, and it is refused;
- anything else ({0, 1, 255}, three values such as {0, 100, 200}, a smooth gradient) is an error
  naming the file and the values found: save the mask as 0 / 255, or name the polyp values with
  ``--foreground-labels``.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from polypseg.data.errors import DataError, ReadNotes, unreadable_file

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
TIFF_EXTENSIONS = (".tif", ".tiff")
#: Images above this many pixels are refused (decompression-bomb guard): 8192 x 8192.
MAX_PIXELS = 8192 * 8192
MASK_THRESHOLD = 127
#: What Pillow raises for a damaged file, a crafted header or a truncated stream (any of them: refuse the file).
CORRUPT_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error, zlib.error)
#: JPEG-noise test of the mask rule: this share of the pixels must be <= LOW or >= HIGH.
BIMODAL_LOW, BIMODAL_HIGH, BIMODAL_SHARE = 63, 192, 0.99


def _check_pixels(path: Path, w: int, h: int, max_pixels: int) -> None:
    if w * h > max_pixels:
        raise DataError(
            f"{path} is {w}x{h} = {w * h} pixels, above the limit of {max_pixels}; "
            "downscale it first (this guards against decompression bombs)."
        )


def _open(path: Path, max_pixels: int) -> Image.Image:
    try:
        img = Image.open(path)
    except Image.DecompressionBombError as exc:  # Pillow's own guard, far above ours: refuse it the same way
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"is {found.group(1)} pixels" if found else "has more pixels"
        raise DataError(
            f"{path} {size}, above the limit of {max_pixels}; downscale it first (this guards against "
            "decompression bombs)."
        ) from None
    except CORRUPT_ERRORS as exc:
        if isinstance(exc, UnidentifiedImageError) or (isinstance(exc, OSError) and exc.errno is not None):
            raise unreadable_file(path, "an image", exc) from None  # not an image, or a file-system error
        raise _damaged(path, exc) from None  # a known format whose header or first bytes are damaged
    try:
        _check_pixels(path, *img.size, max_pixels)
        img.load()
    except DataError:
        img.close()
        raise
    except CORRUPT_ERRORS as exc:
        img.close()
        raise _damaged(path, exc) from None
    return img


def _damaged(path: Path, exc: BaseException | str) -> DataError:
    return DataError(
        f"cannot decode {path}: the file is truncated or corrupt ({exc}). Remove it or replace it with a valid image."
    )


@dataclass
class _Tiff:
    """A decoded TIFF page: ``array`` (H, W) or (H, W, S) as stored, ``palette`` (N, 3) uint8 or None."""

    array: np.ndarray
    palette: np.ndarray | None
    kind: str  # "rgb", "gray" or "palette"


TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders


def _read_tiff(path: Path, max_pixels: int) -> _Tiff | None:
    """Decode the first page of a TIFF with tifffile; None when Pillow should read it instead.

    The pixel limit is checked from the page's tags before any pixel is decoded.
    """
    import tifffile
    from tifffile import PHOTOMETRIC, TIFF

    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:  # missing, unreadable, a looping symbolic link ...
        raise unreadable_file(path, "an image", exc) from None
    if magic not in TIFF_MAGIC:
        return None  # another format under a .tif name (or an empty file): Pillow may know it
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.pages:
                raise _damaged(path, "the TIFF holds no image")
            page = tif.pages[0]
            _check_pixels(path, page.imagewidth, page.imagelength, max_pixels)
            kinds = {PHOTOMETRIC.RGB: "rgb", PHOTOMETRIC.MINISBLACK: "gray", PHOTOMETRIC.PALETTE: "palette"}
            white = page.photometric == PHOTOMETRIC.MINISWHITE and page.dtype is not None and page.dtype.kind in "bu"
            kind = "gray" if white else kinds.get(page.photometric)
            predictor_ok = page.predictor == 1 or page.predictor in TIFF.UNPREDICTORS
            decodable = page.compression in TIFF.DECOMPRESSORS and predictor_ok  # else a codec needs imagecodecs
            axes = page.axes
            if kind is None or not decodable or axes not in ("YX", "YXS", "SYX"):
                return None  # a colour model or codec tifffile does not handle here
            array = page.asarray()
            colormap = page.colormap
    except DataError:
        raise
    except (FileNotFoundError, PermissionError) as exc:
        raise unreadable_file(path, "an image", exc) from None
    except Exception as exc:  # any failure inside the TIFF decoder means a damaged file
        raise _damaged(path, exc) from None
    if axes == "SYX":  # planar configuration "separate": one plane per sample
        array = np.moveaxis(array, 0, -1)
    if white:  # min-is-white: the stored 0 is white
        array = ~array if array.dtype == bool else np.iinfo(array.dtype).max - array
    palette = None
    if kind == "palette":  # (3, N) colour map, 16-bit as v * 256 or v * 257 (>> 8 undoes both) -> (N, 3)
        cmap = np.asarray(colormap).astype(np.uint32).T
        palette = (cmap >> 8 if cmap.max(initial=0) > 255 else cmap).astype(np.uint8)
    return _Tiff(array, palette, kind)


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


def _tiff_rgb(tiff: _Tiff) -> np.ndarray:
    """``(H, W, 3)`` uint8 from a decoded TIFF page (palette looked up, gray repeated, 16-bit scaled)."""
    arr = tiff.array
    if tiff.palette is not None:
        return tiff.palette[np.clip(arr, 0, len(tiff.palette) - 1)]
    if arr.ndim == 3 and arr.shape[2] >= 3 and tiff.kind == "rgb":
        return np.ascontiguousarray(_to_uint8(arr[..., :3]))
    gray = arr if arr.ndim == 2 else arr[..., 0]
    gray = gray.astype(np.uint8) * 255 if gray.dtype == bool else _to_uint8(gray)
    return np.repeat(gray[..., None], 3, axis=2)


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS, notes: ReadNotes | None = None) -> np.ndarray:
    """Read an image file as ``uint8`` RGB ``(H, W, 3)``.

    Grayscale, RGBA, 16-bit, floating-point and palette images are converted (and noted in ``notes``).

    Raises:
        DataError: missing, unreadable, truncated or oversized file; the message names it.
    """
    path = Path(path)
    tiff = _read_tiff(path, max_pixels) if path.suffix.lower() in TIFF_EXTENSIONS else None
    if tiff is not None:
        arr = tiff.array
        plain = tiff.kind == "rgb" and arr.dtype == np.uint8 and arr.shape[2:] == (3,)
        if not plain and notes is not None:
            notes.add(f"{path.name}: image mode TIFF {tiff.kind} {arr.dtype} converted to RGB")
        return _tiff_rgb(tiff)
    img = _open(path, max_pixels)
    if img.mode != "RGB":
        if notes is not None:
            notes.add(f"{path.name}: image mode {img.mode} converted to RGB")
        if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            gray = _to_uint8(np.asarray(img))
            return np.repeat(gray[..., None], 3, axis=2)
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def _values_text(uniq: np.ndarray) -> str:
    """``[0, 1, 255]``, or the five smallest and five largest of more than ten values, with the count."""
    vals = uniq.tolist()
    shown = str(vals) if len(vals) <= 10 else str(vals[:5])[:-1] + ", ..., " + str(vals[-5:])[1:]
    return f"{len(vals)} distinct values {shown}"


def mask_to_binary(
    values: np.ndarray,
    name: str,
    foreground_labels: tuple[int, ...] | None = None,
    notes: ReadNotes | None = None,
) -> tuple[np.ndarray, bool]:
    """Apply the module's mask rule to a one-channel ``uint8`` array ``(H, W)``.

    Returns ``(mask, normalised)`` where ``mask`` is ``uint8`` ``(H, W)`` in {0, 1} and ``normalised``
    says the JPEG-noise threshold was needed. Two values other than {0, 1} and {0, 255} (e.g. {0, 100})
    are added to ``notes``, so a report counts how many masks used another convention.

    Raises:
        DataError: a multi-label map without ``foreground_labels``, or values the rule cannot read as
            background and polyp; the message names ``name`` and the values found.
    """
    if foreground_labels is not None:
        return np.isin(values, foreground_labels).astype(np.uint8), False
    uniq = np.unique(values)
    if len(uniq) <= 1:
        fill = 1 if len(uniq) and uniq[0] != 0 else 0
        return np.full(values.shape, fill, np.uint8), False
    if len(uniq) == 2 and (uniq.tolist() == [0, 1] or uniq[1] >= 10):
        if notes is not None and uniq.tolist() not in ([0, 1], [0, 255]):
            low, high = uniq.tolist()
            notes.add(f"{Path(name).name}: mask values {low} / {high} read as background / polyp",
                      "masks with values other than 0/1, 0/255: low = background")  # fmt: skip
        return (values == uniq[1]).astype(np.uint8), False
    if uniq.max() < 10:
        raise DataError(
            f"mask {name} holds {len(uniq)} labels {uniq.tolist()}; polypseg segments one class. "
            "Name the polyp label(s) with --foreground-labels (for example --foreground-labels 1)."
        )
    n_low = int(np.count_nonzero(values <= BIMODAL_LOW))
    n_high = int(np.count_nonzero(values >= BIMODAL_HIGH))
    mixed_conventions = uniq.tolist() == [0, 1, 255]  # 0/1 and 0/255 together: the 1-pixels may be polyp
    one_sided = len(uniq) >= 3 and max(n_low, n_high) >= BIMODAL_SHARE * values.size  # a JPEG of an empty or full mask
    if not mixed_conventions and (one_sided or (n_low and n_high)) and n_low + n_high >= BIMODAL_SHARE * values.size:
        return (values > MASK_THRESHOLD).astype(np.uint8), True
    raise DataError(
        f"mask {name} holds {_values_text(uniq)}: polypseg cannot tell which are polyp (a mask needs two "
        f"values, or JPEG noise around 0 and 255). Save the mask with 0 for background and 255 for polyp, "
        f"or name the polyp value(s) with --foreground-labels (for example --foreground-labels {uniq[-1]})."
    )


def read_mask(
    path: str | Path,
    max_pixels: int = MAX_PIXELS,
    foreground_labels: tuple[int, ...] | None = None,
    notes: ReadNotes | None = None,
) -> tuple[np.ndarray, bool]:
    """Read a mask file as ``uint8`` ``(H, W)`` in {0, 1} by the module's mask rule.

    Returns ``(mask, normalised)``; ``normalised`` is True when the JPEG-noise threshold was needed.
    A colour mask (a pixel whose channels differ by more than half the range, e.g. a red polyp) and a
    two-value mask other than 0/1 or 0/255 are added to ``notes``.

    Raises:
        DataError: unreadable file, or a mask the rule refuses; the message names the file.
    """
    path = Path(path)
    tiff = _read_tiff(path, max_pixels) if path.suffix.lower() in TIFF_EXTENSIONS else None
    if tiff is not None:
        arr = tiff.array
        if tiff.kind == "palette":
            return mask_to_binary(arr.astype(np.uint8), str(path), foreground_labels, notes)  # palette indices
    else:
        img = _open(path, max_pixels)
        if img.mode == "P":
            return mask_to_binary(np.asarray(img), str(path), foreground_labels, notes)  # palette indices
        arr = np.asarray(img)
    if arr.ndim == 3:
        if arr.shape[2] >= 3:
            rgb = _to_uint8(arr[..., :3])
            if notes is not None and int((rgb.max(axis=2) - rgb.min(axis=2)).max(initial=0)) > MASK_THRESHOLD:
                notes.add(f"{path.name}: colour mask read by its brightest channel",
                          "colour masks read by their brightest channel")  # fmt: skip
        arr = arr[..., :3].max(axis=2) if arr.shape[2] >= 3 else arr[..., 0]
    return mask_to_binary(_to_uint8(arr), str(path), foreground_labels, notes)


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
    mask, normalised = read_mask(mask_path, foreground_labels=foreground_labels, notes=notes)
    if normalised and notes is not None:
        notes.add(f"{mask_path.name}: mask values normalised by threshold > {MASK_THRESHOLD}")
    if image.shape[:2] != mask.shape:
        raise DataError(
            f"size mismatch: image {image_path} is {image.shape[1]}x{image.shape[0]} but mask "
            f"{mask_path} is {mask.shape[1]}x{mask.shape[0]} (width x height). "
            "Masks must match their image pixel for pixel; fix or remove the pair."
        )
    return image, mask
