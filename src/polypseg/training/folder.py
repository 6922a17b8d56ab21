"""The run folder's own rules: when a folder may be (re)used for a new run, what ``config.yaml`` freezes,
and the files written once the data are known to be readable (``config.yaml``, ``split.json``, ``env.json``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from typing import Any

import torch
import yaml

from polypseg.atomic import atomic_write_text
from polypseg.config import Recipe
from polypseg.data.fingerprint import fingerprints
from polypseg.data.split import write_split
from polypseg.errors import InputError
from polypseg.paths import DEMO_MARKER, RunPaths
from polypseg.runlock import LOCK_NAME
from polypseg.training.env import env_info


class RunFolderError(InputError):
    """The output folder is in a state that would lose or mix results."""


#: What a run folder may hold before its first checkpoint; such a folder (a run that failed early) can
#: be started again without --resume.
_EARLY_FILES = {"config.yaml", "split.json", "env.json", "metrics.csv", "checkpoints", "tensorboard", "mlruns"}


def prepare_folder(run: RunPaths, resume: bool) -> None:
    """Refuse to mix runs: a new run needs an empty folder, or one whose earlier run stopped before its
    first checkpoint (its files are removed and the run starts again); resume needs ``last.ckpt``.
    Temporary files a killed writer left are removed first."""
    remove_stale_temporaries(run)
    if resume:
        if not run.checkpoint("last").exists():
            raise RunFolderError(
                f"nothing to resume: {run.checkpoint('last')} does not exist "
                f"(start the run again without --resume, or check --out)"
            )
        return
    if not run.root.exists() or not {p.name for p in run.root.iterdir()} - {LOCK_NAME}:
        return
    names = {p.name for p in run.root.iterdir()} - {DEMO_MARKER, LOCK_NAME}
    has_ckpt = any(run.checkpoints.glob("[!.]*.ckpt")) if run.checkpoints.is_dir() else False
    if names <= _EARLY_FILES and not has_ckpt:
        for name in names:
            target = run.root / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        return
    raise RunFolderError(f"{run.root} already holds files; pass --resume to continue that run or choose a new --out")


def remove_stale_temporaries(run: RunPaths) -> None:
    """Remove the temporary files of atomic writes (``.<name>.tmp<pid>...``) that a killed process left in the
    run folder and its ``checkpoints/``; called with the run's lock held, so no live writer owns them."""
    for folder in (run.root, run.checkpoints):
        if folder.is_dir():
            for p in folder.glob(".*.tmp*"):
                if p.is_file():
                    p.unlink(missing_ok=True)


def frozen_config(recipe: Recipe, data: Sequence[str], layout: str | None, max_minutes: float | None,
                   loggers: Sequence[str]) -> dict[str, Any]:  # fmt: skip
    return {
        "recipe": recipe.model_dump(mode="json"),
        "data": [str(d) for d in data],
        "layout": layout,
        "max_minutes": max_minutes,
        "loggers": list(loggers),
    }


def write_run_files(
    run: RunPaths,
    recipe: Recipe,
    data: Sequence[str],
    layout: str | None,
    max_minutes: float | None,
    loggers: Sequence[str],
    split: dict[str, list[str]],
    samples: Sequence,
    resume: bool,
    init: tuple[dict[str, torch.Tensor], dict[str, int]] | None,
    precision: str,
) -> None:
    """``config.yaml``, ``split.json`` (with each image's content fingerprint) and ``env.json``, written
    by rank 0 once the data are known to be readable. A resume rewrites ``config.yaml`` only (it may
    extend epochs or the budget) and appends its environment to ``env.json``. Each session's entry holds the
    CPU and the ``precision`` it trains with (Lightning's name) from its start, so a session that is killed
    still says how it trained."""
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.config, yaml.safe_dump(frozen_config(recipe, data, layout, max_minutes, loggers),
                                                 sort_keys=False))  # fmt: skip
    if not resume or not run.split.exists():
        write_split(run.split, split, {"seed": recipe.seed, "data": [str(d) for d in data],
                                       "fingerprints": fingerprints(samples)})  # fmt: skip
    if resume and run.env.exists():
        env = json.loads(run.env.read_text())
        env.setdefault("resumes", []).append({**env_info(), "precision": precision})
    else:
        env = {**env_info(), "precision": precision}
    if init is not None:
        env["init_weights"] = {"path": recipe.init_weights, **init[1]}
    atomic_write_text(run.env, json.dumps(env, indent=1))
