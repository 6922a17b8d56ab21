"""What ``evaluate`` and ``tune`` score is decided by image content: the run's split, a whole external set,
or a refusal for a mix (defect: a new seeded split was cut of foreign data, and tune could tune on
training images)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from polypseg.cli import app
from polypseg.config import load_recipe
from polypseg.data.errors import DataError
from polypseg.data.synthetic import write_synthetic
from polypseg.evaluation import evaluate, tune_threshold
from polypseg.training import fit

pytestmark = pytest.mark.slow
TINY = {"epochs": 1, "data.size": 64, "data.batch_size": 8, "model.args.base": 4, "model.args.depth": 2}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A run on folder A (pairs layout, a seeded 70/15/15 split), and folder B of other images."""
    root = tmp_path_factory.mktemp("sel")
    write_synthetic(root / "syn_a", n=40, size=64, seed=11)
    write_synthetic(root / "syn_b", n=20, size=64, seed=12)
    a, b = root / "A", root / "B"
    for src, dst in ((root / "syn_a", a), (root / "syn_b", b)):  # flatten: one pairs folder, no splits
        for kind in ("images", "masks"):
            (dst / kind).mkdir(parents=True)
            for f in sorted(src.glob(f"*/{kind}/*")):
                shutil.copy(f, dst / kind / f"{dst.name.lower()}_{f.parent.parent.name}_{f.name}")
    run = root / "run"
    fit(load_recipe("quick", TINY), [str(a)], run, progress=False)
    return {"a": a, "b": b, "run": run, "root": root}


def _split(run: Path) -> dict[str, list[str]]:
    return json.loads((run / "split.json").read_text())["splits"]


def test_external_data_is_scored_whole(trained: dict[str, Path]) -> None:
    res = evaluate(trained["run"], [str(trained["b"])])
    assert res.summary["metrics"]["n_images"] == 20  # every image, not a random 15 % "test" split
    assert res.summary["selection"]["kind"] == "external"
    assert res.out_dir == trained["run"] / "eval" / "B"


def test_the_runs_own_data_uses_its_split_file(trained: dict[str, Path]) -> None:
    res = evaluate(trained["run"])
    assert sorted(r["id"] for r in res.rows) == _split(trained["run"])["test"]
    assert res.summary["selection"]["kind"] == "run-split" and res.summary["split"] == "test"
    val = evaluate(trained["run"], [str(trained["a"])], split="val")  # given explicitly: the same data
    assert sorted(r["id"] for r in val.rows) == _split(trained["run"])["val"]


def test_a_copy_of_the_runs_data_under_another_name_is_recognised_by_content(trained: dict[str, Path]) -> None:
    copy = trained["root"] / "renamed_copy"
    if not copy.exists():
        shutil.copytree(trained["a"], copy)
    res = evaluate(trained["run"], [str(copy)])
    assert res.summary["selection"]["kind"] == "run-split"
    assert len(res.rows) == len(_split(trained["run"])["test"])


def test_data_partly_the_runs_training_images_is_refused(trained: dict[str, Path]) -> None:
    mixed = trained["root"] / "mixed"
    if not mixed.exists():
        shutil.copytree(trained["b"], mixed)
        train_stems = [i.split("/", 1)[1] for i in _split(trained["run"])["train"][:3]]
        for stem in train_stems:
            for kind, ext in (("images", ".png"), ("masks", ".png")):
                shutil.copy(trained["a"] / kind / f"{stem}{ext}", mixed / kind / f"{stem}{ext}")
    with pytest.raises(DataError, match=r"3 of the 23 images given are among the run's training"):
        evaluate(trained["run"], [str(mixed)])
    result = CliRunner().invoke(app, ["evaluate", str(trained["run"]), "--data", str(mixed)])
    assert result.exit_code == 2 and "3 of the 23 images" in result.output


def test_external_data_without_that_predefined_split_is_refused(trained: dict[str, Path]) -> None:
    with pytest.raises(DataError, match="no predefined 'test' split"):
        evaluate(trained["run"], [str(trained["b"])], split="test")


def test_tune_uses_only_the_runs_validation_images(trained: dict[str, Path]) -> None:
    with pytest.raises(DataError, match=r"none of the run's .* validation images"):
        tune_threshold(trained["run"], [str(trained["b"])])
    tune_threshold(trained["run"], [str(trained["a"]), str(trained["b"])])  # B's images are never used
    n_val = len(_split(trained["run"])["val"])
    assert f"({n_val} images" in json.loads((trained["run"] / "threshold.json").read_text())["source"]


def test_a_duplicate_of_a_training_image_is_never_scored_as_test(tmp_path: Path) -> None:
    """The same bytes under two names, one copy cut into train and one into test: the test copy is scored as
    the run's test image (its own id decides), and an unknown copy counts as the training image it equals."""
    write_synthetic(tmp_path / "syn", n=30, size=64, seed=21)
    data = tmp_path / "D"
    for kind in ("images", "masks"):
        (data / kind).mkdir(parents=True)
        for f in sorted((tmp_path / "syn").glob(f"*/{kind}/*")):
            shutil.copy(f, data / kind / f"{f.parent.parent.name}_{f.name}")
    first = sorted((data / "images").iterdir())[0].name
    for kind in ("images", "masks"):  # 10 copies of one image: the seeded split puts them on both sides
        for k in range(10):
            shutil.copy(data / kind / first, data / kind / f"copy{k}_{first}")
    run = tmp_path / "run"
    fit(load_recipe("quick", TINY), [str(data)], run, progress=False)
    split = _split(run)
    copies = {f"D/copy{k}_{Path(first).stem}" for k in range(10)} | {f"D/{Path(first).stem}"}
    assert copies & set(split["train"]) and copies & set(split["test"]), "the test needs copies on both sides"
    res = evaluate(run)
    assert sorted(r["id"] for r in res.rows) == split["test"]  # by id: exactly the run's test split
    extra = tmp_path / "E"
    shutil.copytree(data, extra)
    for kind in ("images", "masks"):  # one more, unknown copy: it equals a training image, so it is not test
        shutil.copy(data / kind / first, extra / kind / f"new_{first}")
    res = evaluate(run, [str(extra)])
    assert "E/new_" + Path(first).stem not in {r["id"] for r in res.rows}
