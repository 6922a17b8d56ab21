"""What a run records about where it ran: library versions (also stored in every checkpoint) and ``env.json``."""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any

import torch


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
    """Hardware, software and command line of this process (``env.json``)."""
    info: dict[str, Any] = {
        "versions": versions(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "argv": sys.argv,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if torch.cuda.is_available():
        info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info
