"""The model card of ``GET /model``: what the served model is, read from its checkpoint (or ONNX) metadata.

Training data are named by their last path component only (``Kvasir-SEG``, ``synthetic:n=400``), so the
card never shows a path of the server's file system.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from polypseg.checkpoint import resolve_checkpoint, run_dir_of, stored_threshold
from polypseg.models import build_model
from polypseg.zoo import find


def _finite(value: Any) -> float | None:
    """A float, or None for a missing or non-finite value (JSON has no NaN)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _parameters(predictor: Any, meta: dict) -> int | None:
    model = getattr(predictor, "model", None)
    if model is None and "model_name" in meta:  # an ONNX session: rebuild the architecture to count it
        try:
            model = build_model(meta["model_name"], **meta.get("model_args", {}))
        except (KeyError, TypeError, ValueError):
            return None
    return int(sum(p.numel() for p in model.parameters())) if model is not None else None


def data_names(source: str | Path | None, meta: dict) -> list[str] | None:
    """The training data of the run holding ``source`` (from its ``config.yaml``), by short name, or of a
    shipped model (from its card); None when neither says."""
    if meta.get("shipped_model"):
        shipped = find(str(meta["shipped_model"]))
        name = (shipped.card.get("training_data") or {}).get("name") if shipped else None
        return [str(name)] if name else None
    if source is None or Path(source).suffix == ".onnx":
        return None
    try:
        run = run_dir_of(resolve_checkpoint(source))
        if run is None:
            return None
        frozen = yaml.safe_load((run / "config.yaml").read_text()) or {}
    except (OSError, ValueError, yaml.YAMLError):
        return None
    names = []
    for item in frozen.get("data", []) or []:
        text = str(item)
        names.append(text if text.startswith("synthetic") else Path(text.rstrip("/")).name)
    return names


def model_card(predictor: Any, source: str | Path | None = None) -> dict:
    """The card: architecture, parameter count, input size and standardisation, threshold and where it
    came from, recipe, training data, stored validation Dice and epoch, library versions, and how the
    predictor runs here (format, device, precision, default TTA)."""
    meta: dict = dict(getattr(predictor, "meta", {}) or {})
    recipe = meta.get("recipe") or {}
    data = recipe.get("data") or {}
    return {
        "model": {
            "shipped_model": meta.get("shipped_model"),
            "name": meta.get("model_name"),
            "args": meta.get("model_args", {}),
            "parameters": _parameters(predictor, meta),
        },
        "input": {"size": int(predictor.size), "mean": list(predictor.mean), "std": list(predictor.std)},
        "threshold": float(predictor.threshold),
        "threshold_source": getattr(predictor, "threshold_source", meta.get("threshold_source", "recipe")),
        "thresholds": _thresholds(predictor, meta),
        "recipe": {
            "name": recipe.get("name"),
            "description": recipe.get("description"),
            "epochs": recipe.get("epochs"),
            "loss": (recipe.get("loss") or {}).get("name"),
            "precision": recipe.get("precision"),
            "data": {k: data.get(k) for k in ("size", "augment", "val_fraction", "test_fraction", "fold") if k in data},
        },
        "training_data": data_names(source, meta),
        "validation": {"val_dice": _finite(meta.get("val_dice")), "epoch": meta.get("epoch")},
        "versions": meta.get("versions", {}),
        "serving": {
            "format": "onnx" if getattr(predictor, "session", None) is not None else "torch",
            "device": str(getattr(predictor, "device", "cpu")),
            "precision": getattr(predictor, "precision", "32"),
            "tta": bool(getattr(predictor, "tta", False)),
            "backend": getattr(getattr(predictor, "backend", None), "name", None),
            "backend_reason": getattr(getattr(predictor, "backend", None), "reason", None),
        },
    }


def _thresholds(predictor: Any, meta: dict) -> dict[str, dict[str, Any]]:
    """The threshold per TTA mode (``plain``, ``tta``) as requests get it, with where each came from."""
    pairs = getattr(predictor, "thresholds", None)
    sources = getattr(predictor, "threshold_sources", None)
    out = {}
    for name, mode in (("plain", False), ("tta", True)):
        if pairs is not None and sources is not None:
            value, source = pairs[mode], sources[mode]
        else:
            value, source = stored_threshold(meta, mode)
        out[name] = {"value": float(value), "source": source}
    return out
