"""``polypseg data check``: read every pair once and report counts, sizes, mask coverage and problems."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from polypseg.data.errors import DataError
from polypseg.data.io import ReadNotes
from polypseg.data.sources import Sample, discover_all, read_sample


@dataclass
class DataReport:
    """What :func:`check_data` found. ``usable`` is True when there are pairs and no problems."""

    counts: dict[str, int] = field(default_factory=dict)  # "<source> <split>" -> pairs
    n_pairs: int = 0
    width_range: tuple[int, int] = (0, 0)
    height_range: tuple[int, int] = (0, 0)
    empty_masks: int = 0
    fg_fraction_mean: float = 0.0
    fg_fraction_range: tuple[float, float] = (0.0, 0.0)
    notes: list[str] = field(default_factory=list)
    note_counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.n_pairs > 0 and not self.problems


def check_data(
    paths: Sequence[str], layout: str | None = None, foreground_labels: Sequence[int] | None = None
) -> DataReport:
    """Discover and read every pair of ``paths``; collect every problem instead of stopping at the first."""
    report = DataReport()
    samples: list[Sample] = discover_all(paths, layout, report.problems, foreground_labels)
    notes = ReadNotes()
    widths, heights, fractions = [], [], []
    counts: Counter[str] = Counter()
    for s in samples:
        try:
            image, mask = read_sample(s, notes)
        except DataError as exc:
            report.problems.append(str(exc))
            continue
        counts[f"{s.source} {s.split or '(no split: seeded split at training)'}"] += 1
        heights.append(image.shape[0])
        widths.append(image.shape[1])
        fractions.append(float(mask.mean()))
    report.counts = dict(sorted(counts.items()))
    report.n_pairs = len(fractions)
    if fractions:
        report.width_range = (min(widths), max(widths))
        report.height_range = (min(heights), max(heights))
        report.empty_masks = sum(f == 0 for f in fractions)
        report.fg_fraction_mean = float(np.mean(fractions))
        report.fg_fraction_range = (min(fractions), max(fractions))
    report.notes = notes.converted
    report.note_counts = notes.counts()
    return report
