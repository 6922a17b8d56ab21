"""Atomic file writes: a temporary file in the same folder, flushed and fsynced, then renamed over the
target, so a crash or a full disk mid-write leaves the previous file intact and never a truncated one."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from polypseg.errors import DiskFullError

#: ``errno`` values that mean the device (or the user's quota) is full.
_FULL = (errno.ENOSPC, errno.EDQUOT)


def _umask() -> int:
    """The process's umask, read from ``/proc/self/status`` where Linux gives it (setting and restoring it,
    the portable way, would race with other threads creating files)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    """The permission bits an in-place write of ``path`` would leave: the existing file's own, or for a new
    file 0666 less the umask. Libraries that write by path may create private files (safetensors gives
    0600), which would make a shipped model or an export unreadable to anyone else."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


@contextlib.contextmanager
def _replacing(path: Path, tmp: Path) -> Iterator[None]:
    """Rename ``tmp`` over ``path`` when the block ends cleanly; remove ``tmp`` when it raises.

    Raises:
        DiskFullError: the device or quota filled up; the message names ``path`` and says it is intact.
    """
    try:
        yield
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno in _FULL and not isinstance(exc, DiskFullError):
            kept = f"the previous {path.name} is intact" if path.exists() else f"{path.name} was not written"
            raise DiskFullError(
                f"no space left on the device while writing {path}: {kept}; free some space and run "
                "the command again (a training run continues with 'polypseg train --resume')"
            ) from exc
        raise


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on a clean exit it is fsynced and renamed over
    ``path``, on an exception it is removed and ``path`` is left as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with _replacing(path, tmp), open(tmp, mode, **kwargs) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def atomic_write_bytes(path: str | Path, data: bytes | bytearray | memoryview) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_image(path: str | Path, image: Any) -> None:
    """Encode ``image`` (uint8 (H, W, 3) RGB or (H, W) grey) in the format ``path``'s suffix names (PNG,
    JPEG, ...) and write it atomically.

    Raises:
        ValueError: the image cannot be encoded in that format.
    """
    import cv2  # here, so that importing polypseg.atomic stays light
    import numpy as np

    arr = np.asarray(image)
    bgr = arr[..., ::-1] if arr.ndim == 3 else arr
    try:
        ok, encoded = cv2.imencode(Path(path).suffix or ".png", np.ascontiguousarray(bgr))
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f"could not encode a {arr.dtype} {arr.shape} image as {Path(path).suffix} for {path}")
    atomic_write_bytes(path, encoded.tobytes())


def atomic_save(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Atomically write a file that a library writes by path (``torch.save``, ``cv2.imwrite``, ...):
    ``writer(tmp)`` writes a temporary path beside ``path`` (same suffix), which is fsynced and renamed."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    with _replacing(path, tmp):
        writer(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
