"""Who runs the network inside a :class:`~polypseg.inference.Predictor`: torch, ONNX Runtime, or ONNX
Runtime on an int8 model, and ``auto``, which measures and keeps the fastest correct one.

Backends (:data:`BACKENDS`):

- ``torch``: the checkpoint in PyTorch, at the predictor's precision (``auto``: bf16 autocast where the
  device has bf16 units, else fp32; see :mod:`polypseg.device`).
- ``onnx``: ONNX Runtime, fp32 (:mod:`polypseg.inference.onnx_session`). A checkpoint is exported once
  and the ``.onnx`` file kept in the cache (``cache_root()/onnx/<checkpoint digest>.onnx``).
- ``onnx-int8``: ONNX Runtime on a statically quantised model: an int8 ``.onnx`` file from ``polypseg
  export --int8 --calibrate DATA``, or a checkpoint quantised on the fly with ``calibrate`` frames
  (cached per checkpoint and calibration set). Masks change a little; the Dice cost is measured per
  model (docs/performance.md), so int8 is never picked unless asked for.
- ``auto``: an ``.onnx`` file runs in ONNX Runtime; on CUDA, torch; on a CPU, both torch and ONNX
  Runtime fp32 are timed on a batch of the predictor's size (the network only: pre- and
  post-processing are the same code for both) and the faster is kept. The decision is cached per
  checkpoint digest, CPU model, thread count, batch size, TTA and precision
  (``cache_root()/backends.json``), so the trial runs once per model and machine. Without ONNX Runtime
  installed, torch.
"""

from __future__ import annotations

import gc
import hashlib
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from polypseg.atomic import atomic_write_text
from polypseg.device import cpu_kind
from polypseg.errors import InputError
from polypseg.paths import cache_root


class Runner(Protocol):
    """What the ``auto`` trial needs of a predictor (:class:`polypseg.inference.Predictor` has it)."""

    batch_size: int
    size: int
    tta: bool
    precision: str
    session: Any

    def run_network(self, batch: torch.Tensor) -> torch.Tensor: ...


BACKENDS = ("auto", "torch", "onnx", "onnx-int8")


@dataclass(frozen=True)
class BackendChoice:
    """The backend a predictor runs (``torch``, ``onnx`` or ``onnx-int8``) and why, in a sentence."""

    name: str
    reason: str


def check_backend(name: str) -> str:
    """``name`` if it is one of :data:`BACKENDS`, else :class:`InputError` listing them."""
    if name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    return name


def file_digest(path: Path) -> str:
    """The first 16 hex digits of the SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def onnx_available() -> bool:
    """Whether ONNX export and ONNX Runtime are both importable (the ``onnx`` extra)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


def cached_onnx(
    checkpoint: Path, calibrate: str | Path | None = None, log: Callable[[str], None] | None = None
) -> Path:
    """The ``.onnx`` export of ``checkpoint`` (int8 when ``calibrate`` is given), made once and kept in
    ``cache_root()/onnx/``; the name holds the checkpoint's digest (and the calibration set's)."""
    from polypseg.inference.export import export_onnx

    folder = cache_root() / "onnx"
    name = file_digest(checkpoint)
    if calibrate is not None:
        cal = Path(calibrate).resolve()
        name += "-int8-" + hashlib.sha256(str(cal).encode()).hexdigest()[:8]
    path = folder / f"{name}.onnx"
    if not path.exists():
        t0 = time.perf_counter()
        export_onnx(checkpoint, path, int8=calibrate is not None, calibrate=calibrate)
        if log:
            log(f"exported {checkpoint.name} to {path} in {time.perf_counter() - t0:.1f} s (once; cached)")
    return path


def time_forward(predictor: Runner, repeats: int = 3) -> float:
    """Median seconds per frame of the predictor's network on a batch of ``batch_size`` frames of its size
    (one warm-up call first)."""
    x = torch.randn(predictor.batch_size, 3, predictor.size, predictor.size, generator=torch.Generator().manual_seed(0))
    predictor.run_network(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predictor.run_network(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / predictor.batch_size


def _decisions_file() -> Path:
    return cache_root() / "backends.json"


def choose_auto(
    checkpoint: Path,
    build: Callable[[str], Runner],
    device: torch.device,
    timer: Callable[[Runner], float] = time_forward,
) -> tuple[Runner, BackendChoice]:
    """The ``auto`` rule for a checkpoint (see the module docstring): ``build(name)`` makes the predictor
    of one backend; ``timer`` gives seconds per frame (tests pass their own)."""
    if device.type != "cpu":
        return build("torch"), BackendChoice("torch", f"auto: torch on {device.type}")
    if not onnx_available():
        return build("torch"), BackendChoice(
            "torch", "auto: torch (ONNX Runtime is not installed: pip install -e '.[onnx]')"
        )
    torch_pred = build("torch")
    key = "|".join(map(str, (file_digest(checkpoint), cpu_kind(), torch.get_num_threads(), torch_pred.batch_size,
                             torch_pred.tta, torch_pred.precision)))  # fmt: skip
    store = _decisions_file()
    decisions = json.loads(store.read_text()) if store.exists() else {}
    known = decisions.get(key)
    built = {"torch": torch_pred}
    if known is None:  # the trial: time both, keep the decision
        built["onnx"] = build("onnx")
        known = {"torch": timer(torch_pred), "onnx": timer(built["onnx"]), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        decisions[key] = known
        store.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(store, json.dumps(decisions, indent=1))
    name = "onnx" if known["onnx"] < known["torch"] else "torch"
    pred = built[name] if name in built else build(name)
    built.clear()  # the loser's session or weights go now, not with the next collection
    gc.collect()
    precision = "fp32" if torch_pred.precision == "32" else torch_pred.precision
    reason = (f"auto: {name} (network {1e3 * known['onnx']:.1f} ms/frame in ONNX Runtime fp32 against "
              f"{1e3 * known['torch']:.1f} in torch {precision} on {cpu_kind()}, {torch.get_num_threads()} "
              f"threads; measured {known['time']}, kept in {store})")  # fmt: skip
    return pred, BackendChoice(name, reason)
