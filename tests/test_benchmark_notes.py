"""The benchmarks' own bookkeeping: a run whose epochs slowed down under other load is flagged in the tables."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
generalise = pytest.importorskip("generalise")


def rows(*seconds: float) -> list[dict]:
    return [{"epoch": float(i), "seconds": s} for i, s in enumerate(seconds)]


def test_epoch_seconds_drops_only_a_short_last_epoch():
    # median of (30, 32, 31, 90, 5) is 31; the last one (5 s, cut by the budget) is not the slowest full epoch
    assert generalise.epoch_seconds(rows(30, 32, 31, 90, 5)) == {"median": 31.0, "max": 90.0, "epochs": 5}
    assert generalise.epoch_seconds(rows(30, 32, 31, 20)) == {"median": 30.5, "max": 32.0, "epochs": 4}
    assert generalise.epoch_seconds([{"epoch": 0.0}]) == {}


def test_a_run_with_one_epoch_at_twice_the_median_gets_a_note_and_a_quiet_one_does_not():
    slow = {"epoch_seconds": generalise.epoch_seconds(rows(30, 30, 60, 30))}
    assert generalise.shared_cpu_note(slow).startswith("its slowest epoch took 60 s against a median of 30 s (2.0x)")
    quiet = {"epoch_seconds": generalise.epoch_seconds(rows(30, 31, 33, 30))}  # 33 / 30.5 = 1.08
    assert generalise.shared_cpu_note(quiet) == ""


def test_an_old_result_without_the_measurement_reads_its_run_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(generalise, "RUNS", tmp_path)
    result = {"experiment": "polypgen", "recipe": "strong", "budget_minutes": 20, "size": 192, "seed": 0, "tag": "x"}
    run = tmp_path / "polypgen-strong+x-192px-s0-20min"
    run.mkdir()
    (run / "metrics.csv").write_text("epoch,seconds\n0,20\n1,20\n2,50\n3,20\n")
    assert "(2.5x)" in generalise.shared_cpu_note(result)
    assert generalise.shared_cpu_note({**result, "tag": "gone"}) == ""
