"""Data sources: turn a ``--data`` argument into a validated list of :class:`Sample` records.

Layouts understood (detected in this order):

- ``synthetic`` or ``synthetic:n=400,size=128,seed=0``: the built-in synthetic set, written once
  into the cache folder in the split-folder layout below.
- split folders: ``PATH/{train,val,test}/`` each holding a pair folder; gives predefined splits.
- a pair folder: ``PATH/images/`` and ``PATH/masks/`` matched by file stem. A mask stem may carry a
  suffix ``_mask``, ``-mask`` or ``_seg``, and image and mask may differ in extension.

Pairing is always by name, never by sorted order: any unmatched file is an error that lists them.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from polypseg.data.errors import DataError
from polypseg.data.io import IMAGE_EXTENSIONS

SPLITS = ("train", "val", "test")
MASK_SUFFIXES = ("_mask", "-mask", "_seg")
IGNORED_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}


@dataclass(frozen=True)
class Sample:
    """One image with its mask.

    Attributes:
        id: unique key across all sources, ``"<source>/<stem>"``.
        image: path of the image file.
        mask: path of the mask file.
        source: short name of the data set it came from (the folder name).
        split: predefined split ("train", "val", "test") or None when the source has none.
        group: patient / video / centre id (frames of one group never straddle splits), or None.
    """

    id: str
    image: Path
    mask: Path
    source: str
    split: str | None = None
    group: str | None = None


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


def pair_folder(image_dir: Path, mask_dir: Path, source: str, split: str | None = None) -> list[Sample]:
    """Pair ``image_dir`` and ``mask_dir`` by stem (mask suffixes allowed).

    Raises:
        DataError: listing every image without a mask, mask without an image, and duplicate stems.
    """
    images: dict[str, Path] = {}
    masks: dict[str, Path] = {}
    problems: list[str] = []
    for p in _list_images(image_dir):
        if p.stem in images:
            problems.append(f"two images share the stem {p.stem!r}: {images[p.stem].name}, {p.name}")
        images[p.stem] = p
    for p in _list_images(mask_dir):
        key = _mask_key(p.stem) if _mask_key(p.stem) in images else p.stem
        if key in masks:
            problems.append(f"two masks match the image stem {key!r}: {masks[key].name}, {p.name}")
        masks[key] = p
    for stem in sorted(set(images) - set(masks)):
        problems.append(f"image without mask: {images[stem]}")
    for stem in sorted(set(masks) - set(images)):
        problems.append(f"mask without image: {masks[stem]}")
    if problems:
        raise DataError(
            f"{image_dir.parent}: images and masks do not pair up by file name "
            f"(add the missing files or remove the extra ones)",
            problems,
        )
    if not images:
        raise DataError(f"{image_dir}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found")
    return [
        Sample(id=f"{source}/{stem}", image=images[stem], mask=masks[stem], source=source, split=split)
        for stem in sorted(images)
    ]


def _is_pair_folder(path: Path) -> bool:
    return (path / "images").is_dir() and (path / "masks").is_dir()


def _split_folders(path: Path) -> list[Sample] | None:
    present = [s for s in SPLITS if _is_pair_folder(path / s)]
    if not present:
        return None
    out: list[Sample] = []
    for split in present:
        out += pair_folder(path / split / "images", path / split / "masks", path.name, split)
    return out


def _plain_pairs(path: Path) -> list[Sample] | None:
    if not _is_pair_folder(path):
        return None
    return pair_folder(path / "images", path / "masks", path.name)


LAYOUTS: dict[str, Callable[[Path], list[Sample] | None]] = {
    "split-folders": _split_folders,
    "pairs": _plain_pairs,
}


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


def discover(path: str | Path, layout: str | None = None) -> list[Sample]:
    """Read one ``--data`` argument into samples (see the module docstring for layouts).

    Raises:
        DataError: unknown path or layout, or files that do not pair up.
    """
    spec = str(path)
    if spec == "synthetic" or spec.startswith("synthetic:"):
        from polypseg.data.synthetic import ensure_synthetic

        return discover(ensure_synthetic(**parse_synthetic_spec(spec)))
    root = Path(path)
    if not root.exists():
        raise DataError(f"data path {root} does not exist")
    if layout is not None:
        if layout not in LAYOUTS:
            raise DataError(f"unknown layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")
        found = LAYOUTS[layout](root)
        if found is None:
            raise DataError(f"{root} does not look like the {layout!r} layout")
        return found
    for finder in LAYOUTS.values():
        found = finder(root)
        if found is not None:
            return found
    raise DataError(
        f"{root}: no known data layout. Expected images/ and masks/ folders (matched by file name), "
        "or train/ val/ test/ subfolders each holding them."
    )


def discover_all(paths: Sequence[str | Path], layout: str | None = None) -> list[Sample]:
    """Concatenate the samples of several sources; ids must stay unique."""
    samples: list[Sample] = []
    for p in paths:
        samples += discover(p, layout)
    seen: dict[str, Sample] = {}
    dup = []
    for s in samples:
        if s.id in seen:
            dup.append(f"{s.id}: {seen[s.id].image} and {s.image}")
        seen[s.id] = s
    if dup:
        raise DataError("two sources give the same sample ids (rename one source folder)", dup)
    return samples
