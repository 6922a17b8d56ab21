"""Numeric precision: one vocabulary for every command, and the fastest correct setting for a device.

Names (:data:`PRECISIONS`): ``auto``, ``32`` (fp32), ``bf16`` (bf16 autocast), ``16`` (fp16 autocast).
Lightning's spellings are accepted everywhere and mean the same: ``32-true``, ``bf16-mixed``,
``16-mixed`` (and ``fp32``, ``fp16``). :func:`parse_precision` turns any of them into the short name.

``auto`` resolves here (:func:`resolve_precision`), for training and inference alike; the rule, from
``benchmarks/speed.py`` (docs/performance.md):

- CUDA with bf16 support (Ampere and newer): ``bf16``; older CUDA GPUs: ``16``.
- CPU with bf16 matrix units (AVX512-BF16 or AMX): ``bf16``; on 2 cores of this project's CI
  machine bf16 + channels_last trains 2.0-2.4x faster than fp32 channels_last. CPUs without them
  have no native bf16 matrix instructions (oneDNN would emulate them, about 9x slower), so ``32``.
- Anything else (MPS, unknown): ``32``.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from polypseg.errors import InputError

PRECISIONS = ("auto", "32", "bf16", "16")
_ALIASES = {
    "auto": "auto",
    "32": "32",
    "32-true": "32",
    "fp32": "32",
    "bf16": "bf16",
    "bf16-mixed": "bf16",
    "16": "16",
    "16-mixed": "16",
    "fp16": "16",
}
_LIGHTNING = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}


def parse_precision(value: object) -> str:
    """The short name (one of :data:`PRECISIONS`) of a precision given as text or a YAML integer.

    Raises:
        ValueError: for anything else; the message lists the accepted names.
    """
    key = str(value).strip().lower() if isinstance(value, int | str) and not isinstance(value, bool) else None
    if key not in _ALIASES:
        raise InputError(
            f"precision must be one of {', '.join(PRECISIONS)} (or Lightning's 32-true, bf16-mixed, 16-mixed); "
            f"got {value!r}"
        )
    return _ALIASES[key]


#: ``ONEDNN_MAX_CPU_ISA`` values below AVX512_CORE_BF16: oneDNN then uses no bf16 units even where the CPU
#: has them (the setting that emulates an AVX2-only CPU on an AMX one).
ISAS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")
#: The environment that limits torch to the code an AVX2-only CPU (AMD Zen 3, no bf16 units) runs: oneDNN's
#: kernels, ATen's vectorised loops and MKL; read when torch loads, so it applies to a new process.
AVX2_ONLY_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def bf16_capped() -> bool:
    """Whether ``ONEDNN_MAX_CPU_ISA`` keeps oneDNN below its bf16 kernels (an emulated narrower CPU)."""
    return os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in ISAS_WITHOUT_BF16


def cpu_has_bf16_units() -> bool:
    """True when this CPU executes bf16 matrix work natively (AVX512-BF16 or AMX tiles) and oneDNN may use
    them (``ONEDNN_MAX_CPU_ISA`` does not cap it below AVX512_CORE_BF16)."""
    if bf16_capped():
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for name in checks:
        fn = getattr(torch.cpu, name, None)  # private probes: absent on some builds, so be tolerant
        try:
            if fn is not None and fn():
                return True
        except RuntimeError:
            continue
    return False


#: where Linux describes the CPU (read at each call, so that tests can point it at a file of their own)
CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo(key: str) -> str:
    """The first ``key`` line of :data:`CPUINFO` (``model name``, ``flags``), or "" where there is none."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return ""
    return next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.split(":", 1)[0].strip() == key), "")


def cpu_model_name() -> str:
    """The CPU's model name as its maker sells it (``AMD EPYC``, ``Intel(R) Xeon(R) Processor``)."""
    return _cpuinfo("model name") or platform.processor() or platform.machine() or "unknown"


def cpu_kind() -> str:
    """The CPU's model name with its family and model numbers (``AMD EPYC, family 26 model 2``): the key under
    which speed and budget results are filed. The name alone does not tell the chips apart: "AMD EPYC" is
    Zen 3 (family 25 model 1), Zen 4 (family 25 model 17) and Zen 5 (family 26), whose speeds differ."""
    family, model = _cpuinfo("cpu family"), _cpuinfo("model")
    name = cpu_model_name()
    return f"{name}, family {family} model {model}" if family and model else name


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (``avx2``, ``avx512_bf16``, ``amx_bf16``, ...); empty where
    there is no :data:`CPUINFO`."""
    return frozenset(_cpuinfo("flags").split())


def cpu_bf16_kind() -> str | None:
    """The CPU's bf16 matrix units by its flags: ``"AMX bf16"``, ``"AVX512-BF16"``, or None (the hardware;
    :func:`cpu_has_bf16_units` also honours a cap set with ``ONEDNN_MAX_CPU_ISA``)."""
    flags = cpu_flags()
    return "AMX bf16" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else None


def cpu_description() -> str:
    """Kind, cores and bf16 units in one line: ``AMD EPYC, family 26 model 2, 2 cores (AVX512-BF16)``."""
    return f"{cpu_kind()}, {os.cpu_count()} cores ({cpu_bf16_kind() or 'no bf16 units'})"


def device_type(accelerator: str = "auto") -> str:
    """The device a Lightning ``accelerator`` string lands on here: ``"cuda"`` or ``"cpu"`` (or ``"mps"``)."""
    acc = accelerator.lower()
    if acc in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "cuda"
    if acc in ("mps",) or (acc in ("auto", "gpu") and torch.backends.mps.is_available()):
        return "mps"
    return "cpu"


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` runs bf16 natively: a CUDA GPU with bf16, or a CPU with bf16 units."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_bf16_supported()
    return kind == "cpu" and cpu_has_bf16_units()


def resolve_precision(precision: object, device: torch.device | str) -> str:
    """The short name to run with on ``device`` (a torch device, or a Lightning accelerator string):
    ``auto`` becomes ``bf16``, ``16`` or ``32`` by the module's rule; others are parsed and kept.

    Raises:
        ValueError: for an unknown precision (see :func:`parse_precision`).
    """
    name = parse_precision(precision)
    if name != "auto":
        return name
    kind = device_type(device) if isinstance(device, str) and device in ("auto", "gpu", "mps") else device
    dev = torch.device(kind)
    if native_bf16(dev):
        return "bf16"
    return "16" if dev.type == "cuda" else "32"


def lightning_precision(precision: str) -> str:
    """Lightning's name (``32-true``, ``bf16-mixed``, ``16-mixed``) of a resolved short name."""
    return _LIGHTNING[parse_precision(precision)]


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a resolved short name (None for fp32)."""
    return {"32": None, "bf16": torch.bfloat16, "16": torch.float16}[parse_precision(precision)]
