"""Training: the LightningModule, schedules, the run-folder recorder, fine-tuning, and ``fit``."""

from polypseg.paths import read_metrics
from polypseg.training.fit import RunResult, fit
from polypseg.training.folder import RunFolderError

__all__ = ["RunFolderError", "RunResult", "fit", "read_metrics"]
