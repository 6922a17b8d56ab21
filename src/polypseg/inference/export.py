"""Export a trained model to ONNX for ONNX Runtime (extra ``onnx``).

The ``.onnx`` file is self-describing like a checkpoint: its metadata property ``polypseg`` holds the
model name and arguments, the preprocessing (size, mean, std) and the threshold, so
:meth:`polypseg.inference.Predictor.from_checkpoint` can load it directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from polypseg.atomic import atomic_save
from polypseg.errors import MissingExtraError
from polypseg.zoo import load_model, resolve_model

META_KEY = "polypseg"


def export_onnx(run_or_ckpt: str | Path, out: str | Path, opset: int = 18) -> Path:
    """Write ``out`` (``.onnx``): input ``image`` float32 ``(N, 3, S, S)`` (N dynamic), output
    ``logits`` ``(N, 1, S, S)``. Returns the path.

    Raises:
        ImportError: ``onnx`` / ``onnxscript`` are not installed (``pip install -e .[onnx]``).
    """
    try:
        import onnx
    except ImportError as exc:
        raise MissingExtraError("ONNX export needs the 'onnx' extra: pip install -e '.[onnx]'") from exc
    source = resolve_model(run_or_ckpt)
    model, model_meta = load_model(source)
    size = int(model_meta["preprocess"]["size"])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.randn(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.onnx.export(
        model.eval(),
        (example,),
        dynamo=True,
        input_names=["image"],
        output_names=["logits"],
        dynamic_shapes={"x": {0: batch}},
        opset_version=opset,
        external_data=False,
    )
    meta = {k: model_meta[k] for k in ("model_name", "model_args", "preprocess", "threshold", "threshold_source")}
    meta["source_checkpoint"] = str(source)

    def write(tmp: Path) -> None:  # saved once with its metadata, then renamed into place
        program.save(str(tmp))
        proto = onnx.load(str(tmp))
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_KEY, json.dumps(meta)
        onnx.save(proto, str(tmp))

    atomic_save(out, write)
    return out


def read_onnx_meta(path: str | Path) -> dict:
    """The ``polypseg`` metadata of an exported model."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for prop in proto.metadata_props:
        if prop.key == META_KEY:
            return json.loads(prop.value)
    raise MissingExtraError(f"{path} has no polypseg metadata: export it with 'polypseg export'")
