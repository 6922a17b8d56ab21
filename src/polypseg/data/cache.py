"""Decode-once cache: every image and mask resized to the training size, stored as ``uint8`` arrays.

Arrays live in ``<cache root>/arrays/<key>/{images,masks}.npy`` and are opened memory-mapped, so data
loader workers share them. The key is a hash of the training size, the sample ids and each file's
bytes: changing, adding or removing a file gives a new key (a rebuild), while a copy of the same data
(new modification times, another folder) finds its arrays again. A build writes into a temporary
folder and renames it, so two processes building at once are safe. It holds at most one NPZ file's
decoded arrays (:func:`~polypseg.data.sources.npz_array`, let go when the build ends) and writes each
resized row straight to the files, so the arrays it writes never sit in memory.

Keys of changed data are never reused, so the cache only grows: :func:`list_cache` shows each entry with its size
and when a run last used it, :func:`clear_cache` removes entries (all, or those unused for some days)
and the leftovers of interrupted builds, but never a build whose process still runs
(``polypseg data cache [--clear] [--older-than DAYS]``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from polypseg.data.errors import DataError
from polypseg.data.sample import Sample
from polypseg.data.sources import read_sample, release_npz_arrays
from polypseg.errors import DiskFullError
from polypseg.paths import cache_root
from polypseg.preprocess import resize_pair


@dataclass
class CachedArrays:
    """Resized data: ``images`` uint8 (N, S, S, 3) RGB, ``masks`` uint8 (N, S, S) in {0, 1}."""

    images: np.ndarray
    masks: np.ndarray
    ids: list[str]


def _fingerprint(samples: Sequence[Sample], size: int, content: bool) -> str:
    """Hash of the size, the sample ids and each file's path, size and mtime (``content=False``: quick,
    read from the file system) or each file's size and bytes (``content=True``: survives a copy)."""
    h = hashlib.sha1(f"v3 size={size} content={content}".encode())
    seen: dict[Path, str] = {}
    for s in samples:
        h.update(f"{s.id}|{s.index}|{s.foreground_labels}\n".encode())
        for p in (s.image, s.mask):
            if p not in seen:
                st = os.stat(p)
                if content:
                    seen[p] = f"{st.st_size}|{_file_digest(Path(p))}\n"
                else:
                    seen[p] = f"{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns}\n"
            h.update(seen[p].encode())
    return h.hexdigest()[:16]


def _file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """32-hex-digit BLAKE2b digest of the file's bytes, read ``chunk`` bytes at a time (not all at once)."""
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _entry_folder(samples: Sequence[Sample], size: int, root: Path) -> Path:
    """The cache folder for ``samples`` at ``size``, keyed by file content.

    Reading every file costs about 5 ms per MB, so a small alias file ``<root>/stat/<quick key>`` remembers
    the content key of files whose path, size and mtime are unchanged. A copied or re-checked-out data
    set (new mtimes, same bytes) misses the alias, is read once, and finds its arrays again.
    """
    alias = root / "stat" / _fingerprint(samples, size, content=False)
    if alias.exists():
        folder = root / "arrays" / alias.read_text().strip()
        if (folder / "done.json").exists():
            return folder
    key = _fingerprint(samples, size, content=True)
    alias.parent.mkdir(parents=True, exist_ok=True)
    tmp = alias.with_name(f"{alias.name}.{os.getpid()}.tmp")
    tmp.write_text(key)
    os.replace(tmp, alias)
    return root / "arrays" / key


#: A build in progress names its process here (``{"pid": ..., "host": ...}``); removed when it is done.
OWNER = "owner.json"


def build_cache(samples: Sequence[Sample], size: int, root: Path | None = None) -> CachedArrays:
    """Return the cached arrays for ``samples`` at ``size``, building them if needed.

    Raises:
        DataError: listing every pair that could not be read (all are tried before raising).
    """
    folder = _entry_folder(samples, size, root or cache_root())
    root = folder.parent
    ids = [s.id for s in samples]
    if (folder / "done.json").exists():
        _touch(folder / "done.json")
    else:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="build-", dir=root))
        try:
            (tmp / OWNER).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
            try:
                _write_arrays(samples, size, tmp)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                raise DiskFullError(
                    f"no space left on the disk of {root} while writing the training cache; free space there or "
                    "point POLYPSEG_CACHE at a larger disk (the partial entry was removed)"
                ) from None
            finally:
                release_npz_arrays()  # the decoded sources are not needed once their rows are written
            (tmp / "done.json").write_text(json.dumps({"size": size, "ids": ids}))
            (tmp / OWNER).unlink()
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


def _open_npy(path: Path, shape: tuple[int, ...]) -> BinaryIO:
    """``path`` opened for writing, holding the ``.npy`` header of a C-order uint8 array of ``shape``; the
    caller writes the ``prod(shape)`` bytes of the array after it."""
    fh = path.open("wb")
    np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return fh


def _write_arrays(samples: Sequence[Sample], size: int, folder: Path) -> None:
    """Write ``folder/images.npy`` (N, size, size, 3) and ``folder/masks.npy`` (N, size, size), uint8, one
    resized row after the other (rows are written to the files, not held in memory).

    Raises:
        DataError: listing every pair that could not be read (all are tried before raising).
    """
    n = len(samples)
    problems = []
    with (
        _open_npy(folder / "images.npy", (n, size, size, 3)) as fi,
        _open_npy(folder / "masks.npy", (n, size, size)) as fm,
    ):
        for s in samples:
            try:
                image, mask = read_sample(s)
            except DataError as exc:
                problems.append(str(exc))
                continue
            if not problems:  # after a failure only the reading goes on, to report every bad pair
                image, mask = resize_pair(image, mask, size)
                fi.write(np.asarray(image, np.uint8).reshape(size, size, 3).tobytes())  # C order, as the header says
                fm.write(np.asarray(mask, np.uint8).reshape(size, size).tobytes())
        if not problems:  # on disk before done.json says the entry is complete (as the memmap's flush did)
            for fh in (fi, fm):
                fh.flush()
                os.fsync(fh.fileno())
    if problems:
        raise DataError(f"{len(problems)} of {n} pairs could not be read", problems)


def _touch(path: Path) -> None:
    """Mark a cache entry as used now (its ``done.json`` mtime); a read-only cache is left as it is."""
    with contextlib.suppress(OSError):
        os.utime(path)


@dataclass
class CacheEntry:
    """One cache folder: ``size`` px (0 and ``complete=False`` for an unfinished build), ``n_pairs``
    pairs, ``n_bytes`` on disk, ``last_used`` as a Unix time (seconds). ``building``: an unfinished
    build whose process still runs (else it was interrupted; see :func:`_owner_alive`)."""

    path: Path
    size: int
    n_pairs: int
    n_bytes: int
    last_used: float
    complete: bool
    building: bool = False


#: A build on another host counts as running while it wrote something within this many seconds.
OTHER_HOST_QUIET_S = 3600


def _owner_alive(folder: Path, last_write: float) -> bool:
    """Whether the process that started the unfinished build in ``folder`` still runs.

    On this machine the owner's pid is checked. A build started on another host (a shared cache
    folder) cannot be checked from here: it counts as running while it wrote a file (``last_write``,
    Unix seconds) within :data:`OTHER_HOST_QUIET_S`; a build takes minutes, so an older one is dead.
    """
    try:
        owner = json.loads((folder / OWNER).read_text())
        pid, host = int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return False  # no owner file: a build from before owner files, or one that died writing it
    if host != socket.gethostname():
        return time.time() - last_write < OTHER_HOST_QUIET_S
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the process exists, under another user
        pass
    return True


def list_cache(root: Path | None = None) -> list[CacheEntry]:
    """Every entry under ``<root>/arrays`` (default :func:`cache_root`), least recently used first."""
    arrays = (root or cache_root()) / "arrays"
    entries = []
    for folder in sorted(arrays.iterdir()) if arrays.is_dir() else []:
        if not folder.is_dir():
            continue
        files = [f for f in folder.rglob("*") if f.is_file()]
        n_bytes = sum(f.stat().st_size for f in files)
        done = folder / "done.json"
        if done.exists():
            meta = json.loads(done.read_text())
            entries.append(CacheEntry(folder, int(meta["size"]), len(meta["ids"]), n_bytes, done.stat().st_mtime, True))
        else:
            last = max([f.stat().st_mtime for f in files], default=folder.stat().st_mtime)
            entries.append(CacheEntry(folder, 0, 0, n_bytes, last, False, building=_owner_alive(folder, last)))
    return sorted(entries, key=lambda e: e.last_used)


def clear_cache(
    root: Path | None = None, older_than_days: float | None = None, now: float | None = None
) -> list[CacheEntry]:
    """Remove cache entries; returns those removed.

    Args:
        older_than_days: remove only entries last used more than this many days ago (``None``: all).
            An interrupted build is removed only when it is as old as that too (or, with ``None``,
            always). A build whose process is still running (``CacheEntry.building``) is never removed.
        now: the current Unix time (tests); default ``time.time()``.
    """
    now = time.time() if now is None else now
    removed = []
    for e in list_cache(root):
        if e.building or (older_than_days is not None and now - e.last_used <= older_than_days * 86400):
            continue
        shutil.rmtree(e.path, ignore_errors=True)
        removed.append(e)
    if older_than_days is None:  # the aliases (path/mtime key -> content key) go too
        shutil.rmtree((root or cache_root()) / "stat", ignore_errors=True)
    return removed
