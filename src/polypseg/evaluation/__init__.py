"""Evaluation: per-image metrics (one zero-denominator rule), structure metrics, threshold tuning on
validation, evaluation at original resolution on the run's split or on whole external sets,
bootstrap intervals and paired comparisons."""

from polypseg.evaluation.evaluate import EvalResult, evaluate
from polypseg.evaluation.tune import tune_threshold

__all__ = ["EvalResult", "evaluate", "tune_threshold"]
