"""Fine-tuning from a local weights file: what is copied, what is refused, and that training uses it."""

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from polypseg.cli import app
from polypseg.config import load_recipe
from polypseg.models import build_model
from polypseg.training import fit
from polypseg.training.finetune import InitWeightsError, init_weights_from

DATA = "synthetic:n=32,size=64,seed=5"


def _unet(seed: int, **args: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("unet", base=8, depth=3, **args)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("layout", ["plain", "ddp", "lightning"])
def test_init_copies_every_tensor_from_each_file_layout(tmp_path: Path, layout: str) -> None:
    source, target = _unet(0), _unet(1)
    assert not _same(source, target)
    state = source.state_dict()
    obj = {
        "plain": state,
        "ddp": {f"module.{k}": v for k, v in state.items()},
        "lightning": {"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 3},
    }[layout]
    path = tmp_path / "w.pt"
    torch.save(obj, path)
    assert init_weights_from(target, path) == {"loaded": len(state), "kept": 0, "unused": 0}
    assert _same(source, target)


def test_init_refuses_what_does_not_fit_and_partial_copies_what_does(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save(_unet(0).state_dict(), path)
    wide = build_model("unet", base=16, depth=3)
    with pytest.raises(InitWeightsError, match=r"plain\.pt does not fit the model.*shape: "):
        init_weights_from(wide, path)
    deep = _unet(2, deep_supervision=True)  # has auxiliary heads the file lacks
    n_aux = len(deep.state_dict()) - len(_unet(0).state_dict())
    assert n_aux > 0
    with pytest.raises(InitWeightsError, match=r"missing: "):
        init_weights_from(deep, path)
    before = {k: v.clone() for k, v in deep.state_dict().items()}
    assert init_weights_from(deep, path, strict=False) == {"loaded": len(before) - n_aux, "kept": n_aux, "unused": 0}
    after, src = deep.state_dict(), torch.load(path, weights_only=True)
    for k, v in after.items():
        assert torch.equal(v, src[k] if k in src else before[k]), k
    bad = tmp_path / "list.pt"
    torch.save([1, 2, 3], bad)
    with pytest.raises(InitWeightsError, match=r"list\.pt holds no state dict"):
        init_weights_from(deep, bad)
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pt"):
        init_weights_from(deep, tmp_path / "nowhere.pt")


def _recipe(**extra: object):
    return load_recipe(
        "quick",
        {
            "epochs": 1,
            "data.size": 64,
            "data.batch_size": 8,
            "model.args.base": 8,
            "model.args.depth": 3,
            "precision": "32",
            **extra,
        },
    )


@pytest.mark.slow
def test_fine_tuning_starts_from_the_file(tmp_path: Path) -> None:
    """With a learning rate of 1e-12 one epoch cannot move the weights: the run's convolution weights
    must still be the file's, not a fresh initialisation."""
    source = _unet(7)  # not the seed the run itself initialises with
    path = tmp_path / "pretrained.pt"
    torch.save(source.state_dict(), path)
    recipe = _recipe(**{"optimizer.name": "adam", "optimizer.lr": 1e-12, "optimizer.weight_decay": 0.0})
    res = fit(recipe.model_copy(update={"init_weights": str(path)}), [DATA], tmp_path / "ft", progress=False)
    got = torch.load(res.last_ckpt, weights_only=True)["state_dict"]
    for k, v in source.state_dict().items():
        if v.ndim == 4:  # convolution weights (batch-norm statistics move in any training)
            assert torch.allclose(got[f"model.{k}"], v, atol=1e-6), k
    env = json.loads((res.run_dir / "env.json").read_text())
    assert env["init_weights"] == {
        "path": str(path.resolve()),
        "loaded": len(source.state_dict()),
        "kept": 0,
        "unused": 0,
    }
    fresh = fit(recipe, [DATA], tmp_path / "fresh", progress=False)
    conv = next(k for k, v in source.state_dict().items() if v.ndim == 4)
    assert not torch.allclose(
        torch.load(fresh.last_ckpt, weights_only=True)["state_dict"][f"model.{conv}"], source.state_dict()[conv]
    )


def test_cli_init_that_does_not_fit_fails_before_writing_the_run(tmp_path: Path) -> None:
    path = tmp_path / "wide.pt"
    torch.save(build_model("unet", base=16, depth=3).state_dict(), path)
    recipe = tmp_path / "r.yaml"
    from polypseg.config import dump_recipe

    recipe.write_text(dump_recipe(_recipe()))
    out = tmp_path / "run"
    res = CliRunner().invoke(
        app, ["train", "--recipe", str(recipe), "--data", DATA, "--out", str(out), "--init", str(path), "--no-progress"]
    )
    assert res.exit_code == 2 and "wide.pt does not fit the model" in res.output and "--init-partial" in res.output
    assert not out.exists()
