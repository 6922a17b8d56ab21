"""SIGINT (Ctrl-C) and SIGTERM (a scheduler's pre-emption) during ``fit``: stop cleanly, keep every
finished epoch, and say how to resume.

While the training loop runs, a signal only raises a flag; the loop stops at the end of the current
batch, writes the current weights to ``checkpoints/interrupted.ckpt`` (for inspection, e.g. ``polypseg
evaluate RUN/checkpoints/interrupted.ckpt``) and raises :class:`~polypseg.errors.RunInterruptedError`
(exit code 128 + the signal number). ``--resume`` continues from ``last.ckpt``, the last finished epoch,
and repeats the interrupted epoch from its start, so the resumed run equals an uninterrupted one.
Before the loop starts (reading and caching data) and on a second signal, it stops at once: every file
polypseg writes is written atomically, so nothing half-written is left.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning.pytorch as pl

from polypseg.errors import RunInterruptedError
from polypseg.paths import RunPaths

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal(pl.Callback):
    """Installs SIGINT / SIGTERM handlers for a run (:meth:`install` / :meth:`restore`) and stops the
    training loop between batches when one arrives.

    Args:
        run_dir: the run folder (``interrupted.ckpt`` goes to its ``checkpoints/``).
        saved_epoch: returns the last epoch whose ``last.ckpt`` is written (-1: none yet).
    """

    def __init__(self, run_dir: Path, saved_epoch: Any) -> None:
        self.run = RunPaths(run_dir)
        self.saved_epoch = saved_epoch
        self.received: int | None = None
        self.phase = "before"  # "before" the loop, "loop" (a signal waits for a batch end), "after" it
        self._owner = os.getpid()  # forked data-loader workers inherit the handler: they ignore it
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Take over SIGINT and SIGTERM (main thread only; elsewhere Python allows no handlers)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in SIGNALS:
            previous = signal.signal(sig, self._handle)
            self._previous.setdefault(sig, previous)

    def restore(self) -> None:
        """Put back the handlers that were there before :meth:`install`."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._owner:
            return
        name = signal.Signals(signum).name
        if self.phase == "before":
            raise RunInterruptedError(
                f"stopped by {name} before the training loop ran an epoch: nothing was trained in this session; "
                f"continue with: {self._resume_hint()} (files already cached are reused)",
                signum,
            )
        if self.phase == "after" or self.received is not None:
            raise RunInterruptedError(
                f"stopped at once by {'a second ' if self.received is not None else ''}{name}: {self._kept()}; "
                f"continue with: {self._resume_hint()}",
                signum,
            )
        self.received = signum

    def _kept(self) -> str:
        done = int(self.saved_epoch()) + 1
        if done == 0:
            return "no epoch had finished, so there is nothing to resume"
        return f"the {done} finished epoch(s) are saved in {self.run.checkpoint('last')}"

    def _resume_hint(self) -> str:
        if int(self.saved_epoch()) < 0 and not self.run.checkpoint("last").exists():
            return "the same command again"
        return f"polypseg train --resume --out {self.run.root}"

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.install()  # again: Lightning put its own SIGTERM handler in place when fit started
        self.phase = "loop"

    def _check(self, trainer: pl.Trainer, batch_idx: int) -> None:
        # collective: every rank stops at the same batch when any rank got the signal (a no-op for one process)
        if not trainer.strategy.reduce_boolean_decision(self.received is not None, all=False):
            return
        signum, self.received = self.received or signal.SIGTERM, None
        epoch = trainer.current_epoch
        saved = ""
        if int(self.saved_epoch()) >= 0:
            from polypseg.training.recorder import save_checkpoint

            save_checkpoint(trainer, self.run.checkpoint("interrupted"))  # a second signal now stops at once
            saved = f"; the weights at the interruption are in {self.run.checkpoint('interrupted')}"
        self.phase = "after"
        raise RunInterruptedError(
            f"stopped by {signal.Signals(signum).name} in epoch {epoch} after batch {batch_idx + 1}: "
            f"{self._kept()}{saved}. Continue with: {self._resume_hint()}"
            + (f" (it repeats epoch {epoch} from its start, so the result equals an uninterrupted run)"
               if int(self.saved_epoch()) >= 0 else ""),
            signum,
        )  # fmt: skip

    def finished(self) -> None:
        """Called when ``fit`` has finished training: a signal that arrived after the last training batch (in
        the last validation) is answered now, before anything else (tuning) starts.

        Raises:
            RunInterruptedError: such a signal arrived; every epoch is saved.
        """
        self.phase = "after"
        if self.received is not None:
            name = signal.Signals(self.received).name
            self.received = None
            raise RunInterruptedError(
                f"{name} arrived as the last epoch ended: every epoch is saved ({self._kept()}); the threshold "
                f"was not tuned: run polypseg tune {self.run.root}",
                signal.SIGTERM if name == "SIGTERM" else signal.SIGINT,
            )

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:  # fmt: skip
        self._check(trainer, batch_idx - 1)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        self._check(trainer, batch_idx)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.phase = "after"
