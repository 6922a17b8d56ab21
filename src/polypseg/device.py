"""The fastest correct numeric settings for the device a run lands on.

``precision: auto`` (the default of a recipe) resolves here, once, when training starts; the resolved
value is what Lightning gets and what ``env.json`` records. The rule, from ``benchmarks/speed.py``
(docs/performance.md):

- CUDA with bf16 support (Ampere and newer): ``bf16-mixed``; older CUDA GPUs: ``16-mixed``.
- CPU with bf16 matrix units (AVX512-BF16 or AMX): ``bf16-mixed``; on 2 cores of this project's CI
  machine bf16 + channels_last trains 2.0-2.4x faster than fp32 channels_last. CPUs without them
  have no native bf16 matrix instructions (oneDNN would emulate them), so they keep ``32``.
- Anything else (MPS, unknown): ``32``.
"""

from __future__ import annotations

import torch

PRECISIONS = ("auto", "32", "bf16-mixed", "16-mixed")


def cpu_has_bf16_units() -> bool:
    """True when this CPU executes bf16 matrix work natively (AVX512-BF16 or AMX tiles)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for name in checks:
        fn = getattr(torch.cpu, name, None)  # private probes: absent on some builds, so be tolerant
        try:
            if fn is not None and fn():
                return True
        except RuntimeError:
            continue
    return False


def device_type(accelerator: str = "auto") -> str:
    """The device a Lightning ``accelerator`` string lands on here: ``"cuda"`` or ``"cpu"`` (or ``"mps"``)."""
    acc = accelerator.lower()
    if acc in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "cuda"
    if acc in ("mps",) or (acc in ("auto", "gpu") and torch.backends.mps.is_available()):
        return "mps"
    return "cpu"


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """Turn ``"auto"`` into the fastest correct Lightning precision for this device; pass others through.

    Raises:
        ValueError: for a value outside :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision != "auto":
        return precision
    dev = device_type(accelerator)
    if inference_bf16(dev):
        return "bf16-mixed"
    return "16-mixed" if dev == "cuda" else "32"


def inference_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` runs bf16 natively: a CUDA GPU with bf16, or a CPU with bf16 units. The rule
    behind ``auto`` for both training (:func:`resolve_precision`) and inference."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_bf16_supported()
    return kind == "cpu" and cpu_has_bf16_units()
