"""Data sources: turn a ``--data`` argument into a list of :class:`Sample` records, paired by name.

Layouts understood (auto-detected in this order; force one with ``layout=``):

- ``synthetic`` or ``synthetic:n=400,size=128,seed=0``: the built-in synthetic set, written once
  into the cache folder in the split-folder layout.
- ``npz``: a MedSegBench file ``X.npz`` with ``{split}_images`` (N, H, W, 3) or (N, H, W) uint8 and
  ``{split}_label`` (N, H, W) in {0, 1}, for any of the splits train / val / test present.
- ``split-folders``: ``PATH/{train,val,test}/`` (``validation`` counts as val), each a pair folder.
- ``pranet``: ``PATH/TrainDataset/{image,mask}`` (train) and ``PATH/TestDataset/<set>/{images,masks}``
  (test; each set is its own source).
- ``polypgen``: ``PATH/images_C1 .. images_C6`` with ``masks_C1 ..`` (``<stem>_mask.jpg``); the centre
  becomes the group, so centres never straddle splits.
- ``pairs``: one image folder and one mask folder: ``images/`` + ``masks/`` (Kvasir-SEG),
  ``Original/`` + ``Ground Truth/`` (CVC-ClinicDB), ``image/`` + ``mask/``, ``imgs/`` + ``gt/`` ...

Pairing is always by file stem, never by sorted order. A mask stem may carry a suffix ``_mask``,
``-mask`` or ``_seg``, and image and mask may differ in extension. Every unmatched file is reported.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from polypseg.data.errors import DataError
from polypseg.data.io import IMAGE_EXTENSIONS, ReadNotes, mask_to_binary, read_pair

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "val": "val", "validation": "val", "valid": "val", "test": "test"}
MASK_SUFFIXES = ("_mask", "-mask", "_seg")
IGNORED_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}
IMAGE_DIR_NAMES = ("images", "image", "Original", "imgs", "img")
MASK_DIR_NAMES = ("masks", "mask", "Ground Truth", "GroundTruth", "gt", "labels")


@dataclass(frozen=True)
class Sample:
    """One image with its mask.

    Attributes:
        id: unique key across all sources, ``"<source>/<stem>"``.
        image: path of the image file (the ``.npz`` file for NPZ sources).
        mask: path of the mask file (the ``.npz`` file for NPZ sources).
        source: short name of the data set it came from (the folder name).
        split: predefined split ("train", "val", "test") or None when the source has none.
        group: patient / video / centre id (frames of one group never straddle splits), or None.
        index: row in the NPZ arrays (None for files).
        foreground_labels: mask values that count as polyp in multi-label masks (None: the mask rule).
    """

    id: str
    image: Path
    mask: Path
    source: str
    split: str | None = None
    group: str | None = None
    index: int | None = None
    foreground_labels: tuple[int, ...] | None = None


Problems = list[str]


def _mask_key(stem: str) -> str:
    for suffix in MASK_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def _list_images(folder: Path) -> list[Path]:
    files, other = [], []
    for p in sorted(folder.iterdir()):
        if p.is_dir() or p.name in IGNORED_NAMES or p.name.startswith("."):
            continue
        (files if p.suffix.lower() in IMAGE_EXTENSIONS else other).append(p)
    if other:
        names = ", ".join(p.name for p in other[:10])
        warnings.warn(f"{folder}: ignored {len(other)} file(s) that are not images ({names})", stacklevel=3)
    return files


def _pair(image_dir: Path, mask_dir: Path, source: str, split: str | None, problems: Problems) -> list[Sample]:
    images: dict[str, Path] = {}
    masks: dict[str, Path] = {}
    for p in _list_images(image_dir):
        if p.stem in images:
            problems.append(f"two images share the stem {p.stem!r}: {images[p.stem]}, {p}")
        images[p.stem] = p
    for p in _list_images(mask_dir):
        key = _mask_key(p.stem) if _mask_key(p.stem) in images else p.stem
        if key in masks:
            problems.append(f"two masks match the image stem {key!r}: {masks[key]}, {p}")
        masks[key] = p
    problems += [f"image without mask: {images[s]}" for s in sorted(set(images) - set(masks))]
    problems += [f"mask without image: {masks[s]}" for s in sorted(set(masks) - set(images))]
    if not images:
        problems.append(f"{image_dir}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found")
    return [
        Sample(id=f"{source}/{stem}", image=images[stem], mask=masks[stem], source=source, split=split)
        for stem in sorted(set(images) & set(masks))
    ]


def pair_folder(image_dir: Path, mask_dir: Path, source: str, split: str | None = None) -> list[Sample]:
    """Pair ``image_dir`` and ``mask_dir`` by stem (mask suffixes allowed).

    Raises:
        DataError: listing every image without a mask, mask without an image, and duplicate stems.
    """
    problems: Problems = []
    out = _pair(image_dir, mask_dir, source, split, problems)
    if problems:
        raise DataError(f"{image_dir.parent}: images and masks do not pair up by file name", problems)
    return out


def _pair_dirs(path: Path) -> tuple[Path, Path] | None:
    img = next((path / n for n in IMAGE_DIR_NAMES if (path / n).is_dir()), None)
    msk = next((path / n for n in MASK_DIR_NAMES if (path / n).is_dir()), None)
    return (img, msk) if img is not None and msk is not None else None


def _plain_pairs(path: Path, problems: Problems) -> list[Sample] | None:
    dirs = _pair_dirs(path)
    return None if dirs is None else _pair(*dirs, path.name, None, problems)


def _split_folders(path: Path, problems: Problems) -> list[Sample] | None:
    present = [(p, SPLIT_ALIASES[p.name]) for p in sorted(path.iterdir()) if p.name in SPLIT_ALIASES and p.is_dir()]
    present = [(p, s) for p, s in present if _pair_dirs(p) is not None]
    if not present:
        return None
    out: list[Sample] = []
    for folder, split in present:
        out += _pair(*_pair_dirs(folder), path.name, split, problems)  # type: ignore[misc]
    return out


def _pranet(path: Path, problems: Problems) -> list[Sample] | None:
    train, test = path / "TrainDataset", path / "TestDataset"
    if not train.is_dir() and not test.is_dir():
        return None
    out: list[Sample] = []
    if train.is_dir() and _pair_dirs(train):
        out += _pair(*_pair_dirs(train), "TrainDataset", "train", problems)  # type: ignore[misc]
    if test.is_dir():
        for sub in sorted(p for p in test.iterdir() if p.is_dir()):
            if _pair_dirs(sub):
                out += _pair(*_pair_dirs(sub), sub.name, "test", problems)  # type: ignore[misc]
    return out


def _polypgen(path: Path, problems: Problems) -> list[Sample] | None:
    centres = sorted(p.name[len("images_") :] for p in path.glob("images_*") if p.is_dir())
    if not centres:
        return None
    out: list[Sample] = []
    for c in centres:
        mdir = path / f"masks_{c}"
        if not mdir.is_dir():
            problems.append(f"{path / f'images_{c}'} has no matching folder {mdir.name}")
            continue
        out += [replace(s, group=c) for s in _pair(path / f"images_{c}", mdir, f"{path.name}_{c}", None, problems)]
    return out


def _npz(path: Path, problems: Problems) -> list[Sample] | None:
    if not (path.is_file() and path.suffix == ".npz"):
        return None
    try:
        arrays = np.load(path)
        keys = set(arrays.files)
    except (OSError, ValueError) as exc:
        problems.append(f"{path}: cannot read as NPZ ({exc})")
        return []
    out: list[Sample] = []
    for split in SPLITS:
        ik, lk = f"{split}_images", f"{split}_label"
        if ik not in keys and lk not in keys:
            continue
        if ik not in keys or lk not in keys:
            problems.append(f"{path}: has {ik if ik in keys else lk} but not {lk if ik in keys else ik}")
            continue
        img, lab = arrays[ik], arrays[lk]
        if img.ndim not in (3, 4) or (img.ndim == 4 and img.shape[3] not in (1, 3)) or lab.ndim != 3:
            problems.append(
                f"{path}: {ik} {img.shape} / {lk} {lab.shape}: expected (N, H, W[, 3]) images and (N, H, W) labels"
            )
            continue
        if img.shape[:3] != lab.shape:
            problems.append(f"{path}: {ik} {img.shape} and {lk} {lab.shape} differ in N, H or W")
            continue
        out += [
            Sample(
                id=f"{path.stem}/{split}/{i:05d}",
                image=path,
                mask=path,
                source=path.stem,
                split=split,
                index=i,
            )
            for i in range(img.shape[0])
        ]
    if not out:
        problems.append(f"{path}: no '<split>_images' / '<split>_label' arrays (found: {sorted(keys)})")
    return out


LAYOUTS: dict[str, Callable[[Path, Problems], list[Sample] | None]] = {
    "npz": _npz,
    "split-folders": _split_folders,
    "pranet": _pranet,
    "polypgen": _polypgen,
    "pairs": _plain_pairs,
}


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
        notes.add(f"{sample.id}: mask values normalised by threshold > 127")
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


def apply_groups(samples: Sequence[Sample], regex: str | None = None, csv_spec: str | None = None) -> list[Sample]:
    """Set ``Sample.group`` from the file stem by ``regex`` (its first group, else the whole match) or
    from a CSV given as ``FILE:COLUMN`` with a ``stem`` column. Samples the rule does not cover keep
    their own group (so they still never straddle splits with their group mates).

    Raises:
        DataError: a regex that matches no sample, or an unreadable CSV / missing column.
    """
    out = list(samples)
    if regex:
        pattern = re.compile(regex)
        hits = 0
        for i, s in enumerate(out):
            m = pattern.search(s.id.rsplit("/", 1)[-1])
            if m:
                hits += 1
                out[i] = replace(s, group=m.group(1) if m.groups() else m.group(0))
        if hits == 0:
            raise DataError(f"group regex {regex!r} matches no file name; check it against e.g. {out[0].id!r}")
    if csv_spec:
        file, _, column = csv_spec.rpartition(":")
        if not file or not column:
            raise DataError(f"group CSV {csv_spec!r}: expected FILE:COLUMN")
        try:
            with open(file, newline="") as fh:
                rows = list(csv.DictReader(fh))
        except OSError as exc:
            raise DataError(f"cannot read group CSV {file}: {exc}") from None
        if not rows or "stem" not in rows[0] or column not in rows[0]:
            raise DataError(f"group CSV {file} needs the columns 'stem' and {column!r}")
        table = {r["stem"]: r[column] for r in rows}
        out = [replace(s, group=table.get(s.id.rsplit("/", 1)[-1], s.group)) for s in out]
    return out
