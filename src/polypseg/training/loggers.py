"""Experiment loggers besides ``metrics.csv``: Lightning's TensorBoard and MLflow loggers, each an extra."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from polypseg.errors import InputError, MissingExtraError

#: Experiment loggers besides metrics.csv (always written): Lightning's own, each an optional extra.
LOGGERS = ("csv", "tensorboard", "mlflow")


def build_loggers(names: Sequence[str], run_dir: Path) -> list[Any]:
    """Lightning loggers writing into the run folder: ``tensorboard/`` and ``mlruns/`` (a local MLflow store)."""
    unknown = sorted(set(names) - set(LOGGERS))
    if unknown:
        raise InputError(f"unknown logger(s) {unknown}: choose from {', '.join(LOGGERS)}")
    out: list[Any] = []
    try:
        if "tensorboard" in names:
            from lightning.pytorch.loggers import TensorBoardLogger

            out.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=""))
        if "mlflow" in names:
            from lightning.pytorch.loggers import MLFlowLogger

            # a local mlruns/ folder, as the MLflow UI reads it (``mlflow ui --backend-store-uri RUN/mlruns``);
            # MLflow 3 keeps its file store for reading and writing but asks for this opt-in
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = (run_dir / "mlruns").resolve().as_uri()
            out.append(MLFlowLogger(experiment_name="polypseg", run_name=run_dir.name, tracking_uri=uri))
    except ModuleNotFoundError as exc:
        extra = "tensorboard" if "tensorboard" in str(exc) else "mlflow"
        raise MissingExtraError(f"--logger {extra} needs the '{extra}' extra: pip install -e '.[{extra}]'") from None
    return out
