"""One writer per run folder: ``RUN/.lock`` holds the pid and host of the ``train`` writing it.

A second ``train`` into the same folder (new or ``--resume``) refuses while that process lives, instead
of interleaving two runs' checkpoints and metrics. A lock left by a process that no longer exists on
this host (a crash, SIGKILL) is taken over with a note; one from another host cannot be checked, so the
message says how to remove it when that run is known to be gone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

from polypseg.errors import InputError

LOCK_NAME = ".lock"


class RunLockedError(InputError):
    """The run folder is being written by another live process (exit code 2)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # unreadable or half-written by a crash: not a live holder's


def _try_create(path: Path, record: dict) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh)
        fh.flush()
        os.fsync(fh.fileno())
    return True


@contextlib.contextmanager
def run_lock(run_dir: Path, note: Callable[[str], None] = print) -> Iterator[Path]:
    """Hold ``run_dir/.lock`` for the duration of the block (the folder is created if needed).

    Raises:
        RunLockedError: another live process on this host, or any process on another host, holds it.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    host = socket.gethostname()
    record = {"pid": os.getpid(), "host": host, "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    for _ in range(3):
        if _try_create(path, record):
            break
        held = _holder(path)
        if held is not None and held.get("pid") == os.getpid() and held.get("host") == host:
            raise RunLockedError(f"{run_dir} is already being written by this process (a nested train?)")
        if held is not None and held.get("host") != host:
            raise RunLockedError(
                f"{run_dir} is locked by polypseg process {held.get('pid')} on host {held.get('host')} "
                f"(since {held.get('since')}); wait for that run to finish. If it is gone (the machine crashed), "
                f"remove {path} and run again"
            )
        if held is not None and _alive(int(held.get("pid", -1))):
            raise RunLockedError(
                f"{run_dir} is being written by another polypseg process (pid {held['pid']} on {host}, since "
                f"{held.get('since')}): two runs in one folder would mix their checkpoints. Wait for it to "
                "finish or stop it, or train into another --out"
            )
        note(f"note: taking over the lock of a polypseg process that no longer runs ({path}: {held})")
        path.unlink(missing_ok=True)
    else:
        raise RunLockedError(f"could not take the lock {path}: another process keeps taking it")
    try:
        yield path
    finally:
        if _holder(path) == record:
            path.unlink(missing_ok=True)
