"""What a run records about where it ran: library versions (also stored in every checkpoint) and ``env.json``."""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any

import torch

from polypseg.device import AVX2_ONLY_ENV, cpu_description


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


def env_info() -> dict[str, Any]:
    """Hardware, software and command line of this process (``env.json``); ``isa_limit``: the variables of
    :data:`polypseg.device.AVX2_ONLY_ENV` that are set, where torch is kept to narrower code than the CPU's."""
    info: dict[str, Any] = {
        "versions": versions(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu": cpu_description(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "argv": sys.argv,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    limit = {k: os.environ[k] for k in AVX2_ONLY_ENV if k in os.environ}
    if limit:  # torch runs narrower code than the CPU line says (an emulated CPU): the run must say so
        info["isa_limit"] = limit
    if torch.cuda.is_available():
        info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def _sessions(env: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's training sessions in order: the first (``env.json`` itself), then each ``--resume``."""
    return [env, *env.get("resumes", [])]


def _distinct(values: list[Any]) -> str | None:
    seen = list(dict.fromkeys(v for v in values if v))
    return ", then ".join(seen) if seen else None


def training_precision(env: dict[str, Any]) -> str | None:
    """The precision (Lightning's name) every session of the run trained with, in order, without repeats."""
    return _distinct([s.get("precision") for s in _sessions(env)])


def training_cpu(env: dict[str, Any]) -> str:
    """The CPU every session of the run trained on, in order, without repeats; for a run recorded before
    ``env.json`` held the CPU, this machine's."""
    return _distinct([s.get("cpu") for s in _sessions(env)]) or cpu_description()
