"""The folder and file layouts a ``--data`` argument may have; each finder turns one into samples.

Layouts understood (auto-detected in the order of :data:`LAYOUTS`; force one with ``layout=``):

- ``npz``: a MedSegBench file ``X.npz`` with ``{split}_images`` (N, H, W, 3) or (N, H, W) uint8 and
  ``{split}_label`` (N, H, W) in {0, 1}, for any of the splits train / val / test present.
- ``split-folders``: ``PATH/{train,val,test}/`` (``validation`` and ``valid`` count as val), each a pair
  folder; ids carry the split (``"<source>/<split>/<stem>"``), so ``train/0.png`` and ``test/0.png`` may
  coexist. Another sub-folder holding a pair folder is a problem (rename it to a split name); other
  sub-folders are named in a warning.
- ``pranet``: ``PATH/TrainDataset/{image,mask}`` (train) and ``PATH/TestDataset/<set>/{images,masks}``
  (test; each set is its own source).
- ``polypgen``: ``PATH/images_C1 .. images_C6`` with ``masks_C1 ..`` (``<stem>_mask.jpg``); the centre
  becomes the group, so centres never straddle splits.
- ``pairs``: one image folder and one mask folder: ``images/`` + ``masks/`` (Kvasir-SEG),
  ``Original/`` + ``Ground Truth/`` (CVC-ClinicDB), ``image/`` + ``mask/``, ``imgs/`` + ``gt/`` ...

Pairing is always by file stem, never by sorted order. A mask stem may carry a suffix ``_mask``,
``-mask`` or ``_seg``, and image and mask may differ in extension. Every unmatched file is reported.
A finder returns None when the path is not in its layout, else the samples that paired up, appending
one line per problem to ``problems``.
"""

from __future__ import annotations

import math
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from polypseg.data.errors import DataError, unreadable_file
from polypseg.data.io import IMAGE_EXTENSIONS, MAX_PIXELS
from polypseg.data.sample import SPLITS, Sample

SPLIT_ALIASES = {"train": "train", "val": "val", "validation": "val", "valid": "val", "test": "test"}
MASK_SUFFIXES = ("_mask", "-mask", "_seg")
IGNORED_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}
IMAGE_DIR_NAMES = ("images", "image", "Original", "imgs", "img")
MASK_DIR_NAMES = ("masks", "mask", "Ground Truth", "GroundTruth", "gt", "labels")

Problems = list[str]


def _mask_key(stem: str) -> str:
    for suffix in MASK_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def _list_images(folder: Path, problems: Problems, broken: set[str]) -> list[Path]:
    """The image files of ``folder``. A symbolic link that loops or points nowhere is a problem, not a file;
    its stems go into ``broken``, so its partner is not reported as unmatched too."""
    files, other = [], []
    for p in sorted(folder.iterdir()):
        if p.is_dir() or p.name in IGNORED_NAMES or p.name.startswith("."):
            continue
        if p.is_symlink() and not p.exists():
            problems.append(unreadable_file(p, "an image or mask file").summary)
            broken.update((p.stem, _mask_key(p.stem)))
            continue
        (files if p.suffix.lower() in IMAGE_EXTENSIONS else other).append(p)
    if other:
        names = ", ".join(p.name for p in other[:10])
        warnings.warn(f"{folder}: ignored {len(other)} file(s) that are not images ({names})", stacklevel=3)
    return files


def _pair(
    image_dir: Path, mask_dir: Path, source: str, split: str | None, problems: Problems, prefix: str | None = None
) -> list[Sample]:
    """Samples of the stems found in both folders, with ids ``"<prefix>/<stem>"`` (``prefix`` defaults to
    ``source``); every unmatched or duplicate file is appended to ``problems``."""
    images: dict[str, Path] = {}
    masks: dict[str, Path] = {}
    broken: set[str] = set()
    for p in _list_images(image_dir, problems, broken):
        if p.stem in images:
            problems.append(f"two images share the stem {p.stem!r}: {images[p.stem]}, {p}")
        images[p.stem] = p
    for p in _list_images(mask_dir, problems, broken):
        key = _mask_key(p.stem) if _mask_key(p.stem) in images else p.stem
        if key in masks:
            problems.append(f"two masks match the image stem {key!r}: {masks[key]}, {p}")
        masks[key] = p
    problems += [f"image without mask: {images[s]}" for s in sorted(set(images) - set(masks) - broken)]
    problems += [f"mask without image: {masks[s]}" for s in sorted(set(masks) - set(images) - broken)]
    if not images and not broken:
        problems.append(f"{image_dir}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found")
    return [
        Sample(id=f"{prefix or source}/{stem}", image=images[stem], mask=masks[stem], source=source, split=split)
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


def pair_subfolders(path: Path) -> list[Path]:
    """The sub-folders of ``path`` (hidden ones skipped) that hold an image folder and a mask folder."""
    if not path.is_dir():
        return []
    return [p for p in sorted(path.iterdir()) if p.is_dir() and not p.name.startswith(".") and _pair_dirs(p)]


def _split_folders(path: Path, problems: Problems) -> list[Sample] | None:
    """``PATH/{train,val,test}/`` pair folders; sample ids are ``"<source>/<split>/<stem>"``.

    Detected when at least one sub-folder named like a split holds a pair layout. Then any other
    sub-folder holding a pair layout is a problem (its name is not a split name), and sub-folders
    holding no pair layout are named in a warning.
    """
    if not path.is_dir():
        return None
    subs = [p for p in sorted(path.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    present = [(p, SPLIT_ALIASES[p.name]) for p in subs if p.name in SPLIT_ALIASES and _pair_dirs(p)]
    if not present:
        return None
    accepted = "train, val (or validation, valid), test"
    ignored = []
    for p in subs:
        if p.name in SPLIT_ALIASES and _pair_dirs(p):
            continue
        if _pair_dirs(p):
            problems.append(
                f"{p}: holds an image folder and a mask folder, but {p.name!r} is not a split name; "
                f"rename it to one of {accepted}, or move it out of {path}"
            )
        else:
            ignored.append(p.name)
    if ignored:
        warnings.warn(
            f"{path}: ignored sub-folder(s) holding no image folder + mask folder: {', '.join(ignored)} "
            f"(a split folder needs e.g. images/ and masks/ inside; split names: {accepted})",
            stacklevel=3,
        )
    out: list[Sample] = []
    seen: dict[str, Path] = {}
    for folder, split in present:
        if split in seen:
            problems.append(f"{seen[split]} and {folder} both name the split {split!r}; merge them or rename one")
            continue
        seen[split] = folder
        image_dir, mask_dir = _pair_dirs(folder)  # type: ignore[misc]
        out += _pair(image_dir, mask_dir, path.name, split, problems, prefix=f"{path.name}/{split}")
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


#: What ``np.load`` raises for a file that is not an NPZ archive, or a damaged one.
_NPZ_ERRORS = (OSError, ValueError, EOFError, KeyError, RuntimeError, zipfile.BadZipFile, zlib.error)


def _npz_split(path: Path, arrays: Any, split: str, keys: set[str], problems: Problems) -> list[Sample]:
    """The samples of one split of an open NPZ archive; an unusable pair of arrays is a problem."""
    ik, lk = f"{split}_images", f"{split}_label"
    if ik not in keys or lk not in keys:
        problems.append(f"{path}: has {ik if ik in keys else lk} but not {lk if ik in keys else ik}")
        return []
    try:
        img, lab = _npy_header(arrays, ik), _npy_header(arrays, lk)
    except _NPZ_ERRORS as exc:
        problems.append(f"{path}: {ik} / {lk} cannot be read, the archive is damaged ({exc}); write it again")
        return []
    if img.dtype.hasobject or lab.dtype.hasobject:  # reading them would unpickle Python objects: refused
        problems.append(
            f"{path}: {ik} / {lk} hold Python objects (dtype {img.dtype} / {lab.dtype}); polypseg never unpickles "
            "data. Save plain uint8 arrays with numpy.savez"
        )
        return []
    if img.ndim not in (3, 4) or (img.ndim == 4 and img.shape[3] not in (1, 3)) or lab.ndim != 3:
        problems.append(
            f"{path}: {ik} {img.shape} / {lk} {lab.shape}: expected (N, H, W[, 3]) images and (N, H, W) labels"
        )
        return []
    for key, head in ((ik, img), (lk, lab)):  # a header may claim more than is stored: refuse before reading
        claimed, stored = math.prod(head.shape) * head.dtype.itemsize, arrays.zip.getinfo(f"{key}.npy").file_size
        if claimed > stored:
            problems.append(f"{path}: {key}'s header claims {head.shape} {head.dtype} ({claimed} bytes) but the "
                            f"archive stores {stored} bytes: the file is damaged; write it again")  # fmt: skip
            return []
    if img.shape[1] * img.shape[2] > MAX_PIXELS:
        problems.append(
            f"{path}: {ik} frames are {img.shape[2]}x{img.shape[1]} = {img.shape[1] * img.shape[2]} pixels, above the "
            f"limit of {MAX_PIXELS} that image files have too; downscale them before saving the archive"
        )
        return []
    if img.shape[:3] != lab.shape:
        problems.append(
            f"{path}: {ik} {img.shape} and {lk} {lab.shape} differ in N, H or W: every image needs one label "
            "of its size; write the arrays again"
        )
        return []
    return [
        Sample(id=f"{path.stem}/{split}/{i:05d}", image=path, mask=path, source=path.stem, split=split, index=i)
        for i in range(img.shape[0])
    ]


@dataclass(frozen=True)
class _ArrayHeader:
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)


def _npy_header(arrays: Any, key: str) -> _ArrayHeader:
    """Shape and dtype of the array ``key`` of an open NPZ archive, from its ``.npy`` header alone: discovery
    decompresses no pixel (the arrays are read once, when the cache is built)."""
    with arrays.zip.open(f"{key}.npy") as fp:
        version = np.lib.format.read_magic(fp)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = read(fp)
    return _ArrayHeader(tuple(shape), np.dtype(dtype))


def _npz(path: Path, problems: Problems) -> list[Sample] | None:
    if not (path.is_file() and path.suffix == ".npz"):
        return None
    what = ""
    try:
        arrays = np.load(path)
    except _NPZ_ERRORS as exc:
        if isinstance(exc, PermissionError):
            what = "permission denied; check the file's permissions"
        elif _zip_magic(path):
            what = f"the archive is truncated or damaged ({type(exc).__name__}: {exc}); copy or write it again"
        else:  # numpy's own message here suggests unpickling the file: polypseg never does
            what = "it is not an NPZ archive"
    else:
        if not isinstance(arrays, np.lib.npyio.NpzFile):
            what = f"it holds one {type(arrays).__name__} (a .npy file renamed?), not an NPZ archive of named arrays"
    if what:
        problems.append(
            f"{path}: cannot read as NPZ: {what}. Give a MedSegBench .npz file (numpy.savez with "
            "'<split>_images' and '<split>_label' arrays)"
        )
        return []
    with arrays:
        keys = set(arrays.files)
        present = [s for s in SPLITS if f"{s}_images" in keys or f"{s}_label" in keys]
        out = [x for split in present for x in _npz_split(path, arrays, split, keys, problems)]
    if not present:
        problems.append(f"{path}: no '<split>_images' / '<split>_label' arrays (found: {sorted(keys)})")
    return out


def _zip_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    except OSError:
        return False


LAYOUTS: dict[str, Callable[[Path, Problems], list[Sample] | None]] = {
    "npz": _npz,
    "split-folders": _split_folders,
    "pranet": _pranet,
    "polypgen": _polypgen,
    "pairs": _plain_pairs,
}
