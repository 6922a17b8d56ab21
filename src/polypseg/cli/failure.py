"""The one error path of the command line: every exception a command raises ends here.

A :class:`~polypseg.errors.PolypsegError` (and an OS error about a path the user named) prints its
message and exits with its code, without a traceback; any other exception is unexpected: its traceback
goes to a log file whose path the message gives, and the exit code is 1. ``polypseg --debug ...`` or
``POLYPSEG_DEBUG=1`` re-raises instead, so the full traceback is printed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from polypseg.errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_SIGINT, PolypsegError, RunInterruptedError
from polypseg.paths import cache_root

#: ``typer.Context.meta`` key set by ``polypseg --debug``.
DEBUG_KEY = "polypseg.debug"

#: OS errors about a path the user gave: bad input (exit 2), reported with the path.
_PATH_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)

err_console = Console(stderr=True)


def debug_requested(ctx: typer.Context | None = None) -> bool:
    """``--debug`` was given, or ``POLYPSEG_DEBUG`` is set to something other than ``0`` or empty."""
    if ctx is not None and ctx.meta.get(DEBUG_KEY):
        return True
    return os.environ.get("POLYPSEG_DEBUG", "") not in ("", "0")


def _path_message(exc: OSError) -> str:
    text = str(exc)
    if exc.filename is not None and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}"
    hints = {
        FileNotFoundError: "check the path",
        PermissionError: "check the file's permissions, or choose a folder you can write to",
        FileExistsError: "choose another name, or remove it",
        IsADirectoryError: "give a file, not a folder",
        NotADirectoryError: "give a folder, not a file",
    }
    hint = next((h for kind, h in hints.items() if isinstance(exc, kind)), "")
    return f"{text}; {hint}" if hint else text


def write_traceback_log(exc: BaseException) -> Path | None:
    """Write the command line and ``exc``'s traceback to ``<cache root>/logs/`` (else the temp folder).

    Returns:
        The log file, or None when no folder could be written.
    """
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    text = "command: " + " ".join(sys.argv) + "\n\n" + "".join(traceback.format_exception(exc))

    candidates = []
    with contextlib.suppress(RuntimeError):  # no home folder (an arbitrary uid in a container)
        candidates.append(cache_root() / "logs")
    candidates.append(Path(tempfile.gettempdir()) / "polypseg-logs")
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"error-{stamp}-{os.getpid()}.log"
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return None


def classify(exc: BaseException) -> tuple[int, str, bool]:
    """The exit code, the message, and whether ``exc`` is unexpected (a bug, worth a traceback log)."""
    if isinstance(exc, PolypsegError):
        return exc.exit_code, str(exc), False
    if isinstance(exc, _PATH_ERRORS):
        return EXIT_BAD_INPUT, _path_message(exc), False
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" while writing {exc.filename}" if exc.filename else ""
        return EXIT_FAILURE, f"no space left on the device{where}; free some space and run the command again", False
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":  # torch.cuda's is a RuntimeError
        return EXIT_FAILURE, "out of memory; use a smaller --batch-size or image size, or fewer workers", False
    return EXIT_FAILURE, f"{type(exc).__name__}: {exc}", True


def report_failure(exc: BaseException) -> int:
    """Print ``exc`` the way the user should see it and return the exit code."""
    code, message, unexpected = classify(exc)
    err_console.print(
        "[bold yellow]stopped:[/] " if isinstance(exc, RunInterruptedError) else "[bold red]error:[/] ", end=""
    )
    err_console.print(message, markup=False, soft_wrap=True, highlight=False)
    if unexpected:
        log = write_traceback_log(exc)
        where = f"the traceback is in {log}" if log else "no log folder could be written"
        err_console.print(
            f"this is an unexpected error (a bug in polypseg, or a case it does not handle yet); {where}; "
            "rerun with 'polypseg --debug ...' to print it, and please report it",
            markup=False, soft_wrap=True, highlight=False,
        )  # fmt: skip
    return code


class PolypsegGroup(TyperGroup):
    """Typer's command group with the one error path around every command it invokes."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):  # usage errors: Typer prints them, exit 2
            raise
        except KeyboardInterrupt:
            if debug_requested(ctx):
                raise
            err_console.print(
                "[bold yellow]stopped:[/] interrupted (Ctrl-C); files are written atomically, so none is "
                "half-written; run the command again (a training run: 'polypseg train --resume')"
            )
            raise typer.Exit(code=EXIT_SIGINT) from None
        except Exception as exc:
            if debug_requested(ctx) or isinstance(exc, BrokenPipeError):
                raise  # a closed pipe (polypseg ... | head): Typer's own handling, not an error of ours
            raise typer.Exit(code=report_failure(exc)) from None
