"""Data sources: turn ``--data`` arguments into validated :class:`Sample` records, and read a sample's pixels.

A ``--data`` argument is a folder or file in one of the layouts of :mod:`polypseg.data.layouts`, or
``synthetic`` / ``synthetic:n=400,size=128,seed=0`` (the built-in synthetic set, written once into the
cache folder in the split-folder layout).

NPZ rows come from :func:`npz_array`: an array of a (compressed) ``.npz`` is decompressed when a row of it
is first asked for, and kept with the other arrays of that file read since, so a pass over the samples
decompresses each array it needs once. Only the arrays of one file are held: asking for another file's
array drops them first, and :func:`release_npz_arrays` drops them when a pass is done (the cache build
and the fingerprints do), so holding decoded data never costs more than that file's arrays.
"""

from __future__ import annotations

import re
import threading
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from polypseg.data.errors import DataError
from polypseg.data.io import MASK_THRESHOLD, ReadNotes, mask_to_binary, read_pair
from polypseg.data.layouts import LAYOUTS, Problems, pair_subfolders
from polypseg.data.sample import SPLITS, Sample

__all__ = ["SPLITS", "Sample", "discover", "discover_all", "npz_array", "read_sample", "release_npz_arrays"]


def _decompress(path: Path, key: str) -> np.ndarray:
    """Array ``key`` of the NPZ ``path``, decompressed (only that member of the zip file is read)."""
    try:
        with np.load(path) as z:
            return z[key]
    except KeyError:
        raise DataError(f"{path}: has no array {key!r}; the file changed since it was read, run again") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(
            f"{path}: cannot read the array {key!r} ({exc}): the file is damaged or holds Python objects; "
            "write it again with numpy.savez of uint8 arrays"
        ) from None


class _HeldArrays:
    """The arrays of the NPZ file read last (``(path, mtime_ns, size)``), or the error reading one gave."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.file: tuple[str, int, int] | None = None
        self.arrays: dict[str, np.ndarray | DataError] = {}


_HELD = _HeldArrays()


def npz_array(path: Path, key: str) -> np.ndarray:
    """Array ``key`` (e.g. ``"train_images"``, (N, H, W, 3) uint8) of the NPZ file ``path``, decompressed once.

    The array stays held, with the file's other arrays read since, until an array of another file (or of
    this file changed on disk) is asked for, or :func:`release_npz_arrays` is called. An array that could
    not be read raises the same :class:`DataError` again without a second attempt.
    """
    try:
        st = path.stat()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}; was it moved or deleted?") from None
    ident = (str(path), st.st_mtime_ns, st.st_size)
    with _HELD.lock:
        if _HELD.file != ident:
            _HELD.file, _HELD.arrays = ident, {}  # the old file's arrays go before the new one's are decoded
        if key not in _HELD.arrays:
            try:
                _HELD.arrays[key] = _decompress(path, key)
            except DataError as exc:
                _HELD.arrays[key] = exc
        found = _HELD.arrays[key]
    if isinstance(found, DataError):
        raise found
    return found


def release_npz_arrays() -> None:
    """Drop the decoded NPZ arrays held by :func:`npz_array` (the next row asked for decompresses again)."""
    with _HELD.lock:
        _HELD.file, _HELD.arrays = None, {}


def read_sample(sample: Sample, notes: ReadNotes | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The sample's ``(image uint8 (H, W, 3), mask uint8 (H, W) in {0, 1})`` from files or an NPZ.

    An NPZ row is returned as a copy (not a view), so keeping it does not keep the whole decoded array.
    """
    if sample.index is None:
        return read_pair(sample.image, sample.mask, notes, sample.foreground_labels)
    img = npz_array(sample.image, f"{sample.split}_images")[sample.index]
    lab = npz_array(sample.image, f"{sample.split}_label")[sample.index]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    elif img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    else:
        img = img.copy()
    if img.dtype != np.uint8:
        raise DataError(f"{sample.image}: {sample.split}_images has dtype {img.dtype}; expected uint8")
    mask, normalised = mask_to_binary(
        np.asarray(lab).astype(np.uint8), f"{sample.id} in {sample.image}", sample.foreground_labels
    )
    if normalised and notes is not None:
        notes.add(f"{sample.id}: mask values normalised by threshold > {MASK_THRESHOLD}")
    return img, mask


def parse_synthetic_spec(spec: str) -> dict[str, int]:
    """``"synthetic:n=400,size=128,seed=0"`` -> ``{"n": 400, "size": 128, "seed": 0}``."""
    args: dict[str, int] = {}
    if ":" in spec:
        for part in spec.split(":", 1)[1].split(","):
            m = re.fullmatch(r"\s*(n|size|seed)\s*=\s*(\d+)\s*", part)
            if not m:
                raise DataError(f"bad synthetic spec {spec!r}: expected synthetic:n=INT,size=INT,seed=INT")
            args[m.group(1)] = int(m.group(2))
    return args


def discover(path: str | Path, layout: str | None = None, problems: Problems | None = None) -> list[Sample]:
    """Read one ``--data`` argument into samples (see the module docstring for layouts).

    With ``problems=None`` any problem raises :class:`DataError` listing all of them; with a list,
    problems are appended to it and the samples that did pair up are returned.
    """
    spec = str(path)
    if spec == "synthetic" or spec.startswith("synthetic:"):
        from polypseg.data.synthetic import ensure_synthetic

        return discover(ensure_synthetic(**parse_synthetic_spec(spec)), problems=problems)
    found_problems: Problems = []
    root = Path(path)
    found: list[Sample] | None = None
    if not root.exists():
        found_problems.append(f"data path {root} does not exist")
    elif layout is not None:
        if layout not in LAYOUTS:
            raise DataError(f"unknown layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")
        found = LAYOUTS[layout](root, found_problems)
        if found is None:
            found_problems.append(f"{root} does not look like the {layout!r} layout")
    else:
        for finder in LAYOUTS.values():
            found = finder(root, found_problems)
            if found is not None:
                break
        else:
            found_problems.append(
                f"{root}: no known data layout. Expected an images folder and a masks folder matched by "
                "file name (images/ + masks/, Original/ + Ground Truth/, ...), train/ val/ test/ "
                "subfolders holding them, PraNet's TrainDataset/ TestDataset/, PolypGen's images_C1/ "
                "masks_C1/, or a MedSegBench .npz file"
            )
            named = [sub.name for sub in pair_subfolders(root)]
            if named:
                found_problems.append(
                    f"{root}: the sub-folder(s) {', '.join(named)} hold images and masks; for predefined splits "
                    "name them train, val (or validation, valid) and test"
                )
    if problems is not None:
        problems += found_problems
    elif found_problems:
        raise DataError(f"{root}: the data has problems (fix them, or run 'polypseg data check')", found_problems)
    return found or []


def discover_all(
    paths: Sequence[str | Path],
    layout: str | None = None,
    problems: Problems | None = None,
    foreground_labels: Sequence[int] | None = None,
) -> list[Sample]:
    """Concatenate the samples of several sources; ids must stay unique.

    ``foreground_labels`` (for multi-label masks) is attached to every sample.
    """
    own: Problems = []
    samples: list[Sample] = []
    for p in paths:
        samples += discover(p, layout, own if problems is not None else None)
    seen: dict[str, Sample] = {}
    for s in samples:
        if s.id in seen:
            own.append(f"two sources give the sample id {s.id}: {seen[s.id].image} and {s.image} (rename a folder)")
        seen[s.id] = s
    if problems is not None:
        problems += own
    elif own:
        raise DataError("the data sources clash", own)
    if foreground_labels:
        labels = tuple(int(v) for v in foreground_labels)
        samples = [replace(s, foreground_labels=labels) for s in samples]
    return samples
