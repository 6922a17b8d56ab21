"""Shrunk end-to-end runs of the whole pipeline on a tiny synthetic set (CPU, seconds each)."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from polypseg.checkpoint import load_checkpoint
from polypseg.cli import app
from polypseg.config import load_recipe
from polypseg.data.sources import discover
from polypseg.training import RunFolderError, fit, read_metrics

pytestmark = pytest.mark.slow
DATA = "synthetic:n=48,size=64,seed=3"
TINY = {"epochs": 2, "data.size": 64, "data.batch_size": 8, "model.args.base": 8}


def _tiny(**extra):
    return load_recipe("quick", {**TINY, **extra})


def test_cli_train_evaluate_predict(tmp_path: Path) -> None:
    runner = CliRunner()
    run = tmp_path / "run"
    recipe = tmp_path / "tiny.yaml"
    from polypseg.config import dump_recipe

    recipe.write_text(dump_recipe(_tiny()))
    res = runner.invoke(app, ["train", "--recipe", str(recipe), "--data", DATA, "--out", str(run), "--no-progress"])
    assert res.exit_code == 0, res.output
    for name in (
        "config.yaml",
        "split.json",
        "env.json",
        "metrics.csv",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
    ):
        assert (run / name).exists(), name
    rows = read_metrics(run)
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert all(0 <= r["val_dice"] <= 1 and r["train_loss"] > 0 for r in rows)

    res = runner.invoke(app, ["evaluate", str(run), "--split", "test"])
    assert res.exit_code == 0, res.output
    summary = json.loads((run / "eval" / "test" / "summary.json").read_text())
    split = json.loads((run / "split.json").read_text())["splits"]
    assert summary["metrics"]["n_images"] == len(split["test"]) == 7
    per_image = (run / "eval" / "test" / "per_image.csv").read_text().splitlines()
    assert len(per_image) == 1 + 7
    for scope in ("mean", "pooled"):
        assert 0 <= summary["metrics"][scope]["dice"] <= 1
    assert "mean over images" in res.output and "pooled" in res.output

    test_images = [s.image for s in discover(DATA) if s.split == "test"][:2]
    res = runner.invoke(app, ["predict", str(run), *map(str, test_images), "--out", str(tmp_path / "pred")])
    assert res.exit_code == 0, res.output
    mask = cv2.imread(str(tmp_path / "pred" / f"{test_images[0].stem}_mask.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 255}
    assert (tmp_path / "pred" / f"{test_images[0].stem}_overlay.png").exists()

    # The checkpoint describes itself and loads safely.
    loaded = load_checkpoint(run / "checkpoints" / "best.ckpt")
    assert loaded.meta["preprocess"]["size"] == 64 and loaded.meta["model_name"] == "unet"
    assert loaded.meta["threshold"] == 0.5

    # A second train into the same folder refuses to overwrite it.
    res = runner.invoke(app, ["train", "--data", DATA, "--out", str(run), "--no-progress"])
    assert res.exit_code == 2 and "--resume" in res.output


def test_same_seed_same_metrics(tmp_path: Path) -> None:
    a = fit(_tiny(), [DATA], tmp_path / "a", progress=False)
    b = fit(_tiny(), [DATA], tmp_path / "b", progress=False)
    keys = ("train_loss", "val_loss", "val_dice", "val_iou", "lr")
    rows_a, rows_b = read_metrics(a.run_dir), read_metrics(b.run_dir)
    assert len(rows_a) == len(rows_b) == 2
    assert [[r[k] for k in keys] for r in rows_a] == [[r[k] for k in keys] for r in rows_b]
    sa = torch.load(a.last_ckpt, weights_only=True)["state_dict"]
    sb = torch.load(b.last_ckpt, weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resume_continues_from_last(tmp_path: Path) -> None:
    run = tmp_path / "r"
    fit(_tiny(epochs=1), [DATA], run, progress=False)
    assert len(read_metrics(run)) == 1
    with pytest.raises(RunFolderError):
        fit(_tiny(), [DATA], run, progress=False)
    res = fit(None, [], run, resume=True, epochs=2, progress=False)
    rows = read_metrics(run)
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert res.epochs_done == 2
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
    env = json.loads((run / "env.json").read_text())  # the first session kept, the resume appended
    assert env["time"] <= env["resumes"][0]["time"] and len(env["resumes"]) == 1
    assert env["precision"] == env["resumes"][0]["precision"]  # both sessions recorded what they used


def test_ddp_two_cpu_processes(tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    recipe = tmp_path / "tiny.yaml"
    from polypseg.config import dump_recipe

    recipe.write_text(dump_recipe(_tiny(epochs=1)))
    cmd = [
        sys.executable,
        "-m",
        "polypseg",
        "train",
        "--recipe",
        str(recipe),
        "--data",
        DATA,
        "--out",
        str(run),
        "--devices",
        "2",
        "--accelerator",
        "cpu",
        "--no-progress",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = read_metrics(run)
    assert len(rows) == 1 and 0 <= rows[0]["val_dice"] <= 1
    n_val = len(json.loads((run / "split.json").read_text())["splits"]["val"])
    assert n_val % 2 == 1  # so a padding sampler would score one image twice
    assert rows[0]["val_images"] == n_val  # each validation image counted once over both processes
    assert (run / "checkpoints" / "best.ckpt").exists()
    env = json.loads((run / "env.json").read_text())
    assert env["world_size"] == 2 and env["strategy"] == "DDPStrategy"


def test_budget_spent_inside_first_epoch_still_leaves_checkpoints(tmp_path: Path) -> None:
    recipe = _tiny(epochs=3, **{"data.batch_size": 2})
    res = fit(recipe, [DATA], tmp_path / "short", max_minutes=0.0001, progress=False)
    assert res.best_ckpt.exists() and res.last_ckpt.exists()
    rows = read_metrics(res.run_dir)
    assert len(rows) == 1 and rows[0]["epoch"] == 0 and 0 <= rows[0]["val_dice"] <= 1


def test_train_on_medsegbench_npz_from_a_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Also: a relative --data path is frozen as an absolute one, so evaluation works from another folder."""
    from polypseg.data.synthetic import render_frame

    arrays = {}
    index = 0
    for split, n in (("train", 24), ("val", 6), ("test", 6)):
        frames = [render_frame(7, index + i, 64) for i in range(n)]
        index += n
        arrays[f"{split}_images"] = np.stack([f[0] for f in frames])
        arrays[f"{split}_label"] = np.stack([f[1] for f in frames])
    npz = tmp_path / "PolypGenMSBench.npz"
    np.savez_compressed(npz, **arrays)
    monkeypatch.chdir(tmp_path)
    run = fit(_tiny(epochs=1), ["PolypGenMSBench.npz"], tmp_path / "npz", progress=False)
    split = json.loads((run.run_dir / "split.json").read_text())["splits"]
    assert [len(split[k]) for k in ("train", "val", "test")] == [24, 6, 6]
    import yaml

    assert yaml.safe_load((run.run_dir / "config.yaml").read_text())["data"] == [str(npz.resolve())]
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    from polypseg.evaluation.evaluate import evaluate

    assert evaluate(run.run_dir, split="test").summary["metrics"]["n_images"] == 6


#: patient -> frames of that patient; stems are ``p1_a``, ``p1_b``, ... (20 frames of 8 patients).
PATIENT_FRAMES = {"p1": 4, "p2": 3, "p3": 3, "p4": 3, "p5": 2, "p6": 2, "p7": 2, "p8": 1}


def test_cli_fold_and_group_regex_split_members(tmp_path: Path) -> None:
    """``train --group-regex --fold k/K``: each run's split.json keeps every patient in one split, the K
    folds' validation sets partition train + val exactly, and the test split is the same in every fold."""
    import yaml
    from conftest import write_pair

    from polypseg.config import dump_recipe

    data = tmp_path / "pts"
    patient_of = {}  # sample id -> patient, from the names generated here (not from polypseg's grouping)
    for n_patient, (patient, n) in enumerate(PATIENT_FRAMES.items()):
        for j in range(n):
            stem = f"{patient}_{'abcd'[j]}"
            write_pair(data, stem, size=(32, 32), seed=10 * n_patient + j)
            patient_of[f"pts/{stem}"] = patient
    all_ids = set(patient_of)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(dump_recipe(_tiny(epochs=1, **{"data.size": 32})))
    K = 3
    splits = []
    for k in range(1, K + 1):
        out = tmp_path / f"fold{k}"
        res = CliRunner().invoke(
            app,
            ["train", "--recipe", str(recipe), "--data", str(data), "--out", str(out), "--fold", f"{k}/{K}",
             "--group-regex", r"^(p\d+)_", "--no-progress", "--no-tune"],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        cfg = yaml.safe_load((out / "config.yaml").read_text())["recipe"]["data"]
        assert cfg["fold"] == f"{k}/{K}" and cfg["group_regex"] == r"^(p\d+)_"
        split = json.loads((out / "split.json").read_text())["splits"]
        members = {name: set(split[name]) for name in ("train", "val", "test")}
        assert sum(len(v) for v in members.values()) == len(all_ids)  # no id twice
        assert set.union(*members.values()) == all_ids  # every id once
        assert members["test"] and members["val"] and members["train"]
        for patient in PATIENT_FRAMES:  # a patient lies wholly in one split
            frames = {i for i, p in patient_of.items() if p == patient}
            assert sum(frames <= ids for ids in members.values()) == 1, patient
        splits.append(members)

    test = splits[0]["test"]
    assert all(s["test"] == test for s in splits)  # test untouched by the fold
    pool = all_ids - test
    vals = [s["val"] for s in splits]
    assert sorted(i for v in vals for i in v) == sorted(pool)  # each train+val id in exactly one fold's val
    assert all(s["train"] == pool - s["val"] for s in splits)  # the rest of the pool trains
    sizes = [len(v) for v in vals]
    assert max(sizes) - min(sizes) <= max(PATIENT_FRAMES.values())  # near-equal folds of whole patients


def test_predict_video_writes_overlay_video_and_frame_csv(tmp_path: Path) -> None:
    from polypseg.data.synthetic import render_frame

    run = fit(_tiny(epochs=1), [DATA], tmp_path / "run", progress=False).run_dir
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 80))
    for i in range(11):
        writer.write(cv2.resize(render_frame(1, i, 96)[0], (96, 80))[..., ::-1])
    writer.release()
    res = CliRunner().invoke(app, ["predict", str(run), str(video), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    rows = (tmp_path / "out" / "clip_frames.csv").read_text().splitlines()
    assert rows[0] == "frame,polyp_fraction,polyp_found" and len(rows) == 1 + 11
    cap = cv2.VideoCapture(str(tmp_path / "out" / "clip_overlay.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 11 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 96

    # A folder of 11 images of two sizes goes through in batches of 8 (two forward passes); each
    # probability map equals the one-image-at-a-time answer and each mask has its image's size.
    from polypseg.inference import Predictor
    from polypseg.inference.predict import predict

    frames = tmp_path / "frames"
    frames.mkdir()
    images = [cv2.resize(render_frame(2, i, 96)[0], (96, 80) if i % 2 else (64, 64)) for i in range(11)]
    for i, image in enumerate(images):
        cv2.imwrite(str(frames / f"f{i:02d}.png"), image[..., ::-1])
    written = predict(run, [frames], tmp_path / "folder", precision="32")
    assert [p.name for p in written] == [f"f{i:02d}_mask.png" for i in range(11)]
    assert [cv2.imread(str(p), cv2.IMREAD_UNCHANGED).shape for p in written] == [im.shape[:2] for im in images]
    predictor = Predictor.from_checkpoint(run, precision="32")
    batched = list(predictor.predict_proba(images))
    single = [next(predictor.predict_proba([image])) for image in images]
    assert all(np.abs(b - s).max() < 1e-5 for b, s in zip(batched, single, strict=True))
