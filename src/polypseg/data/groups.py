"""Patient / video / centre groups from file names or a CSV, so that a group never straddles splits."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import replace

from polypseg.data.errors import DataError
from polypseg.data.sample import Sample


def apply_groups(samples: Sequence[Sample], regex: str | None = None, csv_spec: str | None = None) -> list[Sample]:
    """Set ``Sample.group`` from the file stem by ``regex`` (its first group, else the whole match) or
    from a CSV given as ``FILE:COLUMN`` with a ``stem`` column. Samples the rule does not cover keep
    their own group (so they still never straddle splits with their group mates).

    Raises:
        DataError: an invalid regex or one that matches no sample, or an unreadable CSV / missing column.
    """
    out = list(samples)
    if regex:
        try:
            pattern = re.compile(regex)
        except re.error as exc:
            raise DataError(
                f"--group-regex {regex!r} is not a valid regular expression ({exc}); give e.g. '^(\\d+)_' to group "
                "files by the number before the first underscore"
            ) from None
        hits = 0
        for i, s in enumerate(out):
            m = pattern.search(s.id.rsplit("/", 1)[-1])
            if m:
                hits += 1
                out[i] = replace(s, group=m.group(1) if m.groups() else m.group(0))
        if hits == 0:
            raise DataError(f"group regex {regex!r} matches no file name; check it against e.g. {out[0].id!r}")
    if csv_spec:
        file, _, column = csv_spec.rpartition(":")
        if not file or not column:
            raise DataError(f"group CSV {csv_spec!r}: expected FILE:COLUMN")
        try:
            with open(file, newline="") as fh:
                rows = list(csv.DictReader(fh))
        except OSError as exc:
            raise DataError(f"cannot read group CSV {file}: {exc}") from None
        if not rows or "stem" not in rows[0] or column not in rows[0]:
            raise DataError(f"group CSV {file} needs the columns 'stem' and {column!r}")
        table = {r["stem"]: r[column] for r in rows}
        out = [replace(s, group=table.get(s.id.rsplit("/", 1)[-1], s.group)) for s in out]
    return out
