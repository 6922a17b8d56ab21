"""Decode-once cache: every image and mask resized to the training size, stored as ``uint8`` arrays.

Arrays live in ``<cache root>/arrays/<key>/{images,masks}.npy`` and are opened memory-mapped, so data
loader workers share them. The key is a hash of the training size and each file's path, size and
modification time: changing, adding or removing a file gives a new key (a rebuild). A build writes
into a temporary folder and renames it, so two processes building at once are safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from polypseg.data.errors import DataError


def cache_root() -> Path:
    """``$POLYPSEG_CACHE`` if set, else ``~/.cache/polypseg``."""
    env = os.environ.get("POLYPSEG_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "polypseg"


@dataclass
class CachedArrays:
    """Resized data: ``images`` uint8 (N, S, S, 3) RGB, ``masks`` uint8 (N, S, S) in {0, 1}."""

    images: np.ndarray
    masks: np.ndarray
    ids: list[str]


def resize_pair(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize to ``size x size``: image with area averaging (bilinear when enlarging), mask nearest."""
    h, w = mask.shape
    interp = cv2.INTER_AREA if (h > size or w > size) else cv2.INTER_LINEAR
    image = cv2.resize(image, (size, size), interpolation=interp)
    mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
    return image, mask


def _fingerprint(samples: Sequence, size: int) -> str:
    h = hashlib.sha1(f"v2 size={size}".encode())
    stats: dict[Path, str] = {}
    for s in samples:
        h.update(f"{s.id}|{s.index}|{s.foreground_labels}\n".encode())
        for p in (s.image, s.mask):
            if p not in stats:
                st = os.stat(p)
                stats[p] = f"{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns}\n"
            h.update(stats[p].encode())
    return h.hexdigest()[:16]


def build_cache(samples: Sequence, size: int, root: Path | None = None) -> CachedArrays:
    """Return the cached arrays for ``samples`` at ``size``, building them if needed.

    Raises:
        DataError: listing every pair that could not be read (all are tried before raising).
    """
    from polypseg.data.sources import read_sample

    root = (root or cache_root()) / "arrays"
    folder = root / _fingerprint(samples, size)
    ids = [s.id for s in samples]
    if not (folder / "done.json").exists():
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="build-", dir=root))
        try:
            images = np.lib.format.open_memmap(tmp / "images.npy", "w+", np.uint8, (len(ids), size, size, 3))
            masks = np.lib.format.open_memmap(tmp / "masks.npy", "w+", np.uint8, (len(ids), size, size))
            problems = []
            for i, s in enumerate(samples):
                try:
                    image, mask = read_sample(s)
                except DataError as exc:
                    problems.append(str(exc))
                    continue
                images[i], masks[i] = resize_pair(image, mask, size)
            if problems:
                raise DataError(f"{len(problems)} of {len(ids)} pairs could not be read", problems)
            images.flush()
            masks.flush()
            del images, masks
            (tmp / "done.json").write_text(json.dumps({"size": size, "ids": ids}))
            try:
                os.replace(tmp, folder)
            except OSError:  # built concurrently by another process: keep theirs
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return CachedArrays(
        images=np.load(folder / "images.npy", mmap_mode="r"),
        masks=np.load(folder / "masks.npy", mmap_mode="r"),
        ids=ids,
    )
