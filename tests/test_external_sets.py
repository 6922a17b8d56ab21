"""Several external test sets in one ``evaluate`` (issue #15 item 1): one set per --data or per sub-folder of
a PraNet TestDataset/, each scored whole on its own, the table over them, and refusal of seen images."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import write_pair
from typer.testing import CliRunner

from polypseg.cli import app
from polypseg.config import load_recipe
from polypseg.evaluation.sets import expand_sets, render_tables, table_rows
from polypseg.training import fit


@pytest.fixture(scope="module")
def own_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sets")
    own = root / "own"
    for i in range(14):
        write_pair(own, f"own{i:02d}", size=(48, 48), seed=100 + i)
    run = root / "run"
    recipe = load_recipe("quick", {"epochs": 1, "data.size": 32, "data.batch_size": 4, "model.args.base": 4,
                                   "model.args.depth": 2, "precision": "32"})  # fmt: skip
    fit(recipe, [str(own)], run, progress=False)
    return run, own


def _test_dataset(root: Path, counts: dict[str, int]) -> Path:
    for k, (name, n) in enumerate(counts.items()):
        for i in range(n):
            write_pair(root / "TestDataset" / name, f"{name}_{i}", size=(40 + 8 * k, 56), seed=1000 * (k + 1) + i)
    return root / "TestDataset"


def test_a_testdataset_folder_gives_one_row_per_set_and_the_two_means(own_run, tmp_path: Path) -> None:
    run, _ = own_run
    sets = _test_dataset(tmp_path, {"CVC-300": 3, "ETIS_Larib": 5, "Kvasir": 2})
    out = tmp_path / "table"
    res = CliRunner().invoke(app, ["evaluate", str(run), "--data", str(sets), "--out", str(out), "--no-report"])
    assert res.exit_code == 0, res.output
    with (out / "table.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    counts = {"CVC-300": 3, "ETIS_Larib": 5, "Kvasir": 2}
    assert [r["set"] for r in rows] == [*counts, "mean over sets", "image-weighted mean"]
    summaries = {name: json.loads((out / name / "summary.json").read_text()) for name in ("CVC-300", "ETIS_Larib",
                                                                                           "Kvasir")}  # fmt: skip
    for r in rows[:3]:
        s = summaries[r["set"]]
        assert s["selection"]["kind"] == "external" and s["split"] == "all"  # whole, never a cut split
        assert (
            int(float(r["images"]))
            == s["metrics"]["n_images"]
            == {"CVC-300": 3, "ETIS_Larib": 5, "Kvasir": 2}[r["set"]]
        )
        assert float(r["mDice"]) == pytest.approx(s["metrics"]["mean"]["dice"])
        assert float(r["MAE"]) == pytest.approx(s["structure"]["mae"])
        assert (out / r["set"] / "per_image.csv").exists()
    dice = [summaries[n]["metrics"]["mean"]["dice"] for n in ("CVC-300", "ETIS_Larib", "Kvasir")]
    assert float(rows[3]["mDice"]) == pytest.approx(sum(dice) / 3)
    assert float(rows[4]["mDice"]) == pytest.approx((3 * dice[0] + 5 * dice[1] + 2 * dice[2]) / 10)
    assert float(rows[4]["images"]) == 10
    md = (out / "table.md").read_text()
    assert md.startswith("| set | images | mDice | mIoU | wF | S | mean E | max E | MAE |")
    tex = (out / "table.tex").read_text()
    assert "ETIS\\_Larib" in tex and "\\toprule" in tex and tex.count("\\\\") == 6  # header + 5 rows


def test_repeated_data_are_separate_sets_with_reports(own_run, tmp_path: Path) -> None:
    run, _ = own_run
    sets = _test_dataset(tmp_path, {"A": 2, "B": 3})
    res = CliRunner().invoke(app, ["evaluate", str(run), "--data", str(sets / "A"), "--data", str(sets / "B")])
    assert res.exit_code == 0, res.output
    out = run / "eval" / "A+B"
    assert (out / "table.md").exists()
    for name, n in (("A", 2), ("B", 3)):
        assert json.loads((out / name / "summary.json").read_text())["metrics"]["n_images"] == n
        assert (out / name / "report.html").exists()  # several sets: a report per set by default


def test_a_set_sharing_training_images_is_refused_with_the_count_before_anything_is_scored(
    own_run, tmp_path: Path
) -> None:
    run, own = own_run
    sets = _test_dataset(tmp_path, {"clean": 2})
    mixed = tmp_path / "mixed"
    for p in sorted((own / "images").iterdir())[:4]:
        (mixed / "images").mkdir(parents=True, exist_ok=True)
        (mixed / "masks").mkdir(parents=True, exist_ok=True)
        (mixed / "images" / f"copy_{p.name}").write_bytes(p.read_bytes())  # renamed copies: known by content
        (mixed / "masks" / f"copy_{p.name}").write_bytes((own / "masks" / p.name).read_bytes())
    write_pair(mixed, "new0", size=(48, 48), seed=7)
    out = tmp_path / "refused"
    res = CliRunner().invoke(app, ["evaluate", str(run), "--data", str(sets / "clean"), "--data", str(mixed),
                                   "--data", str(own), "--out", str(out)])  # fmt: skip
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "not external to the run; nothing was scored" in text
    assert "mixed" in text and "are among the run's training and validation images" in text
    assert "all 14 images are the run's own data" in text
    assert not out.exists()


def test_expand_sets_reads_pranet_roots_and_keeps_split_folders_whole(tmp_path: Path) -> None:
    root = tmp_path / "pranet"
    _test_dataset(root, {"CVC-ColonDB": 1, "ETIS": 1})
    write_pair(root / "TrainDataset", "t0")
    split_folder = tmp_path / "splits"
    for split in ("train", "test"):
        write_pair(split_folder / split, f"{split}0")
    names = [s.name for s in expand_sets([str(root), str(split_folder), str(root / "TestDataset" / "ETIS")])]
    assert names == ["CVC-ColonDB", "ETIS", "splits", "ETIS_2"]


def test_render_tables_weighs_the_second_mean_by_images() -> None:
    summary = lambda n, d: {"metrics": {"n_images": n, "mean": {"dice": d, "iou": d / 2}},  # noqa: E731
                            "structure": {"weighted_f": d, "s_measure": d, "mean_e_measure": d,
                                          "max_e_measure": d, "mae": 1 - d}}  # fmt: skip
    rows = table_rows([("a", summary(1, 0.2)), ("b", summary(3, 0.6))])
    assert rows[2]["mDice"] == pytest.approx(0.4) and rows[3]["mDice"] == pytest.approx(0.5)
    assert rows[3]["MAE"] == pytest.approx(0.5) and rows[2]["images"] == 4
    md = render_tables(rows, "x")["table.md"].splitlines()
    assert md[2] == "| a | 1 | 0.2000 | 0.1000 | 0.2000 | 0.2000 | 0.2000 | 0.2000 | 0.8000 |"
