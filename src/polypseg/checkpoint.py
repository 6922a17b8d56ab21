"""Self-describing checkpoints: load a trained model for inference without the training config."""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polypseg.atomic import atomic_write_bytes
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


def read_torch_file(path: str | Path, map_location: str | torch.device = "cpu", what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain data only, never code.

    Raises:
        InputError: the file is empty, truncated or corrupt, or a pickle of other Python objects (which
            ``weights_only`` refuses to build: unpickling them could run code); the message names the file.
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"{what} {path} is empty (0 bytes): copy it again, or use another {what}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's text goes on to suggest allow-listing: not quoted
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        named = f"it names the Python callable {found.group(1)}" if found else "or the file is damaged"
        raise InputError(
            f"{what} {path} was refused: it is not tensors and plain data but a pickle of other Python objects "
            f"({named}). polypseg never unpickles such files, since loading one can run code. Use a {what} "
            "written by polypseg (or torch.save of a state dict)"
        ) from None
    except (RuntimeError, EOFError, ValueError, KeyError, IndexError, TypeError, AttributeError,
            zipfile.BadZipFile) as exc:  # fmt: skip
        raise InputError(
            f"{what} {path} cannot be read: the file is truncated or corrupt ({_first_words(exc)}). Copy it "
            f"again, or use another {what}"
        ) from None


def _first_words(exc: BaseException) -> str:
    """The first sentence (or two lines) of an exception's message: torch's run on for a paragraph."""
    lines = [ln.strip() for ln in str(exc).strip().strip('"').splitlines() if ln.strip()]
    text = " ".join(lines[:2]) or type(exc).__name__
    return text.split(". ")[0].rstrip(".:")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Load a polypseg checkpoint safely (``weights_only=True``) and rebuild its model in eval mode.

    Raises:
        InputError: the file cannot be read (see :func:`read_torch_file`), is not a polypseg checkpoint, or
            its weights do not fit the model its metadata describes.
    """
    path = Path(path)
    ckpt = read_torch_file(path, map_location)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("polypseg"), dict) or "state_dict" not in ckpt:
        raise InputError(f"{path} is not a polypseg checkpoint (no 'polypseg' metadata)")
    meta = ckpt["polypseg"]
    missing = [k for k in ("model_name", "model_args", "preprocess") if k not in meta]
    pre = meta.get("preprocess")
    if not missing and not (isinstance(pre, dict) and {"size", "mean", "std"} <= set(pre)):
        missing = ["preprocess.size / mean / std"]
    if missing:
        raise InputError(f"{path} is not a complete polypseg checkpoint: its metadata lacks {', '.join(missing)}")
    try:
        model = build_model(meta["model_name"], **meta["model_args"])
        state = {k[len("model.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise InputError(
            f"{path}: its weights do not fit the model its metadata describes ({meta['model_name']} "
            f"{meta['model_args']}): {_first_words(exc)}. The checkpoint is damaged or was edited; use another one"
        ) from None
    model.eval()
    return LoadedModel(model=model, meta=meta, path=path)


def update_checkpoint_meta(path: str | Path, **updates: Any) -> None:
    """Rewrite fields of a checkpoint's ``polypseg`` metadata (e.g. a tuned threshold), atomically; a
    field given as None is removed."""
    path = Path(path)
    ckpt = read_torch_file(path)
    meta = ckpt["polypseg"]
    meta.update({k: v for k, v in updates.items() if v is not None})
    for key in [k for k, v in updates.items() if v is None]:
        meta.pop(key, None)
    atomic_torch_save(ckpt, path)


#: The metadata keys of the stored decision thresholds: one for plain probabilities (``threshold``) and one
#: tuned on flip-TTA probabilities (``tta_threshold``), each with where it came from. ``threshold_tta: True``
#: is the older form: ``threshold`` itself was tuned with TTA (read by :func:`stored_threshold`).
THRESHOLD_KEYS = ("threshold", "threshold_source", "tta_threshold", "tta_threshold_source", "threshold_tta")


def stored_threshold(meta: Mapping[str, Any], tta: bool) -> tuple[float, str]:
    """The threshold a model's metadata holds for plain (``tta`` False) or flip-TTA probabilities, and a
    line saying where it came from; the line says so when the threshold was tuned for the other mode.

    The TTA threshold is ``tta_threshold`` when ``polypseg tune --tta`` stored one, else the plain one;
    the plain threshold is ``threshold`` (the recipe's 0.5 until ``polypseg tune``).
    """
    value = float(meta.get("threshold", 0.5))
    source = str(meta.get("threshold_source", "recipe"))
    legacy_tta = meta.get("threshold_tta") is True  # written before the two thresholds were kept apart
    if tta:
        if "tta_threshold" in meta:
            return float(meta["tta_threshold"]), str(meta.get("tta_threshold_source", "tuned with flip TTA"))
        if legacy_tta or source == "recipe":
            return value, source
        return value, f"{source}; tuned without TTA: 'polypseg tune MODEL --tta' tunes one for flip TTA"
    if legacy_tta:
        return value, f"{source}; tuned WITH flip TTA, applied without it: 'polypseg tune MODEL' tunes a plain one"
    return value, source


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` into memory, then :func:`polypseg.atomic.atomic_write_bytes` (temporary file, fsync,
    rename): a full disk is an ``OSError`` there (``DiskFullError``), where torch's own file writer would
    raise a bare ``RuntimeError``."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getbuffer())
