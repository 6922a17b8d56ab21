"""Which images an evaluation or a threshold tuning scores, decided by image content, never by name.

- Data the run never saw (no image in common with the run's training and validation images) is an
  **external** test set: scored whole by default (``--split`` may pick one of its own predefined splits).
- The run's **own** data (every image among the run's images): the run's ``split.json`` decides.
- Data **partly** the run's training / validation images and partly not: an error that says how many
  images are shared and what to do.
- Tuning only ever uses the run's validation images.

The run's images are known by the content fingerprints that ``split.json`` holds (written by
``polypseg train``); for run folders made before fingerprints existed they are computed from the run's
own data (``config.yaml``) when those files still exist. A model without a run folder (a loose
checkpoint or an ``.onnx`` file whose source run is gone) cannot be checked: its data is scored whole
and the summary says that overlap was not checked.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from polypseg.data.errors import DataError
from polypseg.data.fingerprint import fingerprints
from polypseg.data.sample import SPLITS, Sample
from polypseg.data.sources import discover_all
from polypseg.data.split import load_split
from polypseg.errors import InputError
from polypseg.paths import RunPaths


@dataclass
class Selection:
    """The chosen samples and where the choice came from (``kind``: ``run-split``, ``external``,
    ``external-split`` or ``unchecked``), with a sentence for ``summary.json`` and the report."""

    samples: list[Sample]
    kind: str
    note: str

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "note": self.note, "n_images": len(self.samples)}


@dataclass
class RunImages:
    """The run's images: each id's split and fingerprint, and each split's fingerprints."""

    split_of: dict[str, str]  # sample id -> "train" / "val" / "test"
    print_of: dict[str, str]  # sample id -> fingerprint
    prints: dict[str, set[str]]  # split -> fingerprints

    def split_for(self, sample: Sample, fingerprint: str) -> str | None:
        """The run split an image belongs to: by its id when the id is the run's with the same content, else by
        content, a training or validation copy first (a duplicate of a training image is never test)."""
        if self.print_of.get(sample.id) == fingerprint:
            return self.split_of[sample.id]
        return next((k for k in ("train", "val", "test") if fingerprint in self.prints.get(k, ())), None)


def run_fingerprints(run_dir: Path) -> RunImages:
    """The run's images (:class:`RunImages`), from ``split.json`` (or, for an older run folder, computed from
    the run's data named in ``config.yaml``).

    Raises:
        DataError: an older run folder whose data cannot be read any more.
    """
    run = RunPaths(run_dir)
    meta = json.loads(run.split.read_text())
    splits: dict[str, list[str]] = meta["splits"]
    prints: dict[str, str] | None = meta.get("fingerprints")
    if prints is None:
        frozen = yaml.safe_load(run.config.read_text())
        try:
            samples = discover_all(frozen["data"], frozen.get("layout"))
            splits = load_split(run.split, samples)  # the run's data must still be what it was; ids as read now
        except DataError as exc:
            raise DataError(
                f"{run.split} has no image fingerprints (a run folder from before polypseg 0.2) and the run's "
                "data cannot be read to compute them, so overlap with its training images cannot be checked",
                [str(exc).splitlines()[0]],
            ) from None
        prints = fingerprints(samples)
    split_of = {i: k for k, ids in splits.items() for i in ids if i in prints}
    by_split = {k: {prints[i] for i in ids if i in prints} for k, ids in splits.items()}
    return RunImages(split_of, {i: prints[i] for i in split_of}, by_split)


def _with_prints(samples: Sequence[Sample]) -> list[tuple[str, Sample]]:
    """``(fingerprint, sample)`` per sample, in order (duplicate images stay, each as itself)."""
    return list(zip(fingerprints(samples).values(), samples, strict=True))


def select_samples(samples: Sequence[Sample], split: str | None, run_dir: Path | None) -> Selection:
    """Choose what to score (see the module docstring).

    Args:
        samples: the data given (``--data``, or the run's own).
        split: ``train``, ``val``, ``test``, ``all``, or None: the run's ``test`` split for the run's own
            data, the whole set for external data.
        run_dir: the run folder of the model, or None for a model without one.

    Raises:
        DataError: data partly the run's (with the count of shared images and what to do), a split that
            is empty, or a split asked of external data that has no such predefined split.
    """
    if split is not None and split not in (*SPLITS, "all"):
        raise InputError(f"split must be train, val, test or all, got {split!r}")
    if run_dir is None or not RunPaths(run_dir).split.exists():
        return _external(samples, split, "unchecked", "the model has no run folder, so overlap with its "
                         "training images was not checked")  # fmt: skip
    run = run_fingerprints(run_dir)
    given = [(run.split_for(s, fp), s) for fp, s in _with_prints(samples)]
    shared = [s for k, s in given if k in ("train", "val")]
    own = [s for k, s in given if k is not None]
    if not shared:
        kind = "external"
        note = "shares no image with the run's training and validation images"
        if own:
            note += f" ({len(own)} of its {len(given)} images are the run's own test images)"
        return _external(samples, split, kind, note)
    if len(own) < len(given):
        raise DataError(
            f"{len(shared)} of the {len(given)} images given are among the run's training and validation images "
            f"and {len(given) - len(own)} are not the run's at all: such a mix scores neither the run's test "
            "split nor an external set. Evaluate the run's own data (omit --data, or give exactly its data) or "
            "an external set that shares no image with its training and validation images"
        )
    chosen_split = split or "test"
    if chosen_split == "all":
        return Selection(list(samples), "run-split", f"the run's own data, all {len(samples)} images")
    out = [s for k, s in given if k == chosen_split]
    if not out:
        raise DataError(f"the run's {chosen_split!r} split holds none of these images; choose another --split")
    out.sort(key=lambda s: s.id)
    return Selection(out, "run-split", f"the run's {chosen_split!r} split from {RunPaths(run_dir).split}")


def _external(samples: Sequence[Sample], split: str | None, kind: str, note: str) -> Selection:
    """An external set: whole, or one of its own predefined splits when ``split`` names one."""
    if split in (None, "all"):
        return Selection(list(samples), kind, f"external data, scored whole: {note}")
    out = [s for s in samples if s.split == split]
    if not out:
        raise DataError(
            f"--split {split}: this external data has no predefined {split!r} split (no {split}/ folder or "
            f"{split}_images array) and polypseg never cuts a new split of it; omit --split to score it whole"
        )
    return Selection(out, "external-split", f"the data's own predefined {split!r} split: {note}")


def validation_samples(samples: Sequence[Sample], run_dir: Path | None) -> Selection:
    """The run's validation images among ``samples``, for threshold tuning (never any other image).

    Raises:
        DataError: no run folder, or none of the run's validation images are in the data.
    """
    if run_dir is None or not RunPaths(run_dir).split.exists():
        raise DataError(
            "threshold tuning needs the run folder's split.json (the run's validation images): give the run "
            "folder or a checkpoint inside it"
        )
    run = run_fingerprints(run_dir)
    val = run.prints.get("val", set())
    out = sorted((s for fp, s in _with_prints(samples) if run.split_for(s, fp) == "val"), key=lambda s: s.id)
    if not out:
        raise DataError(
            f"none of the run's {len(val)} validation images are in the data given: tune on the run's own data "
            "(omit --data); a threshold is never tuned on other images"
        )
    note = f"the run's validation images ({len(out)} of {len(val)} found in the data)"
    return Selection(out, "run-split", note)


def default_data(data: Sequence[str] | None, run_dir: Path | None) -> Sequence[str]:
    """``data`` if given, else the run's own data sources from its ``config.yaml``.

    Raises:
        ValueError: no data given and no run folder to take them from.
    """
    if data:
        return data
    if run_dir is None:
        raise InputError("give --data: the checkpoint is not inside a run folder that names its data")
    return yaml.safe_load(RunPaths(run_dir).config.read_text())["data"]


def default_layout(data: Sequence[str] | None, layout: str | None, run_dir: Path | None) -> str | None:
    """``layout`` if given; else, when the run's own data is used (no ``data``), the layout it was trained with."""
    if layout is not None or data or run_dir is None:
        return layout
    return yaml.safe_load(RunPaths(run_dir).config.read_text()).get("layout")
