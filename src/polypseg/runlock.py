"""One writer per run folder: ``RUN/.lock``, held with an exclusive ``flock`` by the ``train`` writing it.

A second ``train`` into the same folder (new or ``--resume``) refuses while the lock is held, instead of
interleaving two runs' checkpoints and metrics; the file names the holder's pid, host and start time for
the message. The kernel releases the lock when its process dies (a crash, SIGKILL, a container restart),
so a lock can never outlive its run and a reused pid cannot fake one; the next ``train`` takes it over
with a note naming the previous holder. On a network file system without lock support the lock cannot
be relied on (docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

from polypseg.errors import InputError

LOCK_NAME = ".lock"


class RunLockedError(InputError):
    """The run folder is being written by another live process (exit code 2)."""


def _record(fd: int) -> dict:
    """The holder's record in the open lock file, or {} when it is empty or unreadable."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = json.loads(os.read(fd, 4096) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _acquire(path: Path) -> tuple[int, dict]:
    """Open and ``flock`` ``path`` (created if needed); returns the descriptor and the previous record.

    Raises:
        RunLockedError: another process holds the lock.
    """
    for _ in range(5):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = _record(fd)
            os.close(fd)
            raise RunLockedError(
                f"{path.parent} is being written by another polypseg process (pid {held.get('pid', '?')} on "
                f"{held.get('host', '?')}, since {held.get('since', '?')}): two runs in one folder would mix their "
                "checkpoints. Wait for it to finish or stop it, or train into another --out"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file its previous holder removed between our open and our flock
            return fd, _record(fd)
        os.close(fd)
    raise RunLockedError(f"could not take the lock {path}: other processes keep replacing it")


@contextlib.contextmanager
def run_lock(run_dir: Path, note: Callable[[str], None] = print) -> Iterator[Path]:
    """Hold ``run_dir/.lock`` for the duration of the block (the folder is created if needed).

    Raises:
        RunLockedError: another process holds it.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd, previous = _acquire(path)
    try:
        if previous.get("pid") is not None:
            who = f"pid {previous.get('pid')} on {previous.get('host')}, since {previous.get('since')}"
            note(f"note: taking over the lock of a polypseg process that no longer runs ({who}): it stopped early")
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        os.fsync(fd)
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still holding it: a waiting process sees the file gone and retries
        os.close(fd)
