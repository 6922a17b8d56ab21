"""Where polypseg keeps things: the decoded-data cache root and the layout of a run folder, in one place.

A run folder (one per training run)::

    config.yaml            the frozen, resolved recipe plus the data sources
    split.json             the split used (reused on resume, and by tune / evaluate on the run's data)
    env.json               library versions, hardware, command line (each --resume appended)
    metrics.csv            one row per epoch (:data:`METRIC_COLUMNS`)
    threshold.json         the validation threshold sweep and the chosen threshold
    threshold-tta.json     the same for flip-TTA probabilities (``polypseg tune --tta``)
    checkpoints/last.ckpt  full training state, written atomically after every epoch
    checkpoints/best.ckpt  the epoch with the highest validation Dice
    eval/<name>/           summary.json, per_image.csv, report.html, figures/ of one evaluation
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

#: Columns of ``metrics.csv``: validation at the training size (``evaluate`` scores at original size);
#: ``train_scale`` is the epoch's training-size factor (progressive resizing's phase; 1 without one; empty
#: with multi-scale training, whose factor changes batch by batch); ``seconds`` is the epoch's wall-clock
#: training + validation time.
METRIC_COLUMNS = (
    "epoch", "train_loss", "val_loss", "val_dice", "val_iou", "val_images", "train_scale", "lr", "seconds",
)  # fmt: skip


#: A file ``polypseg demo`` writes into its run folder: only a folder holding it is removed by a later demo.
DEMO_MARKER = ".polypseg-demo"


def cache_root() -> Path:
    """``$POLYPSEG_CACHE`` if set, else ``~/.cache/polypseg`` (decoded arrays, the synthetic set)."""
    env = os.environ.get("POLYPSEG_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "polypseg"


@dataclass(frozen=True)
class RunPaths:
    """The files of the run folder ``root`` (see the module docstring)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def split(self) -> Path:
        return self.root / "split.json"

    @property
    def env(self) -> Path:
        return self.root / "env.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def threshold(self) -> Path:
        return self.root / "threshold.json"

    @property
    def threshold_tta(self) -> Path:
        return self.root / "threshold-tta.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint(self, which: str = "best") -> Path:
        """``checkpoints/<which>.ckpt`` (``best`` or ``last``)."""
        return self.checkpoints / f"{which}.ckpt"

    def eval_dir(self, name: str) -> Path:
        """``eval/<name>``: one evaluation (a split of the run's data, or an external set's name)."""
        return self.root / "eval" / name


def read_metrics(run_dir: str | Path) -> list[dict[str, float]]:
    """The rows of a run's ``metrics.csv`` as floats (empty cells left out)."""
    with RunPaths(Path(run_dir)).metrics.open(newline="") as fh:
        return [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(fh)]
