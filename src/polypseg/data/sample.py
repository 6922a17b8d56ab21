"""One image-mask pair as the rest of polypseg sees it, and the names of the splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "val", "test")


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
