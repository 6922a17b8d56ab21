"""Bootstrap intervals and the paired comparison of two evaluations."""

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from polypseg.cli import app
from polypseg.evaluation.compare import compare
from polypseg.evaluation.stats import bootstrap_ci, paired_comparison


def test_bootstrap_ci_matches_scipy_percentile_bootstrap() -> None:
    stats = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(1).beta(2, 1, size=300)
    low, high = bootstrap_ci(x, n_resamples=4000)
    ref = stats.bootstrap((x,), np.mean, n_resamples=4000, method="percentile", rng=np.random.default_rng(2))
    assert low == pytest.approx(ref.confidence_interval.low, abs=0.004)
    assert high == pytest.approx(ref.confidence_interval.high, abs=0.004)
    assert low < x.mean() < high
    assert bootstrap_ci(x, n_resamples=4000) == (low, high)  # seeded: the same interval every time


def test_bootstrap_ci_of_constant_values_and_bad_input() -> None:
    assert bootstrap_ci([0.7] * 20) == pytest.approx((0.7, 0.7))
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([1.0], level=1.5)


def test_paired_permutation_p_value_matches_exact_enumeration() -> None:
    # Differences (0.3, 0.1, -0.05, 0.2): enumerate all 16 sign patterns for the exact p-value.
    a = np.array([0.5, 0.6, 0.7, 0.4])
    d = np.array([0.3, 0.1, -0.05, 0.2])
    flips = [abs(np.mean(np.array(s) * d)) >= abs(d.mean()) - 1e-12 for s in itertools.product([-1, 1], repeat=4)]
    exact = sum(flips) / 16  # 4 of 16
    r = paired_comparison(a, a + d, n_permutations=20000)
    assert r.p_value == pytest.approx(exact, abs=0.01)
    assert r.diff == pytest.approx(d.mean()) and r.mean_b - r.mean_a == pytest.approx(d.mean())
    assert (r.b_better, r.a_better, r.ties) == (3, 1, 0)


def test_paired_comparison_of_identical_and_shifted_scores() -> None:
    a = np.linspace(0.2, 0.9, 50)
    same = paired_comparison(a, a)
    assert same.diff == 0 and (same.ci_low, same.ci_high) == (0, 0) and same.p_value == 1 and same.ties == 50
    shifted = paired_comparison(a, a + 0.1, n_permutations=999)
    assert shifted.diff == pytest.approx(0.1) and shifted.ci_low == pytest.approx(0.1)
    assert shifted.p_value == pytest.approx(1 / 1000)  # no sign flip reaches the observed mean
    with pytest.raises(ValueError, match="equally long"):
        paired_comparison([0.1, 0.2], [0.3])


def _write_eval(folder: Path, scores: dict[str, float]) -> Path:
    folder.mkdir(parents=True)
    with (folder / "per_image.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "source", "dice", "iou"])
        w.writeheader()
        for i, v in scores.items():
            w.writerow({"id": i, "source": "s", "dice": v, "iou": v / (2 - v)})
    return folder


def test_compare_pairs_images_by_id_and_refuses_different_image_sets(tmp_path: Path) -> None:
    a = _write_eval(tmp_path / "a" / "eval" / "test", {"x": 0.5, "y": 0.7, "z": 0.9})
    b = _write_eval(tmp_path / "b", {"z": 0.95, "x": 0.6, "y": 0.65})  # other order: paired by id
    r = compare(tmp_path / "a", b)
    assert r.diff == pytest.approx((0.1 - 0.05 + 0.05) / 3) and (r.b_better, r.a_better) == (2, 1)
    assert compare(a / "per_image.csv", b, metric="iou").metric == "iou"
    c = _write_eval(tmp_path / "c", {"x": 0.5, "y": 0.7, "w": 0.9})
    with pytest.raises(ValueError, match="1 only in the first, 1 only in the second"):
        compare(a, c)
    with pytest.raises(FileNotFoundError, match="polypseg evaluate"):
        compare(tmp_path / "nothing", b)
    with pytest.raises(ValueError, match="unknown metric"):
        compare(a, b, metric="f2")


def test_cli_compare_prints_and_writes_json(tmp_path: Path) -> None:
    a = _write_eval(tmp_path / "a", {f"i{k}": 0.5 for k in range(10)})
    b = _write_eval(tmp_path / "b", {f"i{k}": 0.6 for k in range(10)})
    out = tmp_path / "cmp.json"
    res = CliRunner().invoke(app, ["compare", str(a), str(b), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "+0.1000" in res.output and "10 / 0 / 0" in res.output
    saved = json.loads(out.read_text())
    assert saved["diff"] == pytest.approx(0.1) and saved["n_images"] == 10
    bad = CliRunner().invoke(app, ["compare", str(a), str(tmp_path / "missing")])
    assert bad.exit_code == 2 and "polypseg evaluate" in bad.output


def _write_mae(folder: Path, scores: dict[str, float]) -> Path:
    folder.mkdir(parents=True)
    with (folder / "per_image.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "dice", "mae"])
        w.writeheader()
        for i, v in scores.items():
            w.writerow({"id": i, "dice": 1 - v, "mae": v})
    return folder


def test_compare_mae_counts_the_lower_error_as_better(tmp_path: Path) -> None:
    """MAE is an error: B with the lower MAE on every image wins every image, and the output says so."""
    a = _write_mae(tmp_path / "a", {f"i{k}": 0.20 + 0.01 * k for k in range(6)})
    b = _write_mae(tmp_path / "b", {f"i{k}": 0.05 + 0.01 * k for k in range(6)})
    r = compare(a, b, metric="mae")
    assert r.diff == pytest.approx(-0.15)  # still mean(B) - mean(A)
    assert (r.b_better, r.a_better, r.ties) == (6, 0, 0)
    assert r.higher_is_better is False and r.favours == "B"
    higher = compare(a, b, metric="dice")  # the same files, an overlap metric: B higher, B better
    assert (higher.b_better, higher.a_better, higher.higher_is_better, higher.favours) == (6, 0, True, "B")
    out = tmp_path / "mae.json"
    res = CliRunner().invoke(app, ["compare", str(a), str(b), "--metric", "mae", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "6 / 0 / 0" in res.output and "-0.1500" in res.output
    assert "lower is better" in res.output and "lower mae is better: the mean difference favours model B" in res.output
    saved = json.loads(out.read_text())
    assert (saved["b_better"], saved["a_better"], saved["higher_is_better"], saved["favours"]) == (6, 0, False, "B")
    swapped = CliRunner().invoke(app, ["compare", str(b), str(a), "--metric", "mae"])
    assert "0 / 6 / 0" in swapped.output and "favours model A" in swapped.output
