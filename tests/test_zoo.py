"""Shipped models: a model name works wherever a run folder or checkpoint does (predict, evaluate, export,
train --init), from safetensors weights and a JSON model card, with no pickle and no download."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from polypseg import zoo
from polypseg.cli import app
from polypseg.config import load_recipe
from polypseg.data.sources import discover, read_sample
from polypseg.evaluation import evaluate
from polypseg.inference import Predictor
from polypseg.models import build_model
from polypseg.training import fit
from polypseg.training.finetune import fitting_tensors

pytestmark = pytest.mark.slow
DATA = "synthetic:n=24,size=64,seed=4"
TINY = {"epochs": 1, "data.size": 64, "data.batch_size": 8, "model.args.base": 4, "model.args.depth": 2}
CARD = {"training_data": {"name": "synthetic", "licence": "CC0"}, "figures": {"validation_mdice": 0.5}}


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("zoo")
    run = root / "run"
    fit(load_recipe("quick", TINY), [DATA], run, progress=False)
    folder = root / "models"
    zoo.write_shipped_model(run / "checkpoints" / "best.ckpt", "tiny32", CARD, folder, dtype=torch.float32)
    zoo.write_shipped_model(run / "checkpoints" / "best.ckpt", "tiny16", CARD, folder, dtype=torch.float16)
    return {"run": run, "folder": folder}


@pytest.fixture
def in_zoo(shipped: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setattr(zoo, "zoo_root", lambda: shipped["folder"])
    return shipped


def _frames() -> list[np.ndarray]:
    return [read_sample(s)[0] for s in discover(DATA)[:6]]


def test_a_shipped_model_predicts_what_its_checkpoint_predicts(in_zoo: dict[str, Path]) -> None:
    ref = Predictor.from_checkpoint(in_zoo["run"])
    exact = Predictor.from_checkpoint("tiny32")
    half = Predictor.from_checkpoint("tiny16")
    assert exact.meta["shipped_model"] == "tiny32" and exact.threshold == ref.threshold
    for a, b, c in zip(ref.predict_proba(_frames()), exact.predict_proba(_frames()), half.predict_proba(_frames()),
                       strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)
        assert np.abs(a - c).max() < 1e-2  # fp16 weights: close, not equal


def test_shipped_weights_are_safetensors_and_fp16_halves_the_size(in_zoo: dict[str, Path]) -> None:
    w32, w16 = (in_zoo["folder"] / f"{n}.safetensors" for n in ("tiny32", "tiny16"))
    assert w16.stat().st_size < 0.6 * w32.stat().st_size
    assert w16.read_bytes()[8:9] == b"{"  # safetensors: an 8-byte header length, then a JSON header, no pickle


def test_model_names_work_in_the_cli_and_for_fine_tuning(in_zoo: dict[str, Path], tmp_path: Path) -> None:
    listed = CliRunner().invoke(app, ["models"])
    assert listed.exit_code == 0 and "tiny16" in listed.output and "tiny32" in listed.output
    image = next(iter(discover(DATA))).image
    res = CliRunner().invoke(app, ["predict", "--model", "tiny16", str(image), "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "p" / f"{image.stem}_mask.png").exists()
    probe = fit(load_recipe("quick", {**TINY, "init_weights": "tiny32"}), [DATA], tmp_path / "ft", progress=False)
    assert probe.epochs_done == 1
    target = build_model("unet", base=4, depth=2).state_dict()
    tensors, counts = fitting_tensors(target, "tiny32", strict=True)
    assert counts == {"loaded": len(target), "kept": 0, "unused": 0}
    assert all(t.dtype == target[k].dtype for k, t in tensors.items())


def test_an_unknown_model_name_lists_the_shipped_ones(in_zoo: dict[str, Path]) -> None:
    with pytest.raises(FileNotFoundError, match="shipped: tiny16, tiny32"):
        Predictor.from_checkpoint("no-such-model")


def test_evaluating_a_shipped_model_scores_the_data_whole(in_zoo: dict[str, Path], tmp_path: Path) -> None:
    res = evaluate("tiny32", [DATA], out_dir=tmp_path / "ev")
    assert res.summary["metrics"]["n_images"] == 24 and res.summary["selection"]["kind"] == "unchecked"
