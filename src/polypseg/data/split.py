"""Seeded, group-aware train / val / test splits, written to and reused from ``split.json``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from polypseg.atomic import atomic_write_text
from polypseg.data.errors import DataError
from polypseg.data.sample import SPLITS, Sample
from polypseg.errors import InputError


def _group_order(samples: Sequence[Sample], seed: int) -> list[list[str]]:
    """Groups of sample ids (``Sample.group``, or the sample alone) in a seeded random order."""
    groups: dict[str, list[str]] = {}
    for s in samples:
        groups.setdefault(s.group if s.group is not None else f"\0{s.id}", []).append(s.id)
    keys = sorted(groups)
    return [groups[keys[i]] for i in np.random.default_rng(seed).permutation(len(keys))]


def _take(samples: Sequence[Sample], fractions: dict[str, float], seed: int) -> dict[str, list[str]]:
    """Cut whole groups off a seeded order until each split in ``fractions`` reaches its share."""
    n = len(samples)
    targets = {k: round(f * n) for k, f in fractions.items()}
    filled = dict.fromkeys(fractions, 0)
    out: dict[str, list[str]] = {k: [] for k in (*fractions, "train")}
    for members in _group_order(samples, seed):
        dest = next((k for k in fractions if filled[k] < targets[k]), "train")
        if dest != "train":
            filled[dest] += len(members)
        out[dest] += members
    return out


def parse_fold(fold: str | None) -> tuple[int, int] | None:
    """``"2/5"`` -> ``(2, 5)`` (fold 2 of 5, counted from 1); None stays None."""
    if fold is None:
        return None
    try:
        k, n = (int(x) for x in str(fold).split("/"))
    except ValueError:
        raise InputError(f"fold must look like k/K (e.g. 1/5), got {fold!r}") from None
    if not (n >= 2 and 1 <= k <= n):
        raise InputError(f"fold {fold!r}: need K >= 2 and 1 <= k <= K")
    return k, n


def make_split(
    samples: Sequence[Sample],
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    fold: str | None = None,
) -> dict[str, list[str]]:
    """Assign every sample to train, val or test.

    - Samples with a predefined ``split`` keep it. The others are cut by the fractions.
    - Groups (``Sample.group``; each sample alone when None) are never split: the cut takes whole
      groups in a seeded random order, so the fractions are met approximately.
    - When no sample ends up in val, val is carved out of train with ``val_fraction``.
    - ``fold="k/K"``: K-fold cross-validation over train + val (test untouched): the groups are
      dealt into K folds of near-equal size, fold k is val and the rest train.

    Returns ``{"train": [ids], "val": [ids], "test": [ids]}`` with ids sorted.
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise InputError(f"bad split fractions val={val_fraction} test={test_fraction}")
    folds = parse_fold(fold)
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    free = [s for s in samples if s.split is None]
    for s in samples:
        if s.split is not None:
            out[s.split].append(s.id)
    if free:
        for k, v in _take(free, {"test": test_fraction, "val": val_fraction}, seed).items():
            out[k] += v
    by_id = {s.id: s for s in samples}
    if folds is not None:
        pool = [by_id[i] for i in out["train"] + out["val"]]
        k, n = folds
        bins: list[list[str]] = [[] for _ in range(n)]
        for members in sorted(_group_order(pool, seed), key=len, reverse=True):
            min(bins, key=len).extend(members)  # largest groups first, into the emptiest fold
        out["val"] = bins[k - 1]
        out["train"] = [i for j, b in enumerate(bins) if j != k - 1 for i in b]
    elif not out["val"] and out["train"] and val_fraction > 0:
        carved = _take([by_id[i] for i in out["train"]], {"val": val_fraction}, seed)
        out["train"], out["val"] = carved["train"], carved["val"]
    return {k: sorted(v) for k, v in out.items()}


def write_split(path: Path, split: dict[str, list[str]], meta: dict) -> None:
    """Write ``split.json`` (atomically): ``meta`` (seed, data, fingerprints) and ``splits``."""
    atomic_write_text(path, json.dumps({**meta, "splits": split}, indent=1))


def _legacy_ids(samples: Sequence[Sample]) -> dict[str, str]:
    """Old id ``"<source>/<stem>"`` -> id ``"<source>/<split>/<stem>"`` for split-folder samples.

    Split-folder ids carry the split since split folders may reuse a file name across splits; run
    folders made before keep ``split.json`` files with the old form. Old ids that two samples share
    (impossible in an old run, whose ids had to be unique) are left out.
    """
    out: dict[str, str] = {}
    shared: set[str] = set()
    for s in samples:
        head = f"{s.source}/{s.split}/"
        if s.index is None and s.split is not None and s.id.startswith(head):
            old = f"{s.source}/{s.id[len(head) :]}"
            if old in out:
                shared.add(old)
            out[old] = s.id
    return {k: v for k, v in out.items() if k not in shared}


def load_split(path: Path, samples: Sequence[Sample]) -> dict[str, list[str]]:
    """Read ``split.json`` and check that every id in it is among ``samples`` and vice versa.

    A ``split.json`` written before split-folder ids carried the split (``"<source>/<stem>"``) is read
    by mapping those ids to the current ones, when that makes it match the data.

    Returns ``{"train": [ids], "val": [ids], "test": [ids]}``.

    Raises:
        DataError: the file's ids and the samples differ (names the file and the first ids).
    """
    data = json.loads(Path(path).read_text())
    split = {k: list(v) for k, v in data["splits"].items()}
    known = {s.id for s in samples}
    listed = {i for ids in split.values() for i in ids}
    if listed != known:
        legacy = _legacy_ids(samples)
        mapped = {k: [legacy.get(i, i) for i in v] for k, v in split.items()}
        flat = [i for ids in mapped.values() for i in ids]
        if set(flat) == known and len(flat) == len(known):
            return mapped
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
