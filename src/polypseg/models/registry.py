"""The model registry: ``build_model(name, **kwargs)`` returns a plain ``nn.Module`` producing logits."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from polypseg.errors import InputError
from polypseg.models.attention_unet import AttentionUNet
from polypseg.models.resunet import ResUNet
from polypseg.models.unet import UNet

MODELS: dict[str, Callable[..., nn.Module]] = {
    "unet": UNet,
    "attention_unet": AttentionUNet,
    "resunet": ResUNet,
}


def available_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return sorted(MODELS)


def build_model(name: str, **kwargs: object) -> nn.Module:
    """Build a registered model.

    Raises:
        KeyError: for an unknown name; the message lists the valid names.
        TypeError: for an argument the model does not take; the message lists the valid ones.
    """
    if name not in MODELS:
        raise InputError(f"unknown model {name!r}; choose one of: {', '.join(available_models())}")
    factory = MODELS[name]
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):  # a UNet variant passing **kwargs on
        params = inspect.signature(UNet).parameters
    valid = set(params) - {"self"}
    unknown = set(kwargs) - valid
    if unknown:
        raise TypeError(f"model {name!r} got unknown argument(s) {sorted(unknown)}; valid: {sorted(valid)}")
    return factory(**kwargs)
