"""ONNX export: the exported model matches PyTorch and runs in the Predictor (extra 'onnx')."""

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from polypseg.checkpoint import load_checkpoint, update_checkpoint_meta
from polypseg.config import load_recipe
from polypseg.inference import Predictor
from polypseg.inference.export import export_onnx, read_onnx_meta
from polypseg.training import fit


@pytest.mark.slow
def test_onnx_matches_torch_and_predicts(tmp_path: Path) -> None:
    recipe = load_recipe("quick", {"epochs": 1, "data.size": 64, "model.args.base": 4, "precision": "32"})
    run = fit(recipe, ["synthetic:n=40,size=64,seed=2"], tmp_path / "run", progress=False).run_dir
    # both tuned thresholds travel with the export: a --tta run of the .onnx uses the TTA one
    update_checkpoint_meta(run / "checkpoints" / "best.ckpt", threshold=0.4, tta_threshold=0.3,
                           tta_threshold_source="tuned with flip TTA")  # fmt: skip
    onnx_path = export_onnx(run, tmp_path / "model.onnx")
    meta = read_onnx_meta(onnx_path)
    assert meta["preprocess"]["size"] == 64 and meta["model_name"] == "unet"
    assert Predictor.from_checkpoint(onnx_path).threshold == pytest.approx(0.4)
    assert Predictor.from_checkpoint(onnx_path, tta=True).threshold == pytest.approx(0.3)

    import onnxruntime as ort

    model = load_checkpoint(run / "checkpoints" / "best.ckpt").model
    x = torch.randn(3, 3, 64, 64)  # a batch size other than the export example's
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (onnx_logits,) = sess.run(["logits"], {"image": x.numpy()})
    with torch.no_grad():
        torch_logits = model(x).numpy()
    assert np.abs(onnx_logits - torch_logits).max() < 1e-3

    frames = [np.random.default_rng(i).integers(0, 256, (50, 70, 3), dtype=np.uint8) for i in range(3)]
    p_torch = list(Predictor.from_checkpoint(run).predict_proba(frames))
    p_onnx = list(Predictor.from_checkpoint(onnx_path).predict_proba(frames))
    for a, b in zip(p_torch, p_onnx, strict=True):
        assert a.shape == (50, 70) and np.abs(a - b).max() < 1e-4
