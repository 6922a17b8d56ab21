"""What reading the input data found: errors (each names the files involved and says how to fix them)
and notes (what had to be done to a file to read it, counted by kind for the data report).

:func:`unreadable_file` turns a failure to open a file into a message that says what the file really
is (empty, a looping or dangling symbolic link, a saved HTML page, a text file) when that can be told.
"""

from __future__ import annotations

import errno
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from polypseg.errors import InputError


class DataError(InputError):
    """One or more problems with the input data.

    ``problems`` holds one line per problem, each naming the file it concerns; the message lists them.
    """

    def __init__(self, summary: str, problems: list[str] | None = None) -> None:
        self.summary = summary
        self.problems = list(problems or [])
        shown = self.problems[:50]
        lines = [summary, *(f"  - {p}" for p in shown)]
        if len(self.problems) > len(shown):
            lines.append(f"  ... and {len(self.problems) - len(shown)} more")
        super().__init__("\n".join(lines))


def note_kind(note: str) -> str:
    """The kind of a ``"<file>: <what was done>"`` note, the same for every file (what counts group by)."""
    text = note.split(": ", 1)[-1]
    if "normalised" in text:
        return "masks normalised by threshold"
    return text.split(" converted")[0] + " converted" if " converted" in text else text


@dataclass
class ReadNotes:
    """What had to be done to a file to read it (for the data report): one ``"<file>: <what>"`` line per
    file in ``converted``, and its kind (the same text for every file) in ``kinds``."""

    converted: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)

    def add(self, note: str, kind: str | None = None) -> None:
        self.converted.append(note)
        self.kinds.append(kind or note_kind(note))

    def counts(self) -> dict[str, int]:
        """Files per kind of note, in the order the kinds were first met: ``{"image mode RGBA converted": 3}``."""
        return dict(Counter(self.kinds))


def _head(path: Path, n: int = 512) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return sum(c.isprintable() or c.isspace() for c in text) >= 0.95 * len(text)


def unreadable_file(path: Path, what: str, exc: BaseException | None = None) -> DataError:
    """A :class:`DataError` for a ``what`` (e.g. "an image") at ``path`` that could not be opened.

    The message names the file, says what it is when that can be told (missing, empty, a symbolic link
    that loops or points nowhere, unreadable, an HTML page or plain text under an image name) and how to
    fix it; otherwise it quotes ``exc``.
    """
    fix = f"Remove it or replace it with {what}."
    if path.is_symlink():
        try:
            os.stat(path)
        except OSError as err:
            if err.errno == errno.ELOOP:
                return DataError(f"cannot read {path}: it is a symbolic link that loops back on itself. {fix}")
            target = os.readlink(path)
            return DataError(f"cannot read {path}: it is a symbolic link to {target}, which does not exist. {fix}")
    if isinstance(exc, FileNotFoundError) or not path.exists():
        return DataError(f"file not found: {path}. Check the path.")
    if isinstance(exc, PermissionError):
        return DataError(f"cannot read {path}: permission denied. Check the file's permissions.")
    if path.is_dir():
        return DataError(f"cannot read {path}: it is a folder, not a file. Give {what} file.")
    try:
        size = path.stat().st_size
    except OSError:
        size = -1
    if size == 0:
        return DataError(f"cannot read {path}: the file is empty (0 bytes). {fix}")
    head = _head(path)
    if head.lstrip()[:1] == b"<" and b"html" in head.lower():
        return DataError(
            f"cannot read {path}: it holds an HTML page, not {what} (a download that saved an error page?). {fix}"
        )
    if _looks_like_text(head):
        return DataError(f"cannot read {path}: it holds text, not {what}. {fix}")
    detail = f" ({exc})" if exc is not None and str(exc) else ""
    return DataError(f"cannot read {path}: not {what} file, or a damaged one{detail}. {fix}")
