"""Run-folder behaviour of ``fit`` and ``polypseg train`` / ``demo``: budgets across resumes, exact resume,
a failed first run, refused overrides, the demo folder, loggers, and recipe checks (CPU, tiny data)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from polypseg.cli import app
from polypseg.config import RecipeError, load_recipe
from polypseg.data.errors import DataError
from polypseg.training import fit, read_metrics
from polypseg.training.recorder import RunRecorder

pytestmark = pytest.mark.slow
DATA = "synthetic:n=24,size=64,seed=5"
TINY = {"data.size": 64, "data.batch_size": 8, "model.args.base": 4, "model.args.depth": 2, "precision": "32"}


def _tiny(**extra: object):
    return load_recipe("quick", {**TINY, **extra})


class _CrashError(RuntimeError):
    pass


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def test_budget_is_total_training_time_and_resume_is_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect: Lightning's Timer restored the earlier elapsed time, the schedule's clock restarted at zero.

    A fake clock advances one 'second' per reading, so the budget (12 s = 0.2 min) and the budget-aware
    cosine schedule are deterministic: an interrupted-and-resumed run must give the same per-epoch
    learning rates, losses and final weights as the uninterrupted run, and stop at the same epoch."""
    ticks = iter(range(10**6))
    monkeypatch.setattr("polypseg.training.budget.now", lambda: float(next(ticks)))
    recipe = _tiny(epochs=50, **{"scheduler.warmup_epochs": 0})
    whole = fit(recipe, [DATA], tmp_path / "whole", max_minutes=0.2, progress=False)
    rows = read_metrics(whole.run_dir)
    assert 2 < len(rows) < 50  # the budget, not the epochs, ended it

    original = RunRecorder.on_validation_end

    def crash_after_epoch_1(self: RunRecorder, trainer, module) -> None:
        original(self, trainer, module)
        if self.saved_epoch == 1:
            raise _CrashError("killed after the second epoch's checkpoint")

    monkeypatch.setattr(RunRecorder, "on_validation_end", crash_after_epoch_1)
    with pytest.raises(_CrashError):
        fit(recipe, [DATA], tmp_path / "cut", max_minutes=0.2, progress=False)
    monkeypatch.setattr(RunRecorder, "on_validation_end", original)
    assert len(read_metrics(tmp_path / "cut")) == 2
    fit(None, [], tmp_path / "cut", resume=True, progress=False)  # the frozen budget: 0.2 min in all
    resumed = read_metrics(tmp_path / "cut")
    assert [r["epoch"] for r in resumed] == [r["epoch"] for r in rows]
    for a, b in zip(rows, resumed, strict=True):
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-12)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["val_dice"] == pytest.approx(b["val_dice"], rel=1e-6)
    for name, tensor in _weights(whole.run_dir).items():
        assert torch.equal(tensor, _weights(tmp_path / "cut")[name]), name
    cfg = yaml.safe_load((tmp_path / "cut" / "config.yaml").read_text())
    assert cfg["max_minutes"] == 0.2
    # resuming a run whose budget is spent (e.g. a benchmark rerun after a crash in evaluation) trains nothing
    before = _weights(whole.run_dir)
    fit(None, [], whole.run_dir, resume=True, progress=False)
    assert read_metrics(whole.run_dir) == rows
    assert all(torch.equal(t, _weights(whole.run_dir)[k]) for k, t in before.items())


def test_a_bad_mask_leaves_no_half_made_run_folder(tmp_path: Path) -> None:
    """Defect: config.yaml, split.json and env.json were written before any pixel was read, so a rerun
    said 'already holds files' and --resume said there was nothing to resume."""
    data = tmp_path / "set"
    rng = np.random.default_rng(0)
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for i in range(8):
        cv2.imwrite(str(data / "images" / f"{i}.png"), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        mask = np.zeros((32, 32) if i else (16, 16), np.uint8)  # the first mask has the wrong size
        mask[4:12, 4:12] = 255
        cv2.imwrite(str(data / "masks" / f"{i}.png"), mask)
    run = tmp_path / "run"
    recipe = _tiny(epochs=1, **{"data.size": 32})
    with pytest.raises(DataError, match="size mismatch"):
        fit(recipe, [str(data)], run, progress=False)
    assert not (run / "config.yaml").exists() and not (run / "split.json").exists()
    mask = np.zeros((32, 32), np.uint8)
    mask[4:12, 4:12] = 255
    cv2.imwrite(str(data / "masks" / "0.png"), mask)
    res = fit(recipe, [str(data)], run, progress=False)  # the same --out, no --resume
    assert res.epochs_done == 1


def test_a_folder_whose_run_stopped_before_its_first_checkpoint_starts_again(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("recipe: {}\n")
    (run / "split.json").write_text("{}")
    assert fit(_tiny(epochs=1), [DATA], run, progress=False).epochs_done == 1
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["train", "--data", DATA, "--out", str(tmp_path / "other"), "--epochs", "1"])
    assert result.exit_code == 2 and "already holds files" in result.output
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "extra",
    [["--recipe", "strong"], ["--data", DATA], ["--size", "32"], ["--seed", "3"], ["--precision", "bf16"]],
)
def test_resume_refuses_options_it_would_ignore(tmp_path: Path, extra: list[str]) -> None:
    """Defect: --resume silently ignored --recipe, --data, --size and the other overrides."""
    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "r"), "--resume", *extra])
    assert result.exit_code == 2
    assert extra[0] in result.output and "cannot change on resume" in result.output


def test_group_csv_path_is_frozen_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect: a relative --group-csv path was frozen as given, so resume from elsewhere lost it."""
    monkeypatch.chdir(tmp_path)
    Path("groups.csv").write_text("stem,patient\nx,p1\n")
    run = fit(_tiny(epochs=1, **{"data.group_csv": "groups.csv:patient"}), [DATA], tmp_path / "r", progress=False)
    frozen = yaml.safe_load((run.run_dir / "config.yaml").read_text())["recipe"]["data"]["group_csv"]
    assert frozen == f"{(tmp_path / 'groups.csv').resolve()}:patient"


def test_a_new_best_checkpoint_drops_the_stale_tuned_threshold(tmp_path: Path) -> None:
    """Defect: a resumed run rewrote best.ckpt with the recipe's threshold while threshold.json kept the
    tuned one; now threshold.json always describes the threshold best.ckpt holds."""
    from polypseg.evaluation import tune_threshold

    run = tmp_path / "r"
    fit(_tiny(epochs=1, **{"optimizer.lr": 0.01}), [DATA], run, progress=False)
    tune_threshold(run)
    assert (run / "threshold.json").exists()
    fit(None, [], run, resume=True, epochs=6, progress=False)
    best = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)["polypseg"]
    if best["epoch"] > 0:  # a later epoch became best: its checkpoint holds the recipe's threshold
        assert best["threshold_source"] == "recipe" and not (run / "threshold.json").exists()
    else:
        assert best["threshold_source"].startswith("tuned") and (run / "threshold.json").exists()
    assert best["epoch"] > 0, "the test needs a run whose best epoch moved (raise epochs or lr)"


def test_tune_tta_is_used_and_recorded(tmp_path: Path) -> None:
    """Defect: tune ignored --tta."""
    run = tmp_path / "r"
    fit(_tiny(epochs=1), [DATA], run, progress=False)
    result = CliRunner().invoke(app, ["tune", str(run), "--tta"])
    assert result.exit_code == 0, result.output
    meta = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)["polypseg"]
    assert "flip TTA" in meta["tta_threshold_source"]
    assert json.loads((run / "threshold-tta.json").read_text())["tta"] is True


def test_a_tta_threshold_is_used_only_with_tta(tmp_path: Path) -> None:
    """Defect: 'tune --tta' replaced the checkpoint's threshold, so evaluate / predict WITHOUT --tta then
    thresholded plain probabilities at the TTA threshold, silently. Now each mode keeps its own threshold
    (the sweep of each in threshold.json / threshold-tta.json) and each evaluation uses its mode's."""
    from polypseg.checkpoint import update_checkpoint_meta
    from polypseg.evaluation import evaluate, tune_threshold

    run = tmp_path / "r"
    fit(_tiny(epochs=1), [DATA], run, progress=False)
    plain = 0.123  # a plain threshold no sweep of this run chooses
    update_checkpoint_meta(run / "checkpoints" / "best.ckpt", threshold=plain, threshold_source="set by the test")
    with_tta = tune_threshold(run, tta=True).best
    assert with_tta != pytest.approx(plain)
    assert json.loads((run / "threshold-tta.json").read_text())["threshold"] == pytest.approx(with_tta)
    assert not (run / "threshold.json").exists()  # train(tune=False) wrote none; the TTA sweep has its own file
    s = evaluate(run, split="val", out_dir=tmp_path / "plain").summary
    assert (s["threshold"], s["threshold_source"]) == (pytest.approx(plain), "set by the test")
    s = evaluate(run, split="val", out_dir=tmp_path / "tta", tta=True).summary
    assert s["threshold"] == pytest.approx(with_tta) and s["threshold_source"].endswith("flip TTA)")


def test_a_plain_tune_of_an_older_tta_tuned_checkpoint_keeps_its_tta_threshold(tmp_path: Path) -> None:
    """A checkpoint of the older form (``threshold_tta: True``: its threshold was tuned with TTA) re-tuned
    without TTA keeps that threshold as its TTA one, and the old flag goes."""
    from polypseg.checkpoint import stored_threshold, update_checkpoint_meta
    from polypseg.evaluation import tune_threshold

    run = tmp_path / "r"
    fit(_tiny(epochs=1), [DATA], run, progress=False)
    best = run / "checkpoints" / "best.ckpt"
    source = "tuned on val (4 images, max mean F1, flip TTA)"
    update_checkpoint_meta(best, threshold=0.123, threshold_source=source, threshold_tta=True)
    sweep = tune_threshold(run)
    meta = torch.load(best, weights_only=True)["polypseg"]
    assert "threshold_tta" not in meta and meta["threshold"] == pytest.approx(sweep.best)
    assert stored_threshold(meta, tta=True) == (pytest.approx(0.123), source)


def test_demo_never_removes_a_folder_it_did_not_make(tmp_path: Path) -> None:
    """Defect: 'polypseg demo --out DIR' deleted any existing DIR (--out . emptied the working directory)."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    result = CliRunner().invoke(app, ["demo", "--out", str(mine)])
    assert result.exit_code == 2 and "not made by 'polypseg demo'" in result.output
    assert (mine / "thesis.tex").read_text() == "years of work"


def test_demo_replaces_its_own_earlier_folder(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--n", "24", "--size", "64", "--epochs", "1"]
    assert CliRunner().invoke(app, args).exit_code == 0
    (out / "leftover.txt").write_text("from the first demo")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert not (out / "leftover.txt").exists() and (out / ".polypseg-demo").exists()


def test_demo_ends_with_the_shipped_model_on_synthetic_frames_and_the_users_image(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    from polypseg.data.synthetic import render_frame

    mine = tmp_path / "my frame.jpg"
    frame, _ = render_frame(seed=3, index=0, size=256)
    big = cv2.resize(frame, (360, 288))  # a size of its own: the mask must come back at it
    cv2.imwrite(str(mine), big[..., ::-1])
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--n", "24", "--size", "64", "--epochs", "1", "--image", str(mine)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "4/4 the shipped polyp model 'polyp-unet16'" in text
    assert "on 3 synthetic frame(s) and 1 image(s) of yours" in text
    assert "my frame.jpg (yours): polyp area" in text and "not a medical device" in text
    mask = cv2.imread(str(out / "shipped" / "my frame_mask.png"), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (288, 360) and set(np.unique(mask)) <= {0, 255}
    assert len(list((out / "shipped").glob("*_mask.png"))) == 4


def test_demo_refuses_a_missing_image_before_training(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--image", str(tmp_path / "nope.jpg")])
    assert result.exit_code == 2 and "nope.jpg: no such file" in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model.args.deep_supervision": True, "loss.deep_supervision_weights": [0.5]}, "1 weight"),
        ({"model.args.deep_supervision": True, "model.args.depth": 1, "data.size": 64}, "depth >= 2"),
    ],
)
def test_deep_supervision_settings_that_would_leave_heads_untrained_are_refused(overrides: dict, message: str) -> None:
    """Defect: too few deep_supervision_weights silently left heads untrained; depth 1 made no heads."""
    with pytest.raises(RecipeError, match=message):
        load_recipe("quick", overrides)


@pytest.mark.parametrize(("logger", "pattern"), [("tensorboard", "tensorboard/events.out.tfevents.*"),
                                                 ("mlflow", "mlruns/*/*/metrics/val_dice")])  # fmt: skip
def test_experiment_loggers_write_their_files(tmp_path: Path, logger: str, pattern: str) -> None:
    run = tmp_path / "r"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--data",
            DATA,
            "--out",
            str(run),
            "--epochs",
            "2",
            "--size",
            "64",
            "--no-progress",
            "--no-tune",
            "--logger",
            logger,
        ],
    )
    assert result.exit_code == 0, result.output
    found = list(run.glob(pattern))
    assert found, f"no {pattern} in {sorted(p.relative_to(run) for p in run.rglob('*'))}"
    assert len(read_metrics(run)) == 2  # metrics.csv is written beside it
    if logger == "mlflow":
        values = [line.split()[1] for line in found[0].read_text().splitlines()]
        assert len(values) == 2 and all(0 <= float(v) <= 1 for v in values)
