"""How sure a per-image mean is: bootstrap confidence intervals, and a paired test of two models.

Both resample *images*, the unit the polyp literature averages over (mDice is a mean over images), so an
interval says how much the figure would move on another draw of images like these. Neither says
anything about run-to-run (seed) variation, which needs repeated training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

CHUNK = 256  # resamples drawn at once: bounds memory at CHUNK x n indices
#: Per-image metrics where a lower score is the better one (an error, not an overlap).
LOWER_IS_BETTER = frozenset({"mae"})


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, level: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (one value per image).

    Returns ``(low, high)``: the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the means of
    ``n_resamples`` resamples drawn with replacement (seeded, so a report is reproducible).

    Raises:
        ValueError: ``values`` is empty or ``level`` is not in (0, 1).
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, CHUNK):
        k = min(CHUNK, n_resamples - start)
        means[start : start + k] = x[rng.integers(0, x.size, size=(k, x.size))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


@dataclass
class PairedComparison:
    """Model B against model A on the same images. ``diff`` = mean(B) - mean(A); ``ci`` its bootstrap
    interval; ``p_value`` two-sided, from a sign-flip permutation test of the per-image differences.

    ``b_better`` / ``a_better`` count the images where that model scores *better*: higher, or lower when
    ``higher_is_better`` is False (MAE), so a negative ``diff`` favours B for such a metric."""

    metric: str
    n_images: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    level: float
    p_value: float
    b_better: int  # images where B scores better (higher; lower for a lower-is-better metric)
    a_better: int
    ties: int
    higher_is_better: bool = True

    @property
    def favours(self) -> str:
        """``"B"``, ``"A"`` or ``"neither"``: whose mean is the better one for this metric."""
        if self.diff == 0:
            return "neither"
        return "B" if (self.diff > 0) == self.higher_is_better else "A"

    def to_dict(self) -> dict[str, Any]:
        """The fields, plus ``favours`` (whose mean is better)."""
        return {**asdict(self), "favours": self.favours}


def paired_comparison(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    metric: str = "dice",
    level: float = 0.95,
    n_resamples: int = 2000,
    n_permutations: int = 10000,
    seed: int = 0,
    higher_is_better: bool | None = None,
) -> PairedComparison:
    """Compare two models scored on the same images (``a[i]`` and ``b[i]`` belong to image ``i``).

    ``higher_is_better``: the metric's direction; default: False for :data:`LOWER_IS_BETTER` metrics
    (MAE), True otherwise. It decides which model the per-image win counts credit, never ``diff``.

    The test: under "no difference" each per-image difference is as likely to have either sign, so the
    p-value is the share of random sign flips whose mean difference is at least as far from 0 as the
    observed one, counting the observed one: ``(1 + hits) / (1 + n_permutations)``.

    Raises:
        ValueError: the inputs are empty or of different lengths.
    """
    xa, xb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if xa.shape != xb.shape or xa.ndim != 1 or xa.size == 0:
        raise ValueError(f"need two equally long, non-empty score lists, got {xa.shape} and {xb.shape}")
    d = xb - xa
    observed = abs(d.mean())
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, n_permutations, CHUNK):
        k = min(CHUNK, n_permutations - start)
        signs = rng.integers(0, 2, size=(k, d.size)) * 2 - 1
        hits += int((np.abs((signs * d).mean(axis=1)) >= observed - 1e-12).sum())
    low, high = bootstrap_ci(d, level, n_resamples, seed)
    higher = metric not in LOWER_IS_BETTER if higher_is_better is None else higher_is_better
    gain = d if higher else -d  # > 0 where B is the better one
    return PairedComparison(
        metric=metric,
        n_images=int(d.size),
        mean_a=float(xa.mean()),
        mean_b=float(xb.mean()),
        diff=float(d.mean()),
        ci_low=low,
        ci_high=high,
        level=level,
        p_value=(1 + hits) / (1 + n_permutations),
        b_better=int((gain > 0).sum()),
        a_better=int((gain < 0).sum()),
        ties=int((d == 0).sum()),
        higher_is_better=higher,
    )
