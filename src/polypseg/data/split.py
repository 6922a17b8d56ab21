"""Seeded, group-aware train / val / test splits, written to and reused from ``split.json``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from polypseg.data.errors import DataError
from polypseg.data.sources import SPLITS, Sample


def make_split(
    samples: Sequence[Sample], val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0
) -> dict[str, list[str]]:
    """Assign every sample to train, val or test.

    Samples with a predefined ``split`` keep it. When no sample has one, groups (``Sample.group``, or
    the sample itself when None) are shuffled with ``seed`` and cut by the fractions, so a group never
    straddles splits. When some sources are predefined and others not, the others are split alone.

    Returns ``{"train": [ids], "val": [ids], "test": [ids]}`` with ids in a stable order.
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(f"bad split fractions val={val_fraction} test={test_fraction}")
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    free = []
    for s in samples:
        if s.split is not None:
            out[s.split].append(s.id)
        else:
            free.append(s)
    if free:
        groups: dict[str, list[str]] = {}
        for s in free:
            groups.setdefault(s.group if s.group is not None else s.id, []).append(s.id)
        keys = sorted(groups)
        order = np.random.default_rng(seed).permutation(len(keys))
        n = len(free)
        targets = {"test": round(test_fraction * n), "val": round(val_fraction * n)}
        filled = {"test": 0, "val": 0}
        for idx in order:
            members = groups[keys[idx]]
            dest = "train"
            for split in ("test", "val"):
                if filled[split] < targets[split]:
                    dest = split
                    filled[split] += len(members)
                    break
            out[dest] += members
    return {k: sorted(v) for k, v in out.items()}


def write_split(path: Path, split: dict[str, list[str]], meta: dict) -> None:
    """Write ``split.json`` (atomically)."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**meta, "splits": split}, indent=1))
    tmp.replace(path)


def load_split(path: Path, samples: Sequence[Sample]) -> dict[str, list[str]]:
    """Read ``split.json`` and check that every id in it is among ``samples`` and vice versa."""
    data = json.loads(Path(path).read_text())
    split = {k: list(v) for k, v in data["splits"].items()}
    known = {s.id for s in samples}
    listed = {i for ids in split.values() for i in ids}
    missing = sorted(listed - known)
    extra = sorted(known - listed)
    if missing or extra:
        raise DataError(
            f"{path} does not match the data: {len(missing)} ids in the split are not in the data and "
            f"{len(extra)} samples are in no split. Use the same --data as when the split was made, "
            "or start a new run folder.",
            [f"not in data: {i}" for i in missing[:20]] + [f"in no split: {i}" for i in extra[:20]],
        )
    return split
