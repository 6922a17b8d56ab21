"""The visual report on a tiny run: every section present, valid PNG figures, optional browser check."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from polypseg.cli import app
from polypseg.config import load_recipe
from polypseg.report.findings import derive_findings
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
