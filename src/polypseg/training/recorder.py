"""The Lightning callback that fills the run folder after every validation: checkpoints and ``metrics.csv``."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from polypseg.atomic import atomic_open, atomic_save
from polypseg.paths import METRIC_COLUMNS, RunPaths


class RunRecorder(pl.Callback):
    """After every validation: ``last.ckpt`` (atomic), ``best.ckpt`` when val Dice improves, and a
    ``metrics.csv`` row. Its state (best score) is saved in checkpoints, so resume continues it."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.best = -1.0
        self.best_epoch = -1
        self.saved_epoch = -1  # last epoch whose checkpoint was written
        self._t0 = time.perf_counter()

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "saved_epoch": self.saved_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.saved_epoch = int(state["saved_epoch"])

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Rows after the checkpoint we resume from belong to epochs that will be trained again.
        if trainer.is_global_zero:
            _truncate_metrics(self.run_dir / "metrics.csv", self.saved_epoch + 1)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def _save(self, trainer: pl.Trainer, name: str) -> None:
        save_checkpoint(trainer, RunPaths(self.run_dir).checkpoint(name))
        if name == "last" and trainer.is_global_zero:
            # the weights of an interrupted epoch are outdated once a later epoch has finished
            RunPaths(self.run_dir).checkpoint("interrupted").unlink(missing_ok=True)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        rec = dict(pl_module.epoch_record)  # type: ignore[attr-defined]
        if not rec:
            return
        improved = rec["val_dice"] > self.best
        if improved:
            self.best, self.best_epoch = rec["val_dice"], int(rec["epoch"])
        self.saved_epoch = int(rec["epoch"])
        # last.ckpt is the commit point, written last: a crash before it leaves the previous epoch's state,
        # whose resume truncates this row and rewrites best.ckpt identically (the epoch is repeated exactly)
        if trainer.is_global_zero:
            if improved:
                # a new best checkpoint carries the recipe's threshold: a threshold tuned for the old one
                # no longer applies (``polypseg tune`` tunes the new one)
                RunPaths(self.run_dir).threshold.unlink(missing_ok=True)
                RunPaths(self.run_dir).threshold_tta.unlink(missing_ok=True)
            rec["seconds"] = time.perf_counter() - self._t0
            path = RunPaths(self.run_dir).metrics
            _write_metrics(path, [*_read_rows(path), rec])
        if improved:
            self._save(trainer, "best")
        self._save(trainer, "last")


def save_checkpoint(trainer: pl.Trainer, path: Path) -> None:
    """The trainer's full state (weights, optimiser, schedules, callbacks) to ``path``, atomically.

    Collective: every rank calls it (Lightning's barrier), rank 0 writes. A failed write (a full disk)
    leaves the previous file at ``path`` intact and raises :class:`~polypseg.errors.DiskFullError`.
    """
    if trainer.is_global_zero:
        atomic_save(path, lambda tmp: trainer.save_checkpoint(tmp, weights_only=False))
    else:
        trainer.save_checkpoint(path, weights_only=False)  # writes nothing on this rank


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite ``metrics.csv`` atomically with ``rows`` (a crash never leaves half a row)."""
    with atomic_open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for rec in rows:
            row = {k: rec.get(k, "") for k in METRIC_COLUMNS}
            row["epoch"] = int(float(rec["epoch"]))
            w.writerow(row)


def _truncate_metrics(path: Path, from_epoch: int) -> None:
    """Drop rows of epochs >= ``from_epoch`` (written before a crash that lost their checkpoint)."""
    if path.exists():
        _write_metrics(path, [r for r in _read_rows(path) if int(r["epoch"]) < from_epoch])
