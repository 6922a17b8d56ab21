"""Self-describing checkpoints: load a trained model for inference without the training config."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polypseg.models import build_model


def versions() -> dict[str, str]:
    """Versions of the libraries that decide a model's numbers."""
    import albumentations
    import lightning
    import numpy

    import polypseg

    found = {
        "polypseg": polypseg.__version__,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "albumentations": albumentations.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
    return {k: str(v) for k, v in found.items()}  # plain str: torch's version type is not weights_only-safe


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
        raise ValueError(f"{path} is not a polypseg checkpoint (no 'polypseg' metadata)")
    meta = ckpt["polypseg"]
    model = build_model(meta["model_name"], **meta["model_args"])
    state = {k[len("model.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    model.eval()
    return LoadedModel(model=model, meta=meta, path=path)


class InitWeightsError(ValueError):
    """A weights file that cannot initialise the model (not a state dict, or tensors that do not fit)."""


def _state_dict_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The model tensors in a loaded file: a polypseg / Lightning checkpoint's ``state_dict`` without its
    ``model.`` prefix, or a plain state dict (a DDP ``module.`` prefix is dropped too)."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InitWeightsError(
            f"{path} holds no state dict: give a polypseg checkpoint (.ckpt) or a file written by "
            "torch.save(model.state_dict())"
        )
    for prefix in ("model.", "module."):
        if all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix) :]: v for k, v in obj.items()}
    return obj


def fitting_tensors(
    target: dict[str, torch.Tensor], path: str | Path, strict: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """The tensors of a local weights file that fit a model whose state dict is ``target``.

    Args:
        target: the model's ``state_dict()`` (only names and shapes are read).
        path: a polypseg checkpoint, a Lightning checkpoint of a module holding the model as ``model``,
            or a plain state dict; loaded with ``weights_only=True``.
        strict: every tensor of ``target`` must be in the file with the same shape. Otherwise only
            tensors with matching name and shape are returned.

    Returns:
        ``(tensors, counts)``: the tensors to load, and ``{"loaded": n, "kept": n, "unused": n}``
        (tensors copied, model tensors left as they were, file tensors not used).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        InitWeightsError: the file holds no state dict, or (strict) tensors are missing or differ in shape;
            the message names the file and up to five such tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"init_weights file {path} does not exist (it must be a local file)")
    source = _state_dict_of(torch.load(path, map_location="cpu", weights_only=True), path)
    match = {k: v for k, v in source.items() if k in target and v.shape == target[k].shape}
    missing = [k for k in target if k not in source]
    wrong = [
        f"{k} {tuple(source[k].shape)} vs model {tuple(target[k].shape)}"
        for k in target
        if k in source and k not in match
    ]
    if strict and (missing or wrong):
        problems = [f"missing: {k}" for k in missing[:5]] + [f"shape: {w}" for w in wrong[:5]]
        raise InitWeightsError(
            f"{path} does not fit the model ({len(missing)} tensors missing, {len(wrong)} of another shape: "
            + "; ".join(problems)
            + "). Use the model.name and model.args it was trained with, or set init_strict: false "
            "(--init-partial) to copy only the tensors that fit"
        )
    counts = {"loaded": len(match), "kept": len(target) - len(match), "unused": len(source) - len(match)}
    return match, counts


def init_weights_from(model: nn.Module, path: str | Path, strict: bool = True) -> dict[str, int]:
    """Copy the fitting tensors of a local weights file into ``model`` in place (fine-tuning; nothing is
    downloaded). Returns the counts of :func:`fitting_tensors`, which also lists what it raises."""
    match, counts = fitting_tensors(model.state_dict(), path, strict)
    model.load_state_dict(match, strict=False)
    return counts


def update_checkpoint_meta(path: str | Path, **updates: Any) -> None:
    """Rewrite fields of a checkpoint's ``polypseg`` metadata (e.g. a tuned threshold), atomically."""
    path = Path(path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt["polypseg"].update(updates)
    atomic_torch_save(ckpt, path)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)
