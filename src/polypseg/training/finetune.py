"""Fine-tuning: initialise a model from a local weights file (a polypseg, Lightning, DDP or plain state dict).

Nothing is ever downloaded. Strict by default: every tensor of the model must be in the file with its
shape, and the error lists those that are not; partial loading copies only the tensors that fit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from polypseg import zoo
from polypseg.checkpoint import read_torch_file
from polypseg.config import Recipe
from polypseg.errors import InputError
from polypseg.models import build_model


class InitWeightsError(InputError):
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
            a plain state dict (loaded with ``weights_only=True``), a ``.safetensors`` file, or the name
            of a shipped model (:mod:`polypseg.zoo`).
        strict: every tensor of ``target`` must be in the file with the same shape. Otherwise only
            tensors with matching name and shape are returned.

    Returns:
        ``(tensors, counts)``: the tensors to load, and ``{"loaded": n, "kept": n, "unused": n}``
        (tensors copied, model tensors left as they were, file tensors not used).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        InitWeightsError: the file holds no state dict, or (strict) tensors are missing or differ in shape;
            the message names the file and up to five such tensors.
        InputError: the file is empty, truncated, corrupt, or a pickle of Python objects (never unpickled).
    """
    shipped = zoo.find(str(path)) if not Path(path).exists() else None
    path = shipped.weights if shipped is not None else Path(path)
    if not path.is_file():
        names = ", ".join(m.name for m in zoo.available()) or "none"
        raise FileNotFoundError(
            f"init_weights file {path} does not exist (a local file, or a shipped model name: {names})"
        )
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError

        try:
            source = zoo.read_tensors(path)
        except (SafetensorError, OSError, ValueError) as exc:  # a truncated or corrupt file
            raise InitWeightsError(
                f"init_weights file {path} cannot be read: the .safetensors file is truncated or corrupt "
                f"({str(exc).strip() or type(exc).__name__}). Copy it again, or use another file"
            ) from None
    else:
        source = _state_dict_of(read_torch_file(path, what="init_weights file"), path)
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


def read_init_weights(recipe: Recipe) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """The tensors of ``recipe.init_weights`` that fit the recipe's model, and their counts; raises
    before anything is written if they cannot initialise it (see :func:`fitting_tensors`).

    The shapes come from a probe model built under a forked RNG, so the run's own initialisation is
    unchanged.
    """
    with torch.random.fork_rng(devices=[]):
        probe = build_model(recipe.model.name, **recipe.model.args)
    return fitting_tensors(probe.state_dict(), recipe.init_weights or "", recipe.init_strict)
