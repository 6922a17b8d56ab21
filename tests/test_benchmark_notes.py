"""The benchmarks' own bookkeeping: a run whose epochs slowed down under other load is flagged in the tables."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
generalise = pytest.importorskip("generalise")


def rows(*seconds: float) -> list[dict]:
    return [{"epoch": float(i), "seconds": s} for i, s in enumerate(seconds)]


def test_epoch_seconds_drops_only_a_short_last_epoch():
    # the last epoch (5 s, cut by the budget) is left out: the median of (30, 32, 31, 90) is 31.5
    assert generalise.epoch_seconds(rows(30, 32, 31, 90, 5)) == {"median": 31.5, "max": 90.0, "epochs": 5}
    assert generalise.epoch_seconds(rows(30, 32, 31, 20)) == {"median": 31.0, "max": 32.0, "epochs": 4}
    assert generalise.epoch_seconds(rows(30, 32, 31, 40)) == {"median": 31.5, "max": 40.0, "epochs": 4}  # kept
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
    (run / "config.yaml").write_text("recipe:\n  seed: 0\nmax_minutes: 20\n")
    assert "(2.5x)" in generalise.shared_cpu_note(result)
    assert generalise.shared_cpu_note({**result, "tag": "gone"}) == ""
    # a progressive-resizing run from before metrics.csv had train_scale: its phases cannot be told apart
    (run / "config.yaml").write_text("recipe:\n  progressive: [0.5, 1.0]\nmax_minutes: 20\n")
    assert generalise.shared_cpu_note(result) == ""


def test_progressive_phases_are_compared_within_their_own_training_scale():
    phases = [{"train_scale": 0.5, "seconds": s} for s in (10, 11, 10)]
    phases += [{"train_scale": 1.0, "seconds": s} for s in (30, 31, 30, 4)]  # 3x the small phase is no slowdown
    assert generalise.shared_cpu_note({"epoch_seconds": generalise.epoch_seconds(phases)}) == ""
    phases[1]["seconds"] = 25  # 2.5x its own phase's median
    spread = generalise.epoch_seconds(phases)
    assert spread == {"median": 10.0, "max": 25.0, "epochs": 7, "train_scale": 0.5}
    assert "(2.5x)" in generalise.shared_cpu_note({"epoch_seconds": spread})
