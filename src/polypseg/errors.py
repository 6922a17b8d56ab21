"""The errors a user can act on, and the exit code each one ends the command line with.

Every failure the user can cause raises a :class:`PolypsegError` whose message says what went wrong,
which file or option, and how to fix it. The command line prints that message (no traceback) and exits
with the error's :attr:`~PolypsegError.exit_code`; anything else is an unexpected error (a bug): exit 1,
with the traceback written to a log file. The codes, documented in the README:

====  =====================================================================
0     success
1     a failure that is not the input's fault: a diverged run, a full disk, an unexpected error
2     bad input or usage: a missing or unreadable file, invalid data, a bad option or recipe
130   interrupted by SIGINT (Ctrl-C); the run saved a checkpoint and says how to resume
143   interrupted by SIGTERM (a scheduler's pre-emption); the same
====  =====================================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class PolypsegError(Exception):
    """An error whose message is meant for the user; the command line prints it without a traceback."""

    exit_code = EXIT_BAD_INPUT


class InputError(PolypsegError, ValueError):
    """Bad input or usage: a file, an option or a value the user gave (exit code 2)."""


class MissingExtraError(PolypsegError, ImportError):
    """A feature needs an optional dependency that is not installed; the message names the extra (exit 2)."""


class TrainingFailedError(PolypsegError, RuntimeError):
    """Training stopped for a reason other than bad input, e.g. a NaN loss (exit code 1)."""

    exit_code = EXIT_FAILURE


class DiskFullError(PolypsegError, OSError):
    """No space left while writing a file; the previous version of the file is intact (exit code 1)."""

    exit_code = EXIT_FAILURE


class RunInterruptedError(PolypsegError):
    """A run stopped by SIGINT or SIGTERM after saving its state; ``exit_code`` is 128 + the signal number."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signal_number
