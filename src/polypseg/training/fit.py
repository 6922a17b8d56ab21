"""``fit(recipe, data, out_dir)``: one run folder per training run (layout: :mod:`polypseg.paths`),
driven by Lightning's Trainer.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import yaml

from polypseg import zoo
from polypseg.atomic import atomic_write_text
from polypseg.config import Recipe
from polypseg.data.datamodule import SegDataModule
from polypseg.data.groups import apply_groups
from polypseg.data.sources import discover_all
from polypseg.data.split import load_split, make_split
from polypseg.device import device_type, lightning_precision, resolve_precision
from polypseg.errors import TrainingFailedError
from polypseg.paths import RunPaths, read_metrics
from polypseg.preprocess import IMAGENET_MEAN, IMAGENET_STD
from polypseg.runlock import run_lock
from polypseg.training.budget import TrainingBudget
from polypseg.training.finetune import read_init_weights
from polypseg.training.folder import RunFolderError, prepare_folder, write_run_files
from polypseg.training.interrupt import StopOnSignal
from polypseg.training.loggers import build_loggers
from polypseg.training.module import SegModule
from polypseg.training.recorder import RunRecorder


@dataclass
class RunResult:
    """What :func:`fit` produced."""

    run_dir: Path
    best_val_dice: float
    best_epoch: int
    epochs_done: int
    is_global_zero: bool = True  #: this process is global rank 0 (it alone tunes, evaluates, reports)

    @property
    def best_ckpt(self) -> Path:
        return RunPaths(self.run_dir).checkpoint("best")

    @property
    def last_ckpt(self) -> Path:
        return RunPaths(self.run_dir).checkpoint("last")


def is_global_zero(**trainer_kwargs: Any) -> bool:
    """Whether this process is global rank 0 of the launch ``trainer_kwargs`` describe, as Lightning reads it
    from the environment (torchrun's RANK, SLURM's SLURM_PROCID, Lightning's own launcher): only rank 0
    writes the run folder."""
    probe = pl.Trainer(**trainer_kwargs, logger=False, enable_progress_bar=False, enable_model_summary=False)
    return bool(probe.is_global_zero)


def fit(
    recipe: Recipe | None,
    data: Sequence[str],
    out_dir: str | Path,
    *,
    resume: bool = False,
    devices: int = 1,
    num_nodes: int = 1,
    accelerator: str = "auto",
    max_minutes: float | None = None,
    layout: str | None = None,
    progress: bool = True,
    epochs: int | None = None,
    loggers: Sequence[str] = (),
) -> RunResult:
    """Train a model and fill the run folder ``out_dir`` (layout: :mod:`polypseg.paths`).

    The data are read, validated and cached before anything is written, so bad data leave no half-made
    run folder; only global rank 0 (Lightning's rank: torchrun, SLURM or Lightning's own launcher) writes.

    Args:
        recipe: the recipe; None only with ``resume=True`` (the run's ``config.yaml`` is used).
        data: ``--data`` arguments (folders, ``synthetic``); several are concatenated.
        out_dir: the run folder. It must be new or empty (or hold a run that stopped before its first
            checkpoint) unless ``resume`` is set.
        resume: continue from ``checkpoints/last.ckpt`` with the frozen config and split (exactly: the
            data order, augmentation and schedules of each epoch depend on (seed, epoch) alone).
        devices: processes (CPU) or GPUs per node; above 1 (or with ``num_nodes`` > 1) Lightning's DDP.
        num_nodes: machines taking part (torchrun or SLURM launch every process).
        accelerator: "auto", "cpu", "gpu" (passed to Lightning).
        max_minutes: the run's total training-time budget in minutes (:mod:`polypseg.training.budget`);
            frozen in ``config.yaml``, so ``--resume`` keeps it unless a new total is given.
        layout: force a data layout instead of auto-detection.
        progress: show the rich progress bar and model summary.
        epochs: with ``resume``, train up to this many epochs in all (extends a finished run; the
            run's ``config.yaml`` is updated to say so).
        loggers: extra experiment loggers from :data:`LOGGERS` (``metrics.csv`` is always written).

    Raises:
        RunFolderError: ``out_dir`` already holds a run and ``resume`` is not set, or ``resume`` is
            set but there is nothing to resume.
        DataError: the data cannot be read (nothing is written then).
    """
    run = RunPaths(Path(out_dir))
    frozen: dict[str, Any] = {}
    if resume:
        if run.config.exists():
            frozen = yaml.safe_load(run.config.read_text())
        if epochs is not None and frozen:
            frozen["recipe"]["epochs"] = epochs
        if max_minutes is not None:
            frozen["max_minutes"] = max_minutes
        if frozen:
            recipe = Recipe.model_validate(frozen["recipe"])
            data, layout = frozen["data"], frozen.get("layout")
            max_minutes, loggers = frozen.get("max_minutes"), frozen.get("loggers", [])
    elif recipe is None:
        raise ValueError("a recipe is needed unless resume=True")
    distributed = devices > 1 or num_nodes > 1
    trainer_kwargs = {"accelerator": accelerator, "devices": devices, "num_nodes": num_nodes,
                      "strategy": "ddp" if distributed else "auto"}  # fmt: skip
    rank0 = is_global_zero(**trainer_kwargs)
    created = not run.root.exists()
    guard = StopOnSignal(run.root, lambda: recorder.saved_epoch if recorder is not None else -1)
    recorder: RunRecorder | None = None
    guard.install()
    try:
        with run_lock(run.root) if rank0 else contextlib.nullcontext():
            if rank0:
                prepare_folder(run, resume)
            recorder = RunRecorder(run.root)
            result = _train(run, recipe, data, resume, trainer_kwargs, rank0, max_minutes, layout, progress,
                            loggers, recorder, guard, num_nodes, accelerator, devices)  # fmt: skip
            guard.finished()  # a signal in the last validation: answered before the caller tunes
            return result
    finally:
        guard.restore()
        if rank0 and created and run.root.is_dir() and not any(run.root.iterdir()):
            with contextlib.suppress(OSError):
                run.root.rmdir()  # bad data or options: leave no empty run folder behind


def _train(
    run: RunPaths,
    recipe: Recipe | None,
    data: Sequence[str],
    resume: bool,
    trainer_kwargs: dict[str, Any],
    rank0: bool,
    max_minutes: float | None,
    layout: str | None,
    progress: bool,
    loggers: Sequence[str],
    recorder: RunRecorder,
    guard: StopOnSignal,
    num_nodes: int,
    accelerator: str,
    devices: int,
) -> RunResult:
    """The body of :func:`fit` once the run folder is locked and prepared."""
    if recipe is None:
        raise RunFolderError(f"nothing to resume: {run.config} does not exist")
    if not resume:
        # frozen as absolute paths, so that evaluate / report / resume work from any working directory
        data = [str(Path(d).resolve()) if Path(d).exists() else str(d) for d in data]
        if recipe.data.group_csv:
            file, _, column = recipe.data.group_csv.rpartition(":")
            group_csv = f"{Path(file).resolve()}:{column}" if file else recipe.data.group_csv
            recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"group_csv": group_csv})})
    init: tuple[dict[str, torch.Tensor], dict[str, int]] | None = None
    if recipe.init_weights and not resume:  # a resumed run's weights come from last.ckpt
        shipped = zoo.find(recipe.init_weights) if not Path(recipe.init_weights).exists() else None
        init_path = shipped.weights if shipped is not None else Path(recipe.init_weights).resolve()
        recipe = recipe.model_copy(update={"init_weights": str(init_path)})
        init = read_init_weights(recipe)  # before the run folder is written
    pl.seed_everything(recipe.seed, workers=True, verbose=False)
    if device_type(accelerator) == "cpu" and devices > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // devices))

    samples = apply_groups(
        discover_all(list(data), layout, foreground_labels=recipe.data.foreground_labels),
        recipe.data.group_regex,
        recipe.data.group_csv,
    )
    if resume and run.split.exists():
        split = load_split(run.split, samples)  # a new run cuts its own (deterministic on every rank)
    else:
        split = make_split(samples, recipe.data.val_fraction, recipe.data.test_fraction, recipe.seed, recipe.data.fold)
        if not split["val"]:
            raise RunFolderError("the validation split is empty: give val data or set data.val_fraction > 0")
    preprocess = {"size": recipe.data.size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    dm = SegDataModule(
        samples, split, recipe.data.size, recipe.data.batch_size, recipe.data.augment, recipe.data.num_workers,
        seed=recipe.seed,
    )  # fmt: skip
    precision = lightning_precision(resolve_precision(recipe.precision, accelerator))
    dm.setup("fit")  # read and cache every pair (raising DataError for any bad one) before writing a file
    if rank0:
        write_run_files(run, recipe, data, layout, max_minutes, loggers, split, samples, resume, init, precision)

    budget = TrainingBudget(max_minutes * 60 if max_minutes else None)
    module = SegModule(recipe, preprocess, budget_fraction=budget.fraction if max_minutes else None)
    if init is not None:
        module.model.load_state_dict(init[0], strict=False)
    callbacks: list[pl.Callback] = [budget, recorder, guard]  # budget first: it counts the epoch before the save
    if recipe.ema_decay is not None:
        from lightning.pytorch.callbacks import EMAWeightAveraging

        callbacks.append(EMAWeightAveraging(decay=recipe.ema_decay))
    if progress:
        from lightning.pytorch.callbacks import RichProgressBar

        callbacks.append(RichProgressBar(leave=True))
    trainer = pl.Trainer(
        **trainer_kwargs,
        precision=precision,
        max_epochs=recipe.epochs,
        logger=build_loggers(loggers, run.root) or False,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=progress,
        num_sanity_val_steps=0,
        gradient_clip_val=recipe.gradient_clip,
        # CPU runs are bit-reproducible; on CUDA some backward kernels (bilinear up-sampling of the deep
        # supervision heads) have no deterministic version, so there it only warns.
        deterministic=True if device_type(accelerator) == "cpu" else "warn",
        default_root_dir=str(run.root),
    )
    last = run.checkpoint("last")
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume else None, weights_only=True)
    except TrainingFailedError as exc:
        kept = (f"the last good checkpoint (epoch {recorder.saved_epoch}) is {last}; continue from it with "
                f"'polypseg train --resume --out {run.root}' after fixing the cause, or start a new run"
                if recorder.saved_epoch >= 0 else "no epoch had finished, so no checkpoint was written")  # fmt: skip
        raise TrainingFailedError(f"{exc}; {kept}") from None
    if recorder.saved_epoch < 0 and trainer.global_step > 0:
        # The time budget ran out inside the first epoch, before any validation: validate the partly
        # trained model once so the run still has its checkpoints and a metrics row.
        trainer.validate(module, datamodule=dm, verbose=False)
    if trainer.is_global_zero:
        env = json.loads(run.env.read_text())
        session = env["resumes"][-1] if resume and env.get("resumes") else env
        session.update(
            world_size=trainer.world_size,
            num_nodes=num_nodes,
            strategy=type(trainer.strategy).__name__,
            precision=str(trainer.precision),
            training_seconds=budget.spent_s,
        )
        atomic_write_text(run.env, json.dumps(env, indent=1))
    rows = read_metrics(run.root) if run.metrics.exists() else []
    return RunResult(run.root, recorder.best, recorder.best_epoch, len(rows), trainer.is_global_zero)
