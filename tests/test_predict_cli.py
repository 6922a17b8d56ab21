"""``polypseg predict`` on inputs that share a file stem, and its ``--threshold`` check (tiny trained run)."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from polypseg.cli import app
from polypseg.config import load_recipe
from polypseg.inference.predict import unique_stem
from polypseg.training import fit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("pred") / "run"
    recipe = load_recipe("quick", {"epochs": 1, "data.size": 64, "data.batch_size": 8, "model.args.base": 4})
    fit(recipe, ["synthetic:n=24,size=64,seed=1"], run, progress=False)
    return run


def test_unique_stem_numbers_clashes_and_skips_taken_names() -> None:
    used: set[str] = set()
    names = [unique_stem(s, used) for s in ("x", "x_2", "x", "x", "y", "x_2")]
    assert names == ["x", "x_2", "x_3", "x_4", "y", "x_2_2"]
    assert used == set(names)


def test_predict_same_stem_inputs_get_distinct_masks(tiny_run: Path, tmp_path: Path) -> None:
    """Six inputs named x (three parents, two sub-folders sharing a name, x.png beside x.jpg) and an x_2.png:
    seven masks, none overwritten, each at the size of its own input."""
    inputs = ["a/x.png", "b/x.png", "c/x.png", "a/sub/x.png", "b/sub/x.png", "c/x.jpg", "d/x_2.png"]
    sizes = {}
    for k, rel in enumerate(inputs):
        path = tmp_path / "in" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sizes[rel] = (40 + 4 * k, 56 + 2 * k)  # a size per input tells which input a mask came from
        image = np.random.default_rng(k).integers(0, 256, (*sizes[rel], 3), dtype=np.uint8)
        cv2.imwrite(str(path), image)
    args = [str(tmp_path / "in" / rel) for rel in inputs if rel != "a/sub/x.png"]
    args.insert(3, str(tmp_path / "in" / "a" / "sub"))  # a folder input in a/sub's place
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["predict", str(tiny_run), *args, "--out", str(out)])
    assert res.exit_code == 0, res.output
    expected = ["x", "x_2", "x_3", "x_4", "x_5", "x_6", "x_2_2"]
    assert sorted(p.name for p in out.glob("*_mask.png")) == sorted(f"{s}_mask.png" for s in expected)
    assert sorted(p.name for p in out.glob("*_overlay.png")) == sorted(f"{s}_overlay.png" for s in expected)
    for stem, rel in zip(expected, inputs, strict=True):
        mask = cv2.imread(str(out / f"{stem}_mask.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == sizes[rel], (stem, rel)
        assert set(np.unique(mask)) <= {0, 255}
    assert "wrote 7 masks" in res.output


@pytest.mark.parametrize("value", ["0", "1", "-0.2", "1.5"])
def test_predict_refuses_threshold_outside_zero_one(tiny_run: Path, tmp_path: Path, value: str) -> None:
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    res = CliRunner().invoke(
        app, ["predict", str(tiny_run), str(image), "--out", str(tmp_path / "o"), "--threshold", value]
    )
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.replace("│", " ").split())  # rich wraps the message in a box
    assert "Invalid value for '--threshold'" in text and f"in (0, 1), got {float(value)}" in text
    assert not (tmp_path / "o").exists()  # refused before anything was predicted


def test_predict_accepts_threshold_inside_zero_one(tiny_run: Path, tmp_path: Path) -> None:
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    res = CliRunner().invoke(
        app, ["predict", str(tiny_run), str(image), "--out", str(tmp_path / "o"), "--threshold", "0.3"]
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "x_mask.png").exists()
