"""``fit(recipe, data, out_dir)``: one run folder per training run (layout: :mod:`polypseg.paths`),
driven by Lightning's Trainer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import torch
import yaml

from polypseg.config import Recipe
from polypseg.data.datamodule import SegDataModule
from polypseg.data.groups import apply_groups
from polypseg.data.sources import discover_all
from polypseg.data.split import load_split, make_split, write_split
from polypseg.device import device_type, lightning_precision, resolve_precision
from polypseg.paths import read_metrics
from polypseg.preprocess import IMAGENET_MEAN, IMAGENET_STD
from polypseg.training.env import env_info
from polypseg.training.finetune import read_init_weights
from polypseg.training.module import SegModule
from polypseg.training.recorder import RunRecorder


class RunFolderError(RuntimeError):
    """The output folder is in a state that would lose or mix results."""


@dataclass
class RunResult:
    """What :func:`fit` produced."""

    run_dir: Path
    best_val_dice: float
    best_epoch: int
    epochs_done: int

    @property
    def best_ckpt(self) -> Path:
        return self.run_dir / "checkpoints" / "best.ckpt"

    @property
    def last_ckpt(self) -> Path:
        return self.run_dir / "checkpoints" / "last.ckpt"


def _is_ddp_child() -> bool:
    return int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0


def fit(
    recipe: Recipe | None,
    data: Sequence[str],
    out_dir: str | Path,
    *,
    resume: bool = False,
    devices: int = 1,
    accelerator: str = "auto",
    max_minutes: float | None = None,
    layout: str | None = None,
    progress: bool = True,
    epochs: int | None = None,
) -> RunResult:
    """Train a model and fill the run folder ``out_dir`` (see the module docstring).

    Args:
        recipe: the recipe; None only with ``resume=True`` (the run's ``config.yaml`` is used).
        data: ``--data`` arguments (folders, ``synthetic``); several are concatenated.
        out_dir: the run folder. It must be new or empty unless ``resume`` is set.
        resume: continue from ``checkpoints/last.ckpt`` with the frozen config and split.
        devices: number of processes (CPU) or GPUs; above 1 Lightning's DDP is used.
        accelerator: "auto", "cpu", "gpu" (passed to Lightning).
        max_minutes: wall-clock budget; training stops when it is spent (finished epochs are kept),
            and warm-up / cosine / poly schedules follow the budget so they complete their decay.
        layout: force a data layout instead of auto-detection.
        progress: show the rich progress bar and model summary.
        epochs: with ``resume``, train up to this many epochs in all (extends a finished run; the
            run's ``config.yaml`` is updated to say so).

    Raises:
        RunFolderError: ``out_dir`` already holds a run and ``resume`` is not set, or ``resume`` is
            set but there is nothing to resume.
    """
    run_dir = Path(out_dir)
    cfg_path = run_dir / "config.yaml"
    last = run_dir / "checkpoints" / "last.ckpt"
    child = _is_ddp_child()
    if resume:
        if not last.exists():
            raise RunFolderError(f"nothing to resume: {last} does not exist")
        frozen = yaml.safe_load(cfg_path.read_text())
        if epochs is not None:
            frozen["recipe"]["epochs"] = epochs
            if not child:
                cfg_path.write_text(yaml.safe_dump(frozen, sort_keys=False))
        recipe = Recipe.model_validate(frozen["recipe"])
        data = frozen["data"]
        layout = frozen.get("layout")
    elif recipe is None:
        raise ValueError("a recipe is needed unless resume=True")
    elif not child and run_dir.exists() and any(run_dir.iterdir()):
        raise RunFolderError(f"{run_dir} already holds files; pass --resume to continue that run or choose a new --out")
    assert recipe is not None
    if not resume:
        # frozen as absolute paths, so that evaluate / report / resume work from any working directory
        data = [str(Path(d).resolve()) if Path(d).exists() else str(d) for d in data]
    init: tuple[dict[str, torch.Tensor], dict[str, int]] | None = None
    if recipe.init_weights and not resume:  # a resumed run's weights come from last.ckpt
        recipe = recipe.model_copy(update={"init_weights": str(Path(recipe.init_weights).resolve())})
        init = read_init_weights(recipe)  # before the run folder is written
    pl.seed_everything(recipe.seed, workers=True, verbose=False)
    if device_type(accelerator) == "cpu" and devices > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // devices))

    samples = apply_groups(
        discover_all(list(data), layout, foreground_labels=recipe.data.foreground_labels),
        recipe.data.group_regex,
        recipe.data.group_csv,
    )
    split_path = run_dir / "split.json"
    if split_path.exists():
        split = load_split(split_path, samples)
    else:
        split = make_split(samples, recipe.data.val_fraction, recipe.data.test_fraction, recipe.seed, recipe.data.fold)
        if not split["val"]:
            raise RunFolderError("the validation split is empty: give val data or set data.val_fraction > 0")
    if not child and not resume:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        frozen_cfg = {
            "recipe": recipe.model_dump(mode="json"),
            "data": [str(d) for d in data],
            "layout": layout,
        }
        cfg_path.write_text(yaml.safe_dump(frozen_cfg, sort_keys=False))
        write_split(split_path, split, {"seed": recipe.seed, "data": [str(d) for d in data]})
    env_path = run_dir / "env.json"
    if not child:
        # The first session's environment stays on top; each resume is appended under "resumes".
        if resume and env_path.exists():
            env = json.loads(env_path.read_text())
            env.setdefault("resumes", []).append(env_info())
        else:
            env = env_info()
        if init is not None:
            env["init_weights"] = {"path": recipe.init_weights, **init[1]}
        env_path.write_text(json.dumps(env, indent=1))

    preprocess = {"size": recipe.data.size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    dm = SegDataModule(
        samples, split, recipe.data.size, recipe.data.batch_size, recipe.data.augment, recipe.data.num_workers
    )
    dm.setup("fit")  # build the cache once, before any DDP process starts
    module = SegModule(recipe, preprocess, time_budget_s=max_minutes * 60 if max_minutes else None)
    if init is not None:
        module.model.load_state_dict(init[0], strict=False)
    recorder = RunRecorder(run_dir)
    callbacks: list[pl.Callback] = [recorder]
    if recipe.ema_decay is not None:
        from lightning.pytorch.callbacks import EMAWeightAveraging

        callbacks.append(EMAWeightAveraging(decay=recipe.ema_decay))
    if progress:
        from lightning.pytorch.callbacks import RichProgressBar

        callbacks.append(RichProgressBar(leave=True))
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        precision=lightning_precision(resolve_precision(recipe.precision, accelerator)),
        max_epochs=recipe.epochs,
        max_time={"minutes": max_minutes} if max_minutes else None,
        logger=False,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=progress,
        num_sanity_val_steps=0,
        gradient_clip_val=recipe.gradient_clip,
        # CPU runs are bit-reproducible; on CUDA some backward kernels (bilinear up-sampling of the deep
        # supervision heads) have no deterministic version, so there it only warns.
        deterministic=True if device_type(accelerator) == "cpu" else "warn",
        default_root_dir=str(run_dir),
    )
    trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume else None, weights_only=True)
    if recorder.saved_epoch < 0 and trainer.global_step > 0:
        # The time budget ran out inside the first epoch, before any validation: validate the partly
        # trained model once so the run still has its checkpoints and a metrics row.
        trainer.validate(module, datamodule=dm, verbose=False)
    if trainer.is_global_zero:
        env = json.loads(env_path.read_text())
        session = env["resumes"][-1] if resume and env.get("resumes") else env
        session.update(
            world_size=trainer.world_size,
            strategy=type(trainer.strategy).__name__,
            precision=str(trainer.precision),
        )
        env_path.write_text(json.dumps(env, indent=1))
    rows = read_metrics(run_dir) if (run_dir / "metrics.csv").exists() else []
    return RunResult(
        run_dir=run_dir,
        best_val_dice=recorder.best,
        best_epoch=recorder.best_epoch,
        epochs_done=len(rows),
    )
