"""The visual report on a tiny run: every section present, valid PNG figures, optional browser check."""

import csv
import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from polypseg.cli import app
from polypseg.config import load_recipe
from polypseg.report.findings import derive_findings
from polypseg.report.inputs import same_data
from polypseg.report.overlays import pick_cases
from polypseg.training import fit

SECTIONS = (
    "Metrics",
    "Structure metrics",
    "Findings",
    "Figures",
    "Breakdown by polyp size",
    "Breakdown by source",
    "Cases: best, median, worst",
    "Configuration",
    "Environment",
)


@pytest.fixture(scope="module")
def reported_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("rep") / "run"
    recipe = load_recipe("seed", {"epochs": 1, "data.size": 64, "model.args.base": 4, "data.batch_size": 8})
    fit(recipe, ["synthetic:n=40,size=64,seed=5"], run, progress=False)
    res = CliRunner().invoke(app, ["evaluate", str(run), "--split", "test", "--report"])
    assert res.exit_code == 0, res.output
    return run


@pytest.mark.slow
def test_report_has_every_section_and_valid_figures(reported_run: Path) -> None:
    html = (reported_run / "eval" / "test" / "report.html").read_text()
    for section in SECTIONS:
        assert f"<h2>{section}</h2>" in html, section
    assert "original report (test)" in html  # the seed recipe shows the original report's figures
    assert html.count("data:image/png;base64,") >= 6 + 1  # figures + at least one case, all embedded
    assert 'src="http' not in html and "<script" not in html  # self-contained, no server needed
    figs = list((reported_run / "eval" / "test" / "figures").rglob("*.png"))
    assert len(figs) >= 7
    for f in figs:
        with Image.open(f) as im:
            im.verify()


def test_pick_cases_best_median_worst() -> None:
    rows = [{"id": f"s{i}", "dice": d} for i, d in enumerate([0.1, 0.9, 0.5, 0.3, 0.7, 0.0, 1.0])]
    picks = pick_cases(rows, per_kind=1)
    assert [(k, r["id"]) for k, r in picks] == [("best", "s6"), ("median", "s2"), ("worst", "s5")]


def test_findings_follow_the_numbers() -> None:
    base = {
        "metrics": {
            "mean": {"dice": 0.6, "precision": 0.4, "recall": 0.9},
            "pooled": {"dice": 0.62},
        },
        "by_size": {"small": {"n": 5, "dice": 0.2, "iou": 0.1}, "large": {"n": 5, "dice": 0.8, "iou": 0.7}},
        "by_source": {"A": {"n": 4, "dice": 0.8, "iou": 0.7}, "B": {"n": 4, "dice": 0.4, "iou": 0.3}},
        "threshold": 0.5,
    }
    text = " ".join(derive_findings(base))
    assert "false positives" in text and "small polyps" in text and "Uneven across sources" in text
    good = {
        "metrics": {"mean": {"dice": 0.9, "precision": 0.9, "recall": 0.9}, "pooled": {"dice": 0.91}},
        "by_size": {},
        "by_source": {},
        "threshold": 0.5,
    }
    assert derive_findings(good) == ["No weakness stands out in these numbers."]


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium is not installed")
def test_report_renders_in_headless_chromium(reported_run: Path, tmp_path: Path) -> None:
    html = reported_run / "eval" / "test" / "report.html"
    shot = tmp_path / "report.png"
    cmd = [
        "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'prof'}",
        f"--screenshot={shot}", "--window-size=1200,2400", html.as_uri(),
    ]  # fmt: skip
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert shot.exists()
    with Image.open(shot) as im:
        assert im.size == (1200, 2400)
        assert len(np.unique(np.asarray(im.convert("L").resize((60, 120))))) > 10  # not a blank page


def _write_multilabel(folder: Path, stems: list[str], seed: int = 0) -> Path:
    """Pairs whose masks hold labels 0, 1 (other tissue) and 2 (the polyp): they need --foreground-labels 2."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir(parents=True)
    for k, stem in enumerate(stems):
        image = rng.integers(0, 120, (64, 64, 3), dtype=np.uint8)
        mask = np.zeros((64, 64), np.uint8)
        mask[4:14, 4:60] = 1
        r, c = 20 + k % 5 * 4, 16 + k % 3 * 8
        mask[r : r + 16, c : c + 20] = 2
        image[mask == 2] = (200, 80, 90)
        cv2.imwrite(str(folder / "images" / f"{stem}.png"), image)
        cv2.imwrite(str(folder / "masks" / f"{stem}.png"), mask)
    return folder


@pytest.fixture(scope="module")
def multilabel_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ml")
    data = _write_multilabel(root / "ml", [f"m{i:02d}" for i in range(16)])
    over = {"epochs": 1, "data.size": 64, "model.args.base": 4, "data.batch_size": 8, "data.foreground_labels": [2]}
    fit(load_recipe("quick", over), [str(data)], root / "run", progress=False)
    return root / "run"


def _summary(eval_dir: Path) -> dict:
    return json.loads((eval_dir / "summary.json").read_text())


@pytest.mark.slow
def test_evaluate_report_on_multilabel_masks_uses_the_recipes_labels(multilabel_run: Path) -> None:
    res = CliRunner().invoke(app, ["evaluate", str(multilabel_run), "--split", "test", "--report"])
    assert res.exit_code == 0, res.output
    eval_dir = multilabel_run / "eval" / "test"
    html = (eval_dir / "report.html").read_text()
    with (eval_dir / "per_image.csv").open(newline="") as fh:
        rows = [{"id": r["id"], "dice": float(r["dice"])} for r in csv.DictReader(fh)]
    assert html.count("<div class='case'>") == len(pick_cases(rows)) > 0  # every case read with label 2
    res = CliRunner().invoke(app, ["report", str(multilabel_run), "--foreground-labels", "2"])  # the recipe's
    assert res.exit_code == 0, res.output
    assert "evaluating" not in res.output  # the evaluation above is reused
    bad = CliRunner().invoke(app, ["report", str(multilabel_run), "--foreground-labels", "1"])
    assert bad.exit_code == 2
    assert "--foreground-labels 1 differ from the labels the evaluation scores masks with (2" in bad.output


@pytest.mark.slow
def test_report_with_other_data_evaluates_again_and_says_so(reported_run: Path) -> None:
    runner = CliRunner()
    eval_dir = reported_run / "eval" / "all"
    assert runner.invoke(app, ["evaluate", str(reported_run), "--split", "all"]).exit_code == 0
    assert _summary(eval_dir)["metrics"]["n_images"] == 40
    other = "synthetic:n=10,size=64,seed=9"
    res = runner.invoke(app, ["report", str(reported_run), "--split", "all", "--data", other])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert f"--data {other} is not the data of {eval_dir / 'summary.json'}" in text
    summary = _summary(eval_dir)
    assert summary["data"] == [other] and summary["metrics"]["n_images"] == 10
    assert f"<b>Data</b> {other}<br>" in (eval_dir / "report.html").read_text()
    stamp = (eval_dir / "summary.json").stat().st_mtime_ns
    for again in ([], ["--data", other]):  # the same data (or none named): the evaluation is reused
        res = runner.invoke(app, ["report", str(reported_run), "--split", "all", *again])
        assert res.exit_code == 0 and "evaluating" not in res.output, res.output
    assert (eval_dir / "summary.json").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_report_layout_reaches_evaluation_and_cases(multilabel_run: Path, tmp_path: Path) -> None:
    """A folder that auto-detects as split-folders (train/, 3 pairs) but is meant as its own 8 pairs."""
    data = _write_multilabel(tmp_path / "mixed", [f"p{i}" for i in range(8)], seed=4)
    _write_multilabel(data / "train", ["t0", "t1", "t2"], seed=5)
    eval_dir = multilabel_run / "eval" / "all"
    args = ["report", str(multilabel_run), "--split", "all", "--data", str(data)]
    res = CliRunner().invoke(app, [*args, "--layout", "pairs"])
    assert res.exit_code == 0, res.output
    assert _summary(eval_dir)["metrics"]["n_images"] == 8
    with (eval_dir / "per_image.csv").open(newline="") as fh:
        rows = [{"id": r["id"], "dice": float(r["dice"])} for r in csv.DictReader(fh)]
    assert {r["id"] for r in rows} == {f"mixed/p{i}" for i in range(8)}
    assert (eval_dir / "report.html").read_text().count("<div class='case'>") == len(pick_cases(rows)) > 0
    res = CliRunner().invoke(app, args)  # no --layout: the layout the evaluation recorded, so it is reused
    assert res.exit_code == 0 and "evaluating" not in res.output, res.output
    assert _summary(eval_dir)["metrics"]["n_images"] == 8
    res = CliRunner().invoke(app, [*args, "--layout", "split-folders"])  # another layout: evaluated again
    assert res.exit_code == 0, res.output
    assert "--layout split-folders is not the layout of" in " ".join(res.output.split())
    assert _summary(eval_dir)["metrics"]["n_images"] == 3


def test_same_data_ignores_order_and_spelling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "d").mkdir()
    monkeypatch.chdir(tmp_path)
    assert same_data([str(tmp_path / "d"), "synthetic:n=8,size=64"], ["synthetic:size=64, n=8", "d"])
    assert not same_data(["synthetic:n=8"], ["synthetic:n=9"])
    assert not same_data([str(tmp_path / "d")], [str(tmp_path / "d"), "synthetic"])
