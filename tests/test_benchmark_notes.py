"""The benchmarks' own bookkeeping: a run whose epochs slowed down under other load is flagged in the tables."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
generalise = pytest.importorskip("generalise")


def _fake_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, family: int, model: int, flags: str) -> None:
    """Point :data:`polypseg.device.CPUINFO` at a two-processor /proc/cpuinfo of the CPU described."""
    import polypseg.device as device

    path = tmp_path / f"cpuinfo-{family}-{model}"
    first = (f"processor\t: 0\ncpu family\t: {family}\nmodel\t\t: {model}\nmodel name\t: {name}\n"
             f"flags\t\t: {flags}\n")  # fmt: skip
    path.write_text(first + "\n" + first.replace("processor\t: 0", "processor\t: 1"))
    monkeypatch.setattr(device, "CPUINFO", path, raising=False)


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


def test_the_best_epoch_is_the_first_of_the_highest_validation_dice():
    rows = [{"epoch": float(e), "val_dice": d} for e, d in enumerate((0.5, 0.7, 0.7, 0.6))]
    assert generalise.best_epoch(rows) == 1
    assert generalise.best_epoch([{"epoch": 0.0, "seconds": 3.0}]) is None


def _budget_result(tag: str, scores: dict[str, float] | None, time: str = "t0") -> dict:
    validation = {"n": 3, "mDice": 0.0, **({"per_image_dice": scores} if scores else {})}
    return {"experiment": "polypgen", "recipe": "strong", "tag": tag, "overrides": {}, "size": 192, "seed": 0,
            "budget_minutes": 120.0, "cpu": "Test CPU", "bf16_units": False, "epochs_done": 10, "time": time,
            "validation": validation, "external": [{"set": "kvasir", "mDice": 0.8}, {"set": "clinicdb", "mDice": 0.7}],
            "command": f"budget {tag}"}  # fmt: skip


def test_the_budget_table_is_rebuilt_from_the_stored_results_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Defect: the paired Δ val read the run folders' per_image.csv, which a new machine does not have, so
    `budget.py --table` there replaced every Δ val with '(per-image scores missing)'."""
    import json

    budget = pytest.importorskip("budget")
    results, runs = tmp_path / "results", tmp_path / "runs"
    results.mkdir()
    monkeypatch.setattr(budget, "RESULTS", results)
    monkeypatch.setattr(generalise, "RUNS", runs)
    ref = _budget_result("ref", {"polypgen/a": 0.5, "polypgen/b": 0.6, "polypgen/c": 0.7})
    cand = _budget_result("cand", {"polypgen/a": 0.6, "polypgen/b": 0.7, "polypgen/c": 0.8})
    # a result from before the JSON kept its scores: only the comparison recorded against this reference
    old = _budget_result("old", None)
    old["validation"]["vs_ref"] = {"ref_time": "t0", "text": "+0.0200 [-0.010, +0.050], p 0.200"}
    stale = _budget_result("stale", None)
    stale["validation"]["vs_ref"] = {"ref_time": "another reference", "text": "+0.9"}
    # a result whose run folder is here: its scores go into its JSON
    folder = _budget_result("folder", None)
    folder["validation"]["mDice"] = 0.5  # its run folder's mean: the folder is its run
    (runs / "polypgen-strong+folder-192px-s0-120min" / "eval" / "val").mkdir(parents=True)
    csv_text = "id,dice\npolypgen/a,0.5\npolypgen/b,0.5\npolypgen/c,0.5\n"
    (runs / "polypgen-strong+folder-192px-s0-120min" / "eval" / "val" / "per_image.csv").write_text(csv_text)
    for r in (ref, cand, old, stale, folder):
        (results / f"generalise-polypgen-strong+{r['tag']}-192px-s0-120min.json").write_text(json.dumps(r))
    docs = tmp_path / "results.md"
    docs.write_text(f"before\n{budget.START}\n{budget.END}\nafter\n")
    budget.write_table(docs)
    table = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in docs.read_text().splitlines()
             if line.startswith("| ") and "val mDice" not in line}  # fmt: skip
    diff, p = table["cand"][5].split(", p ")
    assert diff == "+0.1000 [+0.100, +0.100]"
    assert float(p) == pytest.approx(0.25, abs=0.02)  # every image +0.1: 2 of the 8 sign patterns reach it
    assert table["old"][5] == "+0.0200 [-0.010, +0.050], p 0.200"
    assert table["stale"][5] == "(per-image scores missing)"
    assert table["folder"][5].startswith("-0.1000 ")  # (0.5 - 0.5) + (0.5 - 0.6) + (0.5 - 0.7): -0.3 / 3
    kept = json.loads((results / "generalise-polypgen-strong+folder-192px-s0-120min.json").read_text())
    assert kept["validation"]["per_image_dice"] == {"polypgen/a": 0.5, "polypgen/b": 0.5, "polypgen/c": 0.5}


def test_a_reference_of_another_cpu_stands_in_only_while_its_best_epoch_ends_inside_the_budget():
    budget = pytest.importorskip("budget")
    from polypseg.device import lightning_precision, resolve_precision

    here = lightning_precision(resolve_precision("auto", "cpu"))
    source = {"budget_minutes": 120.0, "seed": 0, "precision_used": here, "best_epoch": 50, "epochs_done": 150}
    assert budget.borrowable(source, 120, 0, epoch_seconds=140.0) == []  # 51 epochs of 140 s: 119 min
    assert budget.borrowable(source, 120, 0, epoch_seconds=150.0) == [
        "its best epoch (50) would end after 128 min here (150 s an epoch), past the budget"  # 51 * 150 s
    ]
    assert budget.borrowable(source, 20, 0, 10.0) == ["it is the 120-minute reference of seed 0"]
    other = "32-true" if here == "bf16-mixed" else "bf16-mixed"
    assert budget.borrowable({**source, "precision_used": other}, 120, 0, 60.0) == [
        f"it trained with precision {other}, this CPU would use {here}"
    ]
    assert budget.borrowable({**source, "best_epoch": None}, 120, 0, 60.0) == ["it does not record its best epoch"]


def test_cpu_2h_is_the_measured_realtime_cosine_multiscale_candidate() -> None:
    """The shipped 2-hour recipe is what budget.py trained as `realtime-cosine-multiscale`, name and description
    aside."""
    budget = pytest.importorskip("budget")
    from polypseg.config import load_recipe

    size, overrides = budget.CANDIDATES["realtime-cosine-multiscale"]
    measured = load_recipe("strong", {"data.size": size, **overrides}).model_dump()
    shipped = load_recipe("cpu-2h").model_dump()
    assert {k for k in measured if measured[k] != shipped[k]} == {"name", "description"}


def test_a_result_measured_on_another_cpu_is_not_taken_as_done_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Defect: result files were named without the CPU, so a candidate measured on one CPU kind was skipped as
    done on another, whose table then lacked it."""
    import json

    monkeypatch.setattr(generalise, "RESULTS", tmp_path)
    name = "polypgen-strong+realtime-256px-s0-20min"
    assert generalise.result_file(name, "AMD EPYC").name == f"generalise-{name}-on-amd-epyc.json"
    (tmp_path / f"generalise-{name}.json").write_text(json.dumps({"cpu": "Intel(R) Xeon(R) Processor"}))
    assert generalise.result_file(name, "Intel(R) Xeon(R) Processor").name == f"generalise-{name}.json"  # older
    assert generalise.result_file(name, "AMD EPYC").name == f"generalise-{name}-on-amd-epyc.json"
    (tmp_path / f"generalise-{name}-on-amd-epyc.json").write_text(json.dumps({"cpu": "AMD EPYC"}))
    assert [p.name for p in generalise.result_files(name)] == [
        f"generalise-{name}-on-amd-epyc.json", f"generalise-{name}.json"]  # fmt: skip
    assert generalise.cpu_slug("Intel(R) Xeon(R) Processor") == "intel-r-xeon-r-processor"


def test_a_finetune_result_of_another_cpu_is_not_taken_as_done_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Defect: finetune.py named its result files without the CPU, so a comparison measured on one CPU kind was
    skipped as done on another (the twin of the defect above, in the fine-tuning benchmark)."""
    import json

    finetune = pytest.importorskip("finetune")
    monkeypatch.setattr(finetune, "RESULTS", tmp_path)
    monkeypatch.setattr(finetune, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(finetune, "cpu_kind", lambda: "AMD EPYC")

    class TrainedError(Exception):
        pass

    def train_and_score(*args, **kwargs):
        raise TrainedError

    monkeypatch.setattr(finetune, "train_and_score", train_and_score)
    stored = "finetune-" + finetune.result_key("data/kvasir", "polyp-unet16", 10, 192, 0)
    (tmp_path / f"{stored}.json").write_text(json.dumps({"cpu": "Intel(R) Xeon(R) Processor"}))
    with pytest.raises(TrainedError):  # the Intel result is not this CPU's: train
        finetune.run_budget("data/kvasir", "polyp-unet16", 10, 192, 0)
    (tmp_path / f"{stored}-on-amd-epyc.json").write_text(json.dumps({"cpu": "AMD EPYC", "mark": 1}))
    assert finetune.run_budget("data/kvasir", "polyp-unet16", 10, 192, 0) == {"cpu": "AMD EPYC", "mark": 1}
    monkeypatch.setattr(finetune, "cpu_kind", lambda: "Intel(R) Xeon(R) Processor")
    assert finetune.run_budget("data/kvasir", "polyp-unet16", 10, 192, 0) == {"cpu": "Intel(R) Xeon(R) Processor"}


def test_a_run_folder_of_another_cpu_does_not_lend_its_scores_to_a_result_of_the_same_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Defect: run folders are named without the CPU, so on the AMD machine the 20-minute `realtime` and `strong`
    folders (AMD runs) gave their per-image scores to the Intel results of the same name, which had none kept;
    the Intel table then showed the AMD comparison (+0.0500 for Intel's realtime, whose own is +0.0214)."""
    import json

    budget = pytest.importorskip("budget")
    results, runs = tmp_path / "results", tmp_path / "runs"
    results.mkdir()
    monkeypatch.setattr(budget, "RESULTS", results)
    monkeypatch.setattr(generalise, "RUNS", runs)
    here = {**_budget_result("folder", None), "cpu": "AMD EPYC"}
    here["validation"]["mDice"] = 0.5  # its run folder's mean: the folder is this result's run
    other = {**_budget_result("folder", None), "cpu": "Intel(R) Xeon(R) Processor"}
    other["validation"]["mDice"] = 0.7  # measured elsewhere: the folder here is not its run
    (runs / "polypgen-strong+folder-192px-s0-120min" / "eval" / "val").mkdir(parents=True)
    csv_text = "id,dice\npolypgen/a,0.5\npolypgen/b,0.4\npolypgen/c,0.6\n"
    (runs / "polypgen-strong+folder-192px-s0-120min" / "eval" / "val" / "per_image.csv").write_text(csv_text)
    assert budget.val_scores(here) == {"polypgen/a": 0.5, "polypgen/b": 0.4, "polypgen/c": 0.6}
    assert budget.val_scores(other) is None
    stored = results / "generalise-polypgen-strong+folder-192px-s0-120min.json"
    stored.write_text(json.dumps(other))
    assert "per_image_dice" not in budget.keep_scores(stored)["validation"]
    assert "per_image_dice" not in json.loads(stored.read_text())["validation"]


def test_two_chips_sold_under_one_model_name_file_their_results_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Defect: results were filed under the CPU's model name alone, and AMD sells Zen 3, Zen 4 and Zen 5 all as
    "AMD EPYC": a 120-minute run on a Zen 5 (30 s an epoch) would be filed, tabled and compared as the Zen 4's
    (45 s an epoch), and a Zen 4 result taken as done on the Zen 5. The family and model tell them apart."""
    import polypseg.device as device

    _fake_cpu(tmp_path, monkeypatch, "AMD EPYC", 25, 17, "fpu avx2 avx512f avx512_bf16")
    zen4 = generalise.result_file("polypgen-strong+x-256px-s0-120min")
    _fake_cpu(tmp_path, monkeypatch, "AMD EPYC", 26, 2, "fpu avx2 avx512f avx512_bf16")
    zen5 = generalise.result_file("polypgen-strong+x-256px-s0-120min")
    assert device.cpu_kind() == "AMD EPYC, family 26 model 2"
    assert zen5.name == "generalise-polypgen-strong+x-256px-s0-120min-on-amd-epyc-family-26-model-2.json"
    assert zen4 != zen5
    monkeypatch.setattr(device, "CPUINFO", tmp_path / "absent", raising=False)  # no /proc/cpuinfo: the platform's
    assert device.cpu_kind() == device.cpu_model_name()


def test_the_shared_cpu_note_survives_a_table_rebuilt_where_the_run_folder_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Defect: a result from before the JSON kept its epoch timing took the note from its run folder, so the
    generalisation table rebuilt on a new machine dropped the notes of two runs (76 s against 40 s, 63 s
    against 32 s) that said the CPU had been shared."""
    import json
    import shutil

    results, runs = tmp_path / "results", tmp_path / "runs"
    results.mkdir()
    monkeypatch.setattr(generalise, "RESULTS", results)
    monkeypatch.setattr(generalise, "RUNS", runs)
    result = {**_budget_result("", None), "epochs_done": 4, "budget_minutes": 20.0}
    del result["tag"]
    result["external"] = [{"set": "kvasir", "images": 2, "mDice": 0.8, "mIoU": 0.7, "wF": 0.7, "S": 0.8,
                           "mean E": 0.8, "MAE": 0.05}]  # fmt: skip
    run = runs / "polypgen-strong-192px-s0-20min"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text("epoch,seconds\n0,20\n1,20\n2,50\n3,20\n")
    (run / "config.yaml").write_text("recipe:\n  seed: 0\nmax_minutes: 20\n")
    (results / "generalise-polypgen-strong-192px-s0-20min.json").write_text(json.dumps(result))
    # a folder of the same name holding another CPU's run (another epoch count) lends nothing
    other = {**result, "epochs_done": 3}
    (results / "generalise-polypgen-strong-192px-s0-20min-on-other.json").write_text(json.dumps(other))
    docs = tmp_path / "results.md"
    docs.write_text(f"before\n{generalise.START}\n{generalise.END}\nafter\n")
    generalise.write_table(docs)
    shutil.rmtree(runs)
    generalise.write_table(docs)
    notes = [line for line in docs.read_text().splitlines() if "slowest epoch" in line]
    assert notes == ["- polypgen (20 min): its slowest epoch took 50 s against a median of 20 s (2.5x): the CPU "
                     "was shared during part of the run"]  # fmt: skip


def test_a_run_folder_trained_on_another_cpu_is_neither_resumed_nor_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Defect: run folders are named without the CPU, so a folder of the same name trained on another CPU was
    resumed (or, finished, rescored) and its figures filed as this CPU's; a test-time candidate copied it too."""
    import json

    _fake_cpu(tmp_path, monkeypatch, "AMD EPYC", 26, 2, "avx512_bf16")
    runs = tmp_path / "runs"
    monkeypatch.setattr(generalise, "RUNS", runs)
    monkeypatch.setattr(generalise, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(generalise, "plan", lambda exp: (["data"], {}, []))

    def fit(*args, **kwargs):
        raise AssertionError("trained or resumed another CPU's run")

    monkeypatch.setattr(generalise, "fit", fit)
    run = runs / "polypgen-strong+x-256px-s0-120min"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    env = {"cpu": "AMD EPYC, family 25 model 17, 2 cores (AVX512-BF16)", "resumes": []}
    (run / "env.json").write_text(json.dumps(env))
    with pytest.raises(SystemExit, match="family 25 model 17"):
        generalise.run_one("polypgen", "strong", 120, 256, 0, tag="x")
    assert generalise.trained_elsewhere(run) == ["AMD EPYC, family 25 model 17, 2 cores (AVX512-BF16)"]
    assert generalise.trained_elsewhere(run, "AMD EPYC, family 25 model 17") == []
    with pytest.raises(SystemExit, match="family 25 model 17"):  # nor copied by a test-time candidate
        generalise.run_one("polypgen", "strong", 120, 256, 0, tag="x-tta", tta=True, weights_from=run)
    # a session recorded before the kind was (model name alone) is taken by its model name
    env["resumes"] = [{"cpu": "AMD EPYC, 2 cores (AVX512-BF16)"}]
    env["cpu"] = "AMD EPYC, family 26 model 2, 2 cores (AVX512-BF16)"
    (run / "env.json").write_text(json.dumps(env))
    assert generalise.trained_elsewhere(run) == []
    assert generalise.trained_elsewhere(run, "Intel(R) Xeon(R) Processor, family 6 model 167") == [
        "AMD EPYC, family 26 model 2, 2 cores (AVX512-BF16)", "AMD EPYC, 2 cores (AVX512-BF16)"]  # fmt: skip


def test_a_borrowed_reference_takes_no_epoch_timing_from_the_lenders_run_folder(tmp_path: Path, monkeypatch):
    """Defect: the 120-minute reference borrowed from the Intel run has no timing of its own (it never trained
    here), and the Intel run's folder of the same name and epoch count would have lent it its 227 s epoch."""
    runs = tmp_path / "runs"
    monkeypatch.setattr(generalise, "RUNS", runs)
    run = runs / "polypgen-strong+ref-192px-s0-120min"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text("epoch,seconds\n0,33\n1,227\n2,33\n3,33\n")
    (run / "config.yaml").write_text("recipe:\n  seed: 0\n")
    (run / "env.json").write_text('{"cpu": "Intel(R) Xeon(R) Processor, 2 cores (AMX bf16)"}')
    lender = {**_budget_result("ref", None), "budget_minutes": 120.0, "epochs_done": 4,
              "cpu": "Intel(R) Xeon(R) Processor, family 6 model 167"}  # fmt: skip
    assert generalise.folder_epoch_seconds(lender)["max"] == 227.0
    borrowed = {**lender, "cpu": "AMD EPYC, family 25 model 17", "borrowed_from": {"cpu": lender["cpu"]}}
    assert generalise.folder_epoch_seconds(borrowed) is None
    assert generalise.folder_epoch_seconds({**lender, "cpu": "AMD EPYC, family 25 model 17"}) is None


def test_the_speed_benchmark_reads_the_cpu_where_the_package_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Defect: benchmarks/speed.py parsed /proc/cpuinfo itself (a twin of polypseg.device's reader), so its
    model name and ISA flags ignored :data:`polypseg.device.CPUINFO` while its ``kind`` honoured it: a speed
    result could name one CPU in ``kind`` and another in ``model`` and ``isa``."""
    speed = pytest.importorskip("speed")
    # a CPU no test machine is: the figures can only come from this file
    _fake_cpu(tmp_path, monkeypatch, "Test CPU 9000", 99, 7, "fpu avx2 fma amx_bf16 amx_tile")
    info = speed.cpu_info()
    assert info["model"] == "Test CPU 9000"
    assert info["kind"] == "Test CPU 9000, family 99 model 7"
    assert info["isa"] == {"avx2": True, "fma": True, "avx512f": False, "avx512_bf16": False, "amx_bf16": True,
                           "amx_tile": True, "avx_vnni": False, "avx512_vnni": False}  # fmt: skip


def test_the_line_printed_for_a_result_names_its_candidate() -> None:
    """Defect: run_one printed "polypgen strong: val mDice ..." for every budget candidate (all are `strong`
    with overrides), so a log of several candidates did not say which line was which."""
    result = {**_budget_result("realtime-cosine", None), "experiment": "polypgen", "recipe": "strong",
              "epochs_done": 160}  # fmt: skip
    result["external"] = [{"set": "kvasir", "mDice": 0.83331}, {"set": "clinicdb", "mDice": 0.79209},
                          {"set": "mean", "mDice": 0.8127}, {"set": "weighted", "mDice": 0.82}]  # fmt: skip
    result["validation"]["mDice"] = 0.71754
    assert generalise.result_line(result) == (
        "polypgen strong+realtime-cosine: val mDice 0.7175; external kvasir 0.8333, clinicdb 0.7921 (160 epochs)"
    )
    del result["tag"]
    assert generalise.result_line(result).startswith("polypgen strong: val mDice 0.7175;")


def test_a_finetune_result_of_other_shipped_weights_is_not_taken_as_done(tmp_path: Path, monkeypatch) -> None:
    """Defect: finetune.py named its results and run folders by model name, size, seed and budget alone, so when
    `polyp-unet16` was reshipped with new weights at the same size, the old weights' result was skipped as done
    and their finished runs reused: the table would show the old model's comparison under the new model's name."""
    import json

    finetune = pytest.importorskip("finetune")
    from polypseg.zoo import find, weights_digest

    monkeypatch.setattr(finetune, "RESULTS", tmp_path)
    monkeypatch.setattr(finetune, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(finetune, "cpu_kind", lambda: "AMD EPYC")
    runs = []

    class TrainedError(Exception):
        pass

    def train_and_score(run, *args, **kwargs):
        runs.append(run.name)
        raise TrainedError

    monkeypatch.setattr(finetune, "train_and_score", train_and_score)
    digest = weights_digest(find("polyp-unet16").weights)[:8]
    old = {"cpu": "AMD EPYC", "weights_digest": "0" * 64}  # the weights shipped before, same size
    (tmp_path / "finetune-kvasir-polyp-unet16-256px-s0-10min-on-amd-epyc.json").write_text(json.dumps(old))
    with pytest.raises(TrainedError):
        finetune.run_budget("data/kvasir", "polyp-unet16", 10, 256, 0)
    assert runs == [f"kvasir-scratch-as-polyp-unet16-{digest}-256px-s0-10min"]  # not the old weights' folders
    key = finetune.result_key("data/kvasir", "polyp-unet16", 10, 256, 0)
    assert key == f"kvasir-polyp-unet16-{digest}-256px-s0-10min"
    done = {"cpu": "AMD EPYC", "mark": 2}
    (tmp_path / f"finetune-{key}-on-amd-epyc.json").write_text(json.dumps(done))
    assert finetune.run_budget("data/kvasir", "polyp-unet16", 10, 256, 0) == done


def test_the_finetune_table_names_the_recipe_of_the_weights_each_result_used() -> None:
    """A result of weights shipped before is labelled with the recipe its card named (budget candidates freeze
    under their base's name, `strong`), a result of the weights shipped now with the card's recipe."""
    finetune = pytest.importorskip("finetune")
    from polypseg.zoo import find, weights_digest

    base = {"model": "polyp-unet16", "recipe": "strong", "size": 256}
    old = {**base, "weights_digest": "0" * 64, "card_recipe": "cpu-2h"}
    assert finetune.model_label(old) == "polyp-unet16 as shipped then (cpu-2h as it was then, 256 px)"
    assert finetune.model_label({**base, "size": 192}) == "polyp-unet16 as shipped then (strong as it was then, 192 px)"
    now = {**base, "weights_digest": weights_digest(find("polyp-unet16").weights)}
    assert finetune.model_label(now) == "polyp-unet16 (cpu-2h, 256 px)"


def test_avx2_candidates_are_filed_and_tabled_apart_against_their_own_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`budget.py --isa avx2` on a CPU with bf16 units stands in for a CPU without them: its runs and results
    carry the tag suffix -avx2, and its table is its own, each candidate against the reference trained the same
    way (not against the bf16 one of the same CPU and budget)."""
    import json

    budget = pytest.importorskip("budget")
    calls: list[dict] = []
    monkeypatch.setattr(budget, "run_one", lambda *a, **k: calls.append(k) or {})
    budget.run_candidate("realtime", 20, 0, avx2=True)
    budget.run_candidate("strong", 20, 0, avx2=True)
    assert [c["tag"] for c in calls] == ["realtime-avx2", "ref-avx2"]
    assert calls[0]["extra"] == {"model.args.stem_stride": 2}
    assert calls[0]["command"] == "python benchmarks/budget.py --minutes 20 --candidates realtime --seed 0 --isa avx2"

    results = tmp_path / "results"
    results.mkdir()
    monkeypatch.setattr(budget, "RESULTS", results)
    monkeypatch.setattr(generalise, "RUNS", tmp_path / "runs")
    ref = _budget_result("ref", {"polypgen/a": 0.5, "polypgen/b": 0.6, "polypgen/c": 0.7})
    cand = _budget_result("cand", {"polypgen/a": 0.6, "polypgen/b": 0.7, "polypgen/c": 0.8})
    ref_avx2 = _budget_result("ref-avx2", {"polypgen/a": 0.4, "polypgen/b": 0.5, "polypgen/c": 0.6})
    cand_avx2 = _budget_result("cand-avx2", {"polypgen/a": 0.45, "polypgen/b": 0.55, "polypgen/c": 0.65})
    for r in (ref, cand, ref_avx2, cand_avx2):
        r["bf16_units"] = True
        (results / f"generalise-polypgen-strong+{r['tag']}-192px-s0-120min.json").write_text(json.dumps(r))
    docs = tmp_path / "results.md"
    docs.write_text(f"{budget.START}\n{budget.END}\n")
    budget.write_table(docs)
    sections = {s.splitlines()[0]: s for s in docs.read_text().split("### ")[1:]}
    native, emulated = "120 minutes, Test CPU (bf16 units: yes)", (
        "120 minutes, Test CPU (bf16 units: yes, not used: torch limited to AVX2 code with --isa avx2, so fp32, "
        "as on a CPU without them)")  # fmt: skip
    assert sorted(sections) == [native, emulated]

    def table(heading: str) -> dict[str, list[str]]:
        return {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in sections[heading].splitlines()
                if line.startswith("| ") and "val mDice" not in line}  # fmt: skip

    assert sorted(table(emulated)) == ["cand", "strong"]
    assert table(emulated)["cand"][5].startswith("+0.0500 [+0.050, +0.050]")
    assert table(native)["cand"][5].startswith("+0.1000 [+0.100, +0.100]")


def test_budget_refuses_an_isa_limit_it_would_file_under_the_wrong_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """A limit set by hand (ONEDNN_MAX_CPU_ISA=AVX2 without --isa avx2) would file fp32 AVX2 results as the
    CPU's bf16 ones; --isa avx2 on a CPU without bf16 units, or with a stand-in bf16 reference, is refused."""
    budget = pytest.importorskip("budget")
    monkeypatch.setattr(budget, "has_bf16_units", lambda: True)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    with pytest.raises(SystemExit, match="unset it and pass --isa avx2"):
        budget.refuse_mixed_isa(False, None)
    budget.refuse_mixed_isa(True, None)  # the child process of --isa avx2
    with pytest.raises(SystemExit, match="trains its own reference"):
        budget.refuse_mixed_isa(True, True)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    budget.refuse_mixed_isa(False, None)
    monkeypatch.setattr(budget, "has_bf16_units", lambda: False)
    with pytest.raises(SystemExit, match="runs fp32 code already"):
        budget.refuse_mixed_isa(True, None)
