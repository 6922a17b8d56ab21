"""Self-describing checkpoints: load a trained model for inference without the training config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polypseg.atomic import atomic_save
from polypseg.errors import InputError
from polypseg.models import build_model


def resolve_checkpoint(run_or_ckpt: str | Path, which: str = "best") -> Path:
    """A checkpoint path from a run folder (``checkpoints/<which>.ckpt``) or a checkpoint file.

    Raises:
        FileNotFoundError: naming the path tried and what was expected.
    """
    p = Path(run_or_ckpt)
    if p.is_dir():
        ckpt = p / "checkpoints" / f"{which}.ckpt"
        if not ckpt.exists():
            raise FileNotFoundError(
                f"{ckpt} does not exist: is {p} a polypseg run folder whose training finished an epoch?"
            )
        return ckpt
    if not p.exists():
        raise FileNotFoundError(f"checkpoint or run folder {p} does not exist")
    return p


def run_dir_of(ckpt: Path) -> Path | None:
    """The run folder holding ``ckpt`` (``RUN/checkpoints/x.ckpt``), or None for a loose file."""
    parent = ckpt.resolve().parent
    return parent.parent if parent.name == "checkpoints" and (parent.parent / "config.yaml").exists() else None


@dataclass
class LoadedModel:
    """A model ready for inference and the metadata stored with it."""

    model: nn.Module
    meta: dict[str, Any]
    path: Path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Load a polypseg checkpoint safely (``weights_only=True``) and rebuild its model in eval mode.

    Raises:
        ValueError: the file is not a polypseg checkpoint.
    """
    path = Path(path)
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or "polypseg" not in ckpt or "state_dict" not in ckpt:
        raise InputError(f"{path} is not a polypseg checkpoint (no 'polypseg' metadata)")
    meta = ckpt["polypseg"]
    model = build_model(meta["model_name"], **meta["model_args"])
    state = {k[len("model.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    model.eval()
    return LoadedModel(model=model, meta=meta, path=path)


def update_checkpoint_meta(path: str | Path, **updates: Any) -> None:
    """Rewrite fields of a checkpoint's ``polypseg`` metadata (e.g. a tuned threshold), atomically."""
    path = Path(path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt["polypseg"].update(updates)
    atomic_torch_save(ckpt, path)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through :func:`polypseg.atomic.atomic_save` (temporary file, fsync, rename)."""
    atomic_save(path, lambda tmp: torch.save(obj, tmp))
