"""Inference backends: torch, ONNX Runtime fp32 and int8, and ``auto`` (polypseg.inference.backends)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from polypseg.cli import app
from polypseg.config import load_recipe
from polypseg.errors import InputError
from polypseg.inference import Predictor
from polypseg.inference import backends as backends_mod
from polypseg.inference.backends import BackendChoice, choose_auto, file_digest
from polypseg.inference.export import calibration_frames, export_onnx, read_onnx_meta
from polypseg.paths import cache_root
from polypseg.training import fit

pytestmark = pytest.mark.slow
FRAMES = [np.random.default_rng(i).integers(0, 256, (50, 70, 3), dtype=np.uint8) for i in range(3)]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    recipe = load_recipe("quick", {"epochs": 2, "data.size": 64, "model.args.base": 4, "precision": "32"})
    root = tmp_path_factory.mktemp("backends")
    return fit(recipe, ["synthetic:n=40,size=64,seed=2"], root / "run", progress=False).run_dir


@pytest.fixture(scope="module")
def frames_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain folder of 12 images (no masks): calibration frames."""
    import cv2

    folder = tmp_path_factory.mktemp("calib")
    for i in range(12):
        cv2.imwrite(
            str(folder / f"f{i:02d}.png"), np.random.default_rng(100 + i).integers(0, 256, (48, 60, 3), np.uint8)
        )
    return folder


def test_onnx_backend_exports_a_checkpoint_once_and_matches_torch(run: Path) -> None:
    lines: list[str] = []
    onnx = Predictor.from_checkpoint(run, backend="onnx", log=lines.append)
    cached = cache_root() / "onnx" / f"{file_digest(run / 'checkpoints' / 'best.ckpt')}.onnx"
    assert onnx.session is not None and onnx.backend.name == "onnx" and cached.exists()
    assert len(lines) == 1 and str(cached) in lines[0]
    again = Predictor.from_checkpoint(run, backend="onnx", log=lines.append)
    assert len(lines) == 1  # not exported a second time
    torch_pred = Predictor.from_checkpoint(run, backend="torch", precision="32")
    assert torch_pred.session is None and torch_pred.backend.name == "torch"
    for a, b, c in zip(torch_pred.predict_proba(FRAMES), onnx.predict_proba(FRAMES), again.predict_proba(FRAMES),
                       strict=True):  # fmt: skip
        assert a.shape == (50, 70) and np.abs(a - b).max() < 1e-4 and np.array_equal(b, c)
    assert onnx.threshold == torch_pred.threshold


def test_int8_export_is_quantised_calibrated_and_close_to_fp32(run: Path, frames_folder: Path, tmp_path: Path) -> None:
    import onnx

    path = export_onnx(run, tmp_path / "int8.onnx", int8=True, calibrate=frames_folder, calibration_images=8)
    meta = read_onnx_meta(path)
    cal = meta["quantization"]["calibration"]
    assert meta["quantization"]["format"] == "QDQ" and cal["images"] == 8 and cal["data"] == str(frames_folder)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "BatchNormalization" not in ops
    int8 = Predictor.from_checkpoint(path)
    assert int8.backend.name == "onnx-int8" and Predictor.from_checkpoint(path, backend="onnx-int8").session
    fp32 = Predictor.from_checkpoint(run, precision="32")
    for a, b in zip(fp32.predict_proba(FRAMES), int8.predict_proba(FRAMES), strict=True):
        assert np.abs(a - b).mean() < 0.05  # quantisation noise, not a different model
        assert ((a > 0.5) == (b > 0.5)).mean() > 0.9


def test_int8_from_a_checkpoint_with_calibration_is_cached(run: Path, frames_folder: Path) -> None:
    lines: list[str] = []
    pred = Predictor.from_checkpoint(run, backend="onnx-int8", calibrate=frames_folder, log=lines.append)
    assert pred.backend.name == "onnx-int8" and "quantization" in pred.meta
    Predictor.from_checkpoint(run, backend="onnx-int8", calibrate=frames_folder, log=lines.append)
    assert len(lines) == 1 and "-int8-" in lines[0]


def test_backend_mismatches_are_input_errors(run: Path, tmp_path: Path) -> None:
    fp32 = export_onnx(run, tmp_path / "fp32.onnx")
    with pytest.raises(InputError, match="is an ONNX file: it runs with --backend onnx"):
        Predictor.from_checkpoint(fp32, backend="torch")
    with pytest.raises(InputError, match="fp32 ONNX model, not int8"):
        Predictor.from_checkpoint(fp32, backend="onnx-int8")
    with pytest.raises(InputError, match="needs calibration frames: add --calibrate DATA"):
        Predictor.from_checkpoint(run, backend="onnx-int8")
    with pytest.raises(InputError, match="unknown backend 'tensorrt'; choose one of: auto, torch, onnx, onnx-int8"):
        Predictor.from_checkpoint(run, backend="tensorrt")
    with pytest.raises(InputError, match="int8 export needs calibration frames"):
        export_onnx(run, tmp_path / "x.onnx", int8=True)
    assert Predictor.from_checkpoint(fp32, backend="auto").backend.name == "onnx"


def test_auto_keeps_the_faster_backend_and_caches_the_decision(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = run / "checkpoints" / "best.ckpt"
    store = cache_root() / "backends.json"
    store.unlink(missing_ok=True)

    def build(name: str) -> Predictor:
        return Predictor.from_checkpoint(ckpt, backend=name, precision="32")

    timed: list[str] = []

    def fake_timer(p: Predictor) -> float:  # ONNX Runtime "faster" here
        timed.append(p.backend.name)
        return 0.010 if p.session is not None else 0.030

    pred, choice = choose_auto(ckpt, build, torch.device("cpu"), timer=fake_timer)
    assert choice.name == "onnx" and pred.session is not None and sorted(timed) == ["onnx", "torch"]
    assert "10.0 ms/frame in ONNX Runtime fp32 against 30.0 in torch fp32" in choice.reason
    entry = next(iter(json.loads(store.read_text()).values()))
    assert entry["onnx"] == 0.010 and entry["torch"] == 0.030

    def no_timer(p: Predictor) -> float:
        raise AssertionError("the cached decision must be used")

    pred2, choice2 = choose_auto(ckpt, build, torch.device("cpu"), timer=no_timer)
    assert choice2.name == "onnx" and pred2.session is not None

    store.write_text(json.dumps({k: {**v, "onnx": 0.5} for k, v in json.loads(store.read_text()).items()}))
    pred3, choice3 = choose_auto(ckpt, build, torch.device("cpu"), timer=no_timer)
    assert choice3.name == "torch" and pred3.session is None  # the stored timings decide

    monkeypatch.setattr(backends_mod, "onnx_available", lambda: False)
    _, choice4 = choose_auto(ckpt, build, torch.device("cpu"), timer=no_timer)
    assert choice4.name == "torch" and "ONNX Runtime is not installed" in choice4.reason


def test_auto_on_a_gpu_is_torch_without_a_trial() -> None:
    built: list[str] = []

    def build(name: str) -> object:
        built.append(name)
        return object()

    _, choice = choose_auto(Path("unused.ckpt"), build, torch.device("cuda"), timer=lambda p: 1 / 0)  # type: ignore[arg-type]
    assert choice == BackendChoice("torch", "auto: torch on cuda") and built == ["torch"]


def test_real_auto_trial_gives_a_working_predictor(run: Path) -> None:
    (cache_root() / "backends.json").unlink(missing_ok=True)
    pred = Predictor.from_checkpoint(run, backend="auto", precision="32")
    assert pred.backend.name in ("torch", "onnx") and pred.backend.reason.startswith(f"auto: {pred.backend.name}")
    ref = Predictor.from_checkpoint(run, backend=pred.backend.name, precision="32")
    for a, b in zip(pred.predict_proba(FRAMES), ref.predict_proba(FRAMES), strict=True):
        assert np.array_equal(a, b)


def test_calibration_frames_from_plain_and_data_folders(frames_folder: Path, pair_folder: Path) -> None:
    frames, names = calibration_frames(frames_folder, 5, seed=3)
    again, names2 = calibration_frames(frames_folder, 5, seed=3)
    assert len(frames) == 5 and names == names2 and len(set(names)) == 5
    assert all(f.dtype == np.uint8 and f.shape == (48, 60, 3) for f in frames)
    assert all(np.array_equal(a, b) for a, b in zip(frames, again, strict=True))
    frames, names = calibration_frames(pair_folder, 100)  # an images/ + masks/ data set: its 10 images
    assert len(frames) == 10 and all(n.startswith("toy/") for n in names)
    from polypseg.data.errors import DataError

    with pytest.raises(DataError, match="does not exist"):
        calibration_frames(frames_folder / "missing", 4)


def test_cli_backend_option_and_int8_export(run: Path, frames_folder: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    cli = CliRunner()
    image = tmp_path / "frame.png"
    import cv2

    cv2.imwrite(str(image), FRAMES[0])
    res = cli.invoke(app, ["predict", str(run), str(image), "--out", str(tmp_path / "p1"), "--backend", "onnx"])
    assert res.exit_code == 0, res.output
    assert "backend: onnx (as asked)" in res.output and (tmp_path / "p1" / "frame_mask.png").exists()
    res = cli.invoke(app, ["predict", str(run), str(image), "--out", str(tmp_path / "p2"), "--backend", "gpu"])
    assert res.exit_code == 2 and "unknown backend 'gpu'" in res.output
    monkeypatch.setenv("POLYPSEG_BACKEND", "torch")
    res = cli.invoke(app, ["predict", str(run), str(image), "--out", str(tmp_path / "p3")])
    assert res.exit_code == 0 and "backend: torch (as asked)" in res.output
    out = tmp_path / "m-int8.onnx"
    res = cli.invoke(app, ["export", str(run), "--out", str(out), "--int8", "--calibrate", str(frames_folder),
                           "--calibration-images", "6"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "int8, calibrated on 6 frames" in res.output and read_onnx_meta(out)["quantization"]
    res = cli.invoke(app, ["export", str(run), "--out", str(tmp_path / "y.onnx"), "--calibrate", str(frames_folder)])
    assert res.exit_code == 2 and "--calibrate is for --int8 exports" in res.output
    res = cli.invoke(app, ["predict", str(out), str(image), "--out", str(tmp_path / "p4"), "--backend", "auto"])
    assert res.exit_code == 0 and "onnx-int8: m-int8.onnx is an int8 ONNX model" in res.output
