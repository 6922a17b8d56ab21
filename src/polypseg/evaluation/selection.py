"""Which images an evaluation or a threshold tuning scores: the run's own split, or a whole external set."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from polypseg.data.errors import DataError
from polypseg.data.sample import Sample
from polypseg.data.split import load_split, make_split


def select_samples(
    samples: Sequence[Sample], split: str, run_dir: Path | None, recipe: dict[str, Any] | None
) -> list[Sample]:
    """The samples of ``split`` ("train", "val", "test" or "all").

    A run's ``split.json`` decides when the data is the run's; otherwise predefined splits, else a
    seeded split with the recipe's fractions and seed (the same one training made).
    """
    if split == "all":
        return list(samples)
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val, test or all, got {split!r}")
    ids: list[str] | None = None
    if run_dir is not None and (run_dir / "split.json").exists():
        try:
            ids = load_split(run_dir / "split.json", samples)[split]
        except DataError:
            # other data than the run's: its own predefined (or seeded) split applies; say so
            warnings.warn(
                f"the data is not the data of {run_dir / 'split.json'}; using the data's own {split!r} split",
                stacklevel=2,
            )
            ids = None
    if ids is None:
        data = (recipe or {}).get("data", {})
        ids = make_split(
            samples,
            data.get("val_fraction", 0.15),
            data.get("test_fraction", 0.15),
            (recipe or {}).get("seed", 0),
        )[split]
    chosen = set(ids)
    out = [s for s in samples if s.id in chosen]
    if not out:
        raise DataError(f"the {split!r} split of this data is empty; choose another --split")
    return out


def default_data(data: Sequence[str] | None, run_dir: Path | None) -> Sequence[str]:
    if data:
        return data
    if run_dir is None:
        raise ValueError("give --data: the checkpoint is not inside a run folder that names its data")
    return yaml.safe_load((run_dir / "config.yaml").read_text())["data"]
