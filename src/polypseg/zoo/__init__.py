"""Shipped models: trained weights inside the package (``safetensors``) with their model cards.

A shipped model is three files in this folder: ``<name>.safetensors`` (the weights, loaded without
pickle), ``<name>.json`` (the model card as data: architecture, preprocessing, threshold, training data
and licence, figures) and ``<name>.md`` (the same card for people). A model name works wherever a run
folder or checkpoint does: ``predict``, ``evaluate``, ``export``, ``serve`` and ``train --init``.
Nothing is ever downloaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polypseg.checkpoint import THRESHOLD_KEYS
from polypseg.models import build_model

#: The keys of a checkpoint's ``polypseg`` metadata that a shipped model carries (what inference needs).
META_KEYS = ("model_name", "model_args", "preprocess", *THRESHOLD_KEYS, "recipe", "val_dice", "epoch")


def zoo_root() -> Path:
    """The folder of the shipped models (inside the installed package)."""
    return Path(str(resources.files("polypseg") / "zoo"))


@dataclass
class ShippedModel:
    """A shipped model's card (``card``: the JSON) and the path of its weights."""

    name: str
    card: dict[str, Any]
    weights: Path


def available(root: Path | None = None) -> list[ShippedModel]:
    """Every shipped model in ``root`` (default :func:`zoo_root`), by name."""
    folder = root or zoo_root()
    out = []
    for card_path in sorted(folder.glob("*.json")):
        weights = card_path.with_suffix(".safetensors")
        if weights.exists():
            out.append(ShippedModel(card_path.stem, json.loads(card_path.read_text()), weights))
    return out


def find(name: str, root: Path | None = None) -> ShippedModel | None:
    """The shipped model called ``name``, or None (a path or any other string)."""
    if "/" in name or "\\" in name or name.endswith((".ckpt", ".onnx", ".pt", ".pth")):
        return None
    return next((m for m in available(root) if m.name == name), None)


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, floating ones as float32 (shipped weights may be float16)."""
    from safetensors.torch import load_file

    return {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}


def state_dict(model: ShippedModel) -> dict[str, torch.Tensor]:
    """The model's tensors as float32, keyed as ``model.state_dict()``."""
    return read_tensors(model.weights)


def weights_digest(path: Path) -> str:
    """SHA-256 over a ``.safetensors`` file's tensors as stored (names, dtypes, shapes and bytes, by name),
    not its metadata: the identity of the weights, kept when only the embedded card is rewritten."""
    import hashlib

    from safetensors.torch import load_file

    digest = hashlib.sha256()
    for key, tensor in sorted(load_file(str(path)).items()):
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load(model: ShippedModel) -> tuple[nn.Module, dict[str, Any]]:
    """Build the shipped model in eval mode and return it with its metadata (as a checkpoint's)."""
    meta = dict(model.card["polypseg"])
    net = build_model(meta["model_name"], **meta["model_args"])
    net.load_state_dict(state_dict(model))
    net.eval()
    meta["shipped_model"] = model.name
    return net, meta


def write_shipped_model(
    ckpt: str | Path, name: str, card: dict[str, Any], out_dir: Path, dtype: torch.dtype = torch.float16
) -> Path:
    """Write ``<name>.safetensors`` (weights in ``dtype``) and ``<name>.json`` (``card`` plus the checkpoint's
    inference metadata under ``polypseg``) into ``out_dir``; returns the weights path. The markdown card is
    written by hand from the JSON."""
    from safetensors.torch import save_file

    from polypseg.atomic import atomic_save, atomic_write_text
    from polypseg.checkpoint import load_checkpoint

    loaded = load_checkpoint(ckpt)
    tensors = {
        k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in loaded.model.state_dict().items()
    }
    meta = {k: loaded.meta[k] for k in META_KEYS if k in loaded.meta}
    full = {**card, "name": name, "polypseg": meta, "weights_dtype": str(dtype).replace("torch.", "")}
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{name}.safetensors"
    atomic_save(weights, lambda tmp: save_file(tensors, str(tmp), metadata={"polypseg_card": json.dumps(full)}))
    atomic_write_text(out_dir / f"{name}.json", json.dumps(full, indent=1) + "\n")
    return weights


def resolve_model(spec: str | Path) -> Path:
    """The file behind a model argument: a shipped model's name -> its ``.safetensors``; a run folder -> its
    ``best.ckpt``; a checkpoint or ``.onnx`` file -> itself.

    Raises:
        FileNotFoundError: none of these; the message lists the shipped model names.
    """
    shipped = find(str(spec)) if not Path(spec).exists() else None
    if shipped is not None:
        return shipped.weights
    from polypseg.checkpoint import resolve_checkpoint

    try:
        return resolve_checkpoint(spec)
    except FileNotFoundError as exc:
        names = ", ".join(m.name for m in available()) or "none"
        raise FileNotFoundError(f"{exc}; nor is {spec!r} a shipped model (shipped: {names})") from None


def load_model(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """A model in eval mode and its metadata from a checkpoint or a shipped model's ``.safetensors``."""
    if path.suffix == ".safetensors":
        card = path.with_suffix(".json")
        if not card.exists():
            raise FileNotFoundError(f"{path} has no model card {card.name} beside it")
        return load(ShippedModel(path.stem, json.loads(card.read_text()), path))
    from polypseg.checkpoint import load_checkpoint

    loaded = load_checkpoint(path)
    return loaded.model, loaded.meta
