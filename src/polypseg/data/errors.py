"""Errors raised for bad input data. Each names the files involved and says how to fix them."""

from __future__ import annotations

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
