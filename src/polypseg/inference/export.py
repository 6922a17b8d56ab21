"""Export a trained model to ONNX for ONNX Runtime (extra ``onnx``), in fp32 or static int8.

The ``.onnx`` file is self-describing like a checkpoint: its metadata property ``polypseg`` holds the
model name and arguments, the preprocessing (size, mean, std), the threshold and, for an int8 model,
how it was quantised (``quantization``: format, calibration frames and method), so
:meth:`polypseg.inference.Predictor.from_checkpoint` can load it directly.

int8 (``int8=True``): ONNX Runtime's static quantisation in the QDQ format: weights int8 per output
channel, activations uint8 with ranges from the calibration frames (min / max over them), each frame
preprocessed exactly as :class:`~polypseg.inference.Predictor` does. The graph is first optimised
(BatchNorm folded into the convolutions) so that the quantised convolutions carry the folded weights.
Its Dice cost against the fp32 model is a property of the model: measure it (``benchmarks/realtime.py``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polypseg.atomic import atomic_save
from polypseg.checkpoint import THRESHOLD_KEYS
from polypseg.data.errors import DataError
from polypseg.errors import InputError, MissingExtraError
from polypseg.preprocess import normalise, resize_image
from polypseg.zoo import load_model, resolve_model

META_KEY = "polypseg"
CALIBRATION_IMAGES = 64


def _require_onnx() -> Any:
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch.onnx's dynamo exporter needs it)
    except ImportError as exc:
        raise MissingExtraError("ONNX export needs the 'onnx' extra: pip install -e '.[onnx]'") from exc
    return onnx


def _with_meta(onnx: Any, src: Path, tmp: Path, meta: dict) -> None:
    """``src`` with the polypseg metadata, saved to ``tmp``: atomic_save's temporary file (renamed into place)."""
    proto = onnx.load(str(src))
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    onnx.save(proto, str(tmp))


def export_onnx(
    run_or_ckpt: str | Path,
    out: str | Path,
    opset: int = 18,
    int8: bool = False,
    calibrate: str | Path | None = None,
    calibration_images: int = CALIBRATION_IMAGES,
    seed: int = 0,
) -> Path:
    """Write ``out`` (``.onnx``): input ``image`` float32 ``(N, 3, S, S)`` (N dynamic), output
    ``logits`` float32 ``(N, 1, S, S)``. Returns the path.

    Args:
        int8: quantise (see the module docstring); needs ``calibrate``.
        calibrate: a folder of frames like the ones the model will see (a data set polypseg reads, or a
            plain folder of images); ``calibration_images`` of them are drawn with ``seed``.

    Raises:
        MissingExtraError: ``onnx`` / ``onnxscript`` (or, for int8, ``onnxruntime``) are not installed.
        InputError: ``int8`` without ``calibrate``; DataError: a calibration folder with no readable frame.
    """
    onnx = _require_onnx()
    if int8 and calibrate is None:
        raise InputError("int8 export needs calibration frames: --calibrate DATA (a folder of frames like yours)")
    source = resolve_model(run_or_ckpt)
    model, model_meta = load_model(source)
    size = int(model_meta["preprocess"]["size"])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: model_meta[k] for k in ("model_name", "model_args", "preprocess")}
    meta.update({k: model_meta[k] for k in THRESHOLD_KEYS if k in model_meta})  # both modes' thresholds
    meta["source_checkpoint"] = str(source)
    frames: list[np.ndarray] = []
    if int8:
        frames, names = calibration_frames(calibrate, calibration_images, seed)  # type: ignore[arg-type]
        meta["quantization"] = {
            "format": "QDQ", "weights": "int8 per channel", "activations": "uint8", "method": "minmax",
            "calibration": {"data": str(Path(calibrate).resolve()), "images": len(frames), "seed": seed,  # type: ignore[arg-type]
                            "first": names[:3]},
        }  # fmt: skip
    example = torch.randn(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1, max=1024)
    with quiet_exporter():
        program = torch.onnx.export(
            model.eval(),
            (example,),
            dynamo=True,
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes={"x": {0: batch}},
            opset_version=opset,
            external_data=False,
            verbose=False,
        )

    def write(tmp: Path) -> None:  # saved once with its metadata, then renamed into place
        if not int8:
            program.save(str(tmp))
            _with_meta(onnx, tmp, tmp, meta)
            return
        with tempfile.TemporaryDirectory(prefix="polypseg-int8-") as work:
            fp32, ready, quant = Path(work) / "fp32.onnx", Path(work) / "ready.onnx", Path(work) / "int8.onnx"
            program.save(str(fp32))
            _quantise(fp32, ready, quant, frames, meta["preprocess"])
            _with_meta(onnx, quant, tmp, meta)

    atomic_save(out, write)
    return out


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silence torch.onnx's progress lines, its warnings about torchvision operators (torchvision is not a
    dependency) and deprecation warnings while a model is exported: none is about the user's model."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def calibration_frames(data: str | Path, n: int, seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """Up to ``n`` uint8 RGB frames ``(H, W, 3)`` drawn (seeded) from ``data``, and where each came from.

    ``data`` is a plain folder of images, or any data set polypseg reads (its images; masks unused).

    Raises:
        DataError: ``data`` holds no readable frame; the message names it.
    """
    from polypseg.data.io import IMAGE_EXTENSIONS, read_image
    from polypseg.data.sources import discover, read_sample

    path = Path(data)
    if not path.exists():
        raise DataError(f"calibration data {path} does not exist")
    listed = sorted(path.iterdir()) if path.is_dir() else []
    plain = [p for p in listed if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()]
    rng = np.random.default_rng(seed)
    if plain:
        picked = sorted(rng.choice(len(plain), size=min(n, len(plain)), replace=False))
        return [read_image(plain[i]) for i in picked], [plain[i].name for i in picked]
    samples = discover(path)
    picked = sorted(rng.choice(len(samples), size=min(n, len(samples)), replace=False))
    return [read_sample(samples[i])[0] for i in picked], [samples[i].id for i in picked]


def _quantise(fp32: Path, ready: Path, out: Path, frames: list[np.ndarray], pre: dict) -> None:
    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise MissingExtraError("int8 export needs onnxruntime: pip install -e '.[onnx]'") from exc

    class Frames(CalibrationDataReader):  # one preprocessed frame (1, 3, S, S) per call, as Predictor feeds them
        def __init__(self) -> None:
            self.items: Iterator[np.ndarray] = iter(frames)

        def get_next(self) -> dict[str, np.ndarray] | None:
            frame = next(self.items, None)
            if frame is None:
                return None
            small = resize_image(frame, int(pre["size"]))[None]
            return {"image": normalise(small, pre["mean"], pre["std"]).numpy()}

    quant_pre_process(str(fp32), str(ready), skip_symbolic_shape=True)  # folds BatchNorm, infers shapes
    quantize_static(
        str(ready),
        str(out),
        Frames(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


def read_onnx_meta(path: str | Path) -> dict:
    """The ``polypseg`` metadata of an exported model."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for prop in proto.metadata_props:
        if prop.key == META_KEY:
            return json.loads(prop.value)
    raise MissingExtraError(f"{path} has no polypseg metadata: export it with 'polypseg export'")


def is_int8(meta: dict) -> bool:
    """Whether an exported model's metadata says it is quantised."""
    return "quantization" in meta
