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


def _fake_strong_run(root: Path, seed: int = 0, precision: str = "bf16-mixed", epochs: int = 150,
                     seconds: float = 40.0, drop_val: int = 0) -> tuple[Path, Path]:  # fmt: skip
    """A finished-looking run folder of ``strong`` (config, split, env, metrics; no weights) and a PolypGen-like
    data folder with train / val frames."""
    import json

    import yaml

    from polypseg.config import load_recipe

    data = root / "polypgen"
    names = {"train": [f"t{i}" for i in range(5)], "val": [f"v{i}" for i in range(3)]}
    for part, stems in names.items():
        (data / part / "images").mkdir(parents=True)
        for stem in stems:
            (data / part / "images" / f"{stem}.jpg").write_bytes(b"")
    run = root / "run"
    run.mkdir()
    recipe = load_recipe("strong", {"seed": seed, "data.size": 192, "data.val_fraction": 0.1})
    (run / "config.yaml").write_text(yaml.safe_dump({"recipe": recipe.model_dump(), "data": [str(data)]}))
    splits = {"train": [f"polypgen/{s}" for s in names["train"]],
              "val": [f"polypgen/{s}" for s in names["val"][drop_val:]], "test": []}  # fmt: skip
    (run / "split.json").write_text(json.dumps({"seed": seed, "data": [str(data)], "splits": splits}))
    (run / "env.json").write_text(json.dumps({"precision": precision}))
    header = "epoch,train_loss,val_loss,val_dice,val_iou,val_images,lr,seconds\n"
    body = "".join(f"{e},0.5,0.5,0.6,0.5,3,0.001,{seconds}\n" for e in range(epochs))
    (run / "metrics.csv").write_text(header + body)
    return run, data


def test_a_finished_strong_run_is_adopted_as_the_reference_only_when_it_is_that_run(tmp_path: Path) -> None:
    budget = pytest.importorskip("budget")
    from polypseg.device import lightning_precision, resolve_precision

    here = lightning_precision(resolve_precision("auto", "cpu"))  # strong's precision on this CPU
    run, data = _fake_strong_run(tmp_path / "ok", precision=here)  # 150 epochs of 40 s: 100 min
    assert budget.adoptable(run, 120, 0, data) == []
    assert budget.adoptable(run, 120, 1, data) == ["recipe seed: 0, strong's is 1"]
    assert budget.adoptable(run, 60, 0, data) == ["it trained 100 min, more than the 60-minute budget"]
    run, data = _fake_strong_run(tmp_path / "short", precision=here, epochs=30)  # 20 min of 150 epochs
    assert budget.adoptable(run, 120, 0, data) == [
        "it stopped after 30 epochs and 20 min: neither its epochs nor the budget"
    ]
    run, data = _fake_strong_run(tmp_path / "split", precision=here, drop_val=1)
    assert budget.adoptable(run, 120, 0, data) == ["its val split is not PolypGen's val folder (1 frames differ)"]
    other = "32-true" if here == "bf16-mixed" else "bf16-mixed"
    run, data = _fake_strong_run(tmp_path / "precision", precision=other)
    assert budget.adoptable(run, 120, 0, data) == [f"trained with precision {other}, this CPU would use {here}"]


def test_the_adoption_note_goes_on_the_adopted_result_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect: adopting a reference left its note in generalise.NOTE, so every later candidate of the same
    call was stored as 'adopted, not retrained'."""
    budget = pytest.importorskip("budget")
    run, _ = _fake_strong_run(tmp_path)  # 150 epochs of 40 s
    seen = []
    monkeypatch.setattr(budget, "adoptable", lambda *a, **k: [])
    monkeypatch.setattr(budget, "run_one", lambda *a, **k: seen.append(generalise.NOTE[0]) or {})
    monkeypatch.setattr(generalise, "NOTE", ["quiet machine"])
    budget.adopt_reference(run, 120, 0)
    assert seen[0].startswith("quiet machine; adopted, not retrained: run (same recipe")
    assert "150 epochs in 100 min" in seen[0]
    assert generalise.NOTE == ["quiet machine"]
