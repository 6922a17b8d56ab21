"""Data sources: turn ``--data`` arguments into validated :class:`Sample` records, and read a sample's pixels.

A ``--data`` argument is a folder or file in one of the layouts of :mod:`polypseg.data.layouts`, or
``synthetic`` / ``synthetic:n=400,size=128,seed=0`` (the built-in synthetic set, written once into the
cache folder in the split-folder layout).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from polypseg.data.errors import DataError
from polypseg.data.io import MASK_THRESHOLD, ReadNotes, mask_to_binary, read_pair
from polypseg.data.layouts import LAYOUTS, Problems, pair_subfolders
from polypseg.data.sample import SPLITS, Sample

__all__ = ["SPLITS", "Sample", "discover", "discover_all", "read_sample"]


@lru_cache(maxsize=4)
def _npz_arrays(path: str, mtime_ns: int) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def read_sample(sample: Sample, notes: ReadNotes | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The sample's ``(image uint8 (H, W, 3), mask uint8 (H, W) in {0, 1})`` from files or an NPZ."""
    if sample.index is None:
        return read_pair(sample.image, sample.mask, notes, sample.foreground_labels)
    arrays = _npz_arrays(str(sample.image), sample.image.stat().st_mtime_ns)
    img = arrays[f"{sample.split}_images"][sample.index]
    lab = arrays[f"{sample.split}_label"][sample.index]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    elif img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    if img.dtype != np.uint8:
        raise DataError(f"{sample.image}: {sample.split}_images has dtype {img.dtype}; expected uint8")
    mask, normalised = mask_to_binary(
        np.asarray(lab).astype(np.uint8), f"{sample.id} in {sample.image}", sample.foreground_labels
    )
    if normalised and notes is not None:
        notes.add(f"{sample.id}: mask values normalised by threshold > {MASK_THRESHOLD}")
    return np.ascontiguousarray(img), mask


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
