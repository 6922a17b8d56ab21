"""ONNX Runtime sessions for exported models, with the settings measured fastest on 2-core CPUs.

- Full graph optimisation (``ORT_ENABLE_ALL``): BatchNorm folded into the convolutions, Conv + ReLU
  fused, QDQ pairs of an int8 model turned into integer convolutions;
- intra-op threads = torch's thread count (``torch.get_num_threads()``, i.e. ``OMP_NUM_THREADS`` or
  the cores), so the two backends compete on equal terms, and inter-op parallelism off (sequential
  execution: a U-Net is one chain of operators);
- the CPU memory arena on (buffers reused between calls) with the memory-pattern planner, which
  pre-plans the buffers of a repeated input shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polypseg.errors import MissingExtraError


def require_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or :class:`MissingExtraError` saying how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingExtraError("running .onnx models needs the 'onnx' extra: pip install -e '.[onnx]'") from exc
    return onnxruntime


def ort_session(path: str | Path, threads: int | None = None) -> Any:
    """An ``InferenceSession`` on the CPU for the model file ``path`` (see the module docstring).

    ``threads``: intra-op threads (default: ``torch.get_num_threads()``).
    """
    import torch

    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = True
    options.enable_mem_pattern = True
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
