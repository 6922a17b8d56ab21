"""``compare(a, b)``: is model B better than model A on the same images? Reads two ``per_image.csv``."""

from __future__ import annotations

import csv
from pathlib import Path

from polypseg.errors import InputError
from polypseg.evaluation.stats import PairedComparison, paired_comparison

METRICS = (
    "dice",
    "iou",
    "precision",
    "recall",
    "specificity",
    "accuracy",
    "s_measure",
    "weighted_f",
    "mean_e_measure",
    "mae",
)


def per_image_csv(path: str | Path, split: str = "test") -> Path:
    """The ``per_image.csv`` of a run folder (``RUN/eval/<split>/``), an evaluation folder, or the file.

    Raises:
        FileNotFoundError: naming the file looked for and the command that writes it.
    """
    p = Path(path)
    if p.is_file():
        return p
    for candidate in (p / "eval" / split / "per_image.csv", p / "per_image.csv"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no per-image scores for {p}: looked for {p / 'eval' / split / 'per_image.csv'} and "
        f"{p / 'per_image.csv'}; run `polypseg evaluate {p} --split {split}` first"
    )


def read_scores(path: Path, metric: str) -> dict[str, float]:
    """``{image id: score}`` from a ``per_image.csv``.

    Raises:
        ValueError: the file has no ``id`` or no ``metric`` column, or an id appears twice.
    """
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        if "id" not in cols or metric not in cols:
            raise InputError(f"{path} has no 'id' and '{metric}' columns (it has {', '.join(cols)})")
        scores: dict[str, float] = {}
        for row in reader:
            if row["id"] in scores:
                raise InputError(f"{path}: image {row['id']} appears twice")
            scores[row["id"]] = float(row[metric])
    return scores


def compare(a: str | Path, b: str | Path, split: str = "test", metric: str = "dice", seed: int = 0) -> PairedComparison:
    """Paired comparison of the per-image ``metric`` of B against A (see :func:`paired_comparison`).

    ``a`` and ``b``: run folders (their ``eval/<split>/``), evaluation folders or ``per_image.csv`` files.
    MAE is lower-is-better: its ``diff`` is still mean(B) - mean(A), so a negative diff favours B, and the
    win counts (``b_better``, ``a_better``) credit the model with the lower error.

    Raises:
        FileNotFoundError: an evaluation is missing (the message says which command writes it).
        ValueError: unknown metric, or the two evaluations did not score the same images.
    """
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")
    pa, pb = per_image_csv(a, split), per_image_csv(b, split)
    sa, sb = read_scores(pa, metric), read_scores(pb, metric)
    only_a, only_b = sorted(sa.keys() - sb.keys()), sorted(sb.keys() - sa.keys())
    if only_a or only_b:
        example = (only_a or only_b)[0]
        raise InputError(
            f"{pa} scores {len(sa)} images and {pb} {len(sb)}; {len(only_a)} only in the first, {len(only_b)} "
            f"only in the second (e.g. {example}): evaluate both on the same data and split"
        )
    ids = sorted(sa)
    return paired_comparison([sa[i] for i in ids], [sb[i] for i in ids], metric=metric, seed=seed)
