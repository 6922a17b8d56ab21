"""The wall-clock training budget (``--max-minutes``): the run's TOTAL training time, as ``epochs`` is its
total epochs.

Time counts from the start of each training epoch to the end of its validation, summed over every
session of the run (it is saved in each checkpoint and restored on ``--resume``), so a resumed run gets
only what the earlier sessions left, and checkpoint writing, start-up and time lost to a crash do not
count. When the budget is spent, training stops after the current batch; finished epochs are kept. The
spent fraction drives the budget-aware learning-rate schedules (:func:`polypseg.training.schedule.lr_factor`),
so a resumed cosine or poly schedule continues where it was instead of starting its decay again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl


def now() -> float:
    """The clock the budget reads: seconds from an arbitrary origin (tests replace it with a fake one)."""
    return time.perf_counter()


class TrainingBudget(pl.Callback):
    """Counts training seconds across sessions and stops training when ``budget_s`` is spent.

    Args:
        budget_s: the run's total training budget in seconds (None: no budget, only counting).
        clock: seconds from an arbitrary origin (default :func:`now`).
    """

    def __init__(self, budget_s: float | None, clock: Callable[[], float] | None = None) -> None:
        self.budget_s = budget_s
        self.clock = clock or now
        self.spent_s = 0.0
        self._mark: float | None = None

    def fraction(self) -> float:
        """Spent share of the budget, in [0, 1] (0 without a budget)."""
        return min(1.0, self.spent_s / self.budget_s) if self.budget_s else 0.0

    def _advance(self) -> None:
        if self._mark is not None:
            now = self.clock()
            self.spent_s += now - self._mark
            self._mark = now

    def state_dict(self) -> dict[str, Any]:
        return {"spent_s": self.spent_s}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.spent_s = float(state["spent_s"])

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.budget_s is not None and self.spent_s >= self.budget_s:
            trainer.should_stop = True  # a resumed run whose budget is spent: not one more batch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark = self.clock()

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self._advance()
        if self.budget_s is not None:
            # rank 0's clock is every process's (as in Lightning's Timer): DDP ranks read the same schedule
            # fraction and stop at the same batch
            self.spent_s = float(trainer.strategy.broadcast(self.spent_s))
            trainer.should_stop = trainer.should_stop or self.spent_s >= self.budget_s

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._advance()  # before the recorder saves this epoch's checkpoint (callback order)
            if self.budget_s is not None:
                self.spent_s = float(trainer.strategy.broadcast(self.spent_s))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark = None
