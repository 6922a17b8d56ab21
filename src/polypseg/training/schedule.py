"""The learning-rate schedules of a recipe (step, cosine, poly, with linear warm-up), as a factor of the base rate."""

from __future__ import annotations

import math

from polypseg.config import Recipe


def lr_factor(recipe: Recipe, step: int, steps_per_epoch: int, time_fraction: float = 0.0) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based).

    ``time_fraction`` (elapsed / wall-clock budget, for runs with ``--max-minutes``) makes warm-up
    and decay schedules budget-aware: progress is the larger of the epoch and the time fractions, so
    a run cut short by its budget still finishes its decay. The ``step`` schedule ignores it.
    """
    sch = recipe.scheduler
    epoch_f = step / max(steps_per_epoch, 1)
    if sch.name != "step":
        epoch_f = max(epoch_f, time_fraction * recipe.epochs)
    if sch.name == "step":
        return sch.gamma ** (int(epoch_f) // sch.step_size)
    warm = sch.warmup_epochs
    if warm > 0 and epoch_f < warm:
        return max(epoch_f / warm, 1e-3)
    if sch.name == "none":
        return 1.0
    span = max(recipe.epochs - warm, 1e-9)
    t = min(max((epoch_f - warm) / span, 0.0), 1.0)
    low = sch.min_lr_ratio
    if sch.name == "cosine":
        return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * t))
    return low + (1 - low) * (1 - t) ** sch.power  # poly
