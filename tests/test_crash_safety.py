"""Crash-safe training (issue #14 item 4): SIGKILL then --resume equals an uninterrupted run, SIGINT and
SIGTERM stop cleanly with a checkpoint and a resume hint, a NaN loss keeps the last good checkpoint, a
second writer is locked out, and a full disk while writing a checkpoint leaves the previous one loadable.

The subprocess tests run the real ``polypseg train`` (CPU, fp32, deterministic) on a tiny synthetic set.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from typer.testing import CliRunner

from polypseg.cli import app
from polypseg.device import cpu_description
from polypseg.paths import RunPaths
from polypseg.runlock import LOCK_NAME

EPOCHS = 8
TRAIN_ARGS = ["--data", "synthetic:n=48,size=64,seed=3", "--epochs", str(EPOCHS), "--size", "64",
              "--batch-size", "4", "--precision", "32", "--no-progress", "--no-tune"]  # fmt: skip
ONE_EPOCH = [a if a != str(EPOCHS) else "1" for a in TRAIN_ARGS]


def _start(out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "polypseg", "train", "--out", str(out), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _rows(run: Path) -> list[dict[str, str]]:
    path = RunPaths(run).metrics
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _wait_for_rows(proc: subprocess.Popen, run: Path, n: int, timeout_s: float = 240) -> None:
    """Block until ``metrics.csv`` has ``n`` rows (the recorder writes last.ckpt before the row)."""
    end = time.monotonic() + timeout_s
    while len(_rows(run)) < n:
        if proc.poll() is not None:
            pytest.fail(f"train ended before epoch {n} was saved:\n{proc.stdout.read()}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail(f"no {n} epochs within {timeout_s} s")
        time.sleep(0.01)


def _comparable(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(RunPaths(run).checkpoint("last"), map_location="cpu", weights_only=True)["state_dict"]


def _assert_same_run(a: Path, b: Path) -> None:
    assert _comparable(_rows(b)) == _comparable(_rows(a))
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("crash") / "whole"
    proc = _start(run, *TRAIN_ARGS)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    assert len(_rows(run)) == EPOCHS
    return run


def test_sigkill_after_the_second_checkpoint_then_resume_equals_an_uninterrupted_run(
    uninterrupted: Path, tmp_path: Path
) -> None:
    run = tmp_path / "killed"
    proc = _start(run, *TRAIN_ARGS)
    _wait_for_rows(proc, run, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert len(_rows(run)) < EPOCHS, "the run finished before the kill: make it longer"
    assert (run / LOCK_NAME).exists()  # a killed process cannot clean up: resume takes over its stale lock
    killed_session = json.loads((run / "env.json").read_text())  # how it trained, though it never finished
    assert killed_session["precision"] in ("32-true", "bf16-mixed") and killed_session["cpu"] == cpu_description()
    resumed = subprocess.run(
        [sys.executable, "-m", "polypseg", "train", "--out", str(run), "--resume", "--no-progress", "--no-tune"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "taking over the lock" in resumed.stdout
    _assert_same_run(uninterrupted, run)
    assert not (run / LOCK_NAME).exists()
    env = json.loads((run / "env.json").read_text())
    assert env["resumes"][0]["precision"] == killed_session["precision"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_saves_says_how_to_resume_and_exits_cleanly(uninterrupted: Path, tmp_path: Path, sig: int) -> None:
    run = tmp_path / "signalled"
    proc = _start(run, *TRAIN_ARGS)
    _wait_for_rows(proc, run, 1)
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, output
    assert "Traceback" not in output and "unexpected error" not in output
    assert f"stopped by {signal.Signals(sig).name}" in output
    assert f"polypseg train --resume --out {run}" in " ".join(output.split())
    interrupted = RunPaths(run).checkpoint("interrupted")
    assert interrupted.exists()
    ckpt = torch.load(interrupted, map_location="cpu", weights_only=True)
    assert ckpt["state_dict"].keys() == _weights(uninterrupted).keys()
    assert not (run / LOCK_NAME).exists()
    if sig == signal.SIGTERM:  # resuming repeats the interrupted epoch: the result equals the whole run
        res = CliRunner().invoke(app, ["train", "--out", str(run), "--resume", "--no-progress", "--no-tune"])
        assert res.exit_code == 0, res.output
        _assert_same_run(uninterrupted, run)
        assert not interrupted.exists()  # outdated once a later epoch finished


def test_a_nan_loss_stops_naming_epoch_and_step_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from polypseg.training.module import SegModule

    real_step = SegModule.training_step

    def poisoned_from_epoch_1(self, batch, batch_idx):
        if self.current_epoch >= 1 and not getattr(self, "_poisoned", False):
            loss, self._poisoned = self._loss, True
            self._loss = lambda logits, target: loss(logits, target) * float("nan")
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(SegModule, "training_step", poisoned_from_epoch_1)
    run = tmp_path / "nan"
    res = CliRunner().invoke(app, ["train", "--out", str(run), *TRAIN_ARGS])
    assert res.exit_code == 1, res.output
    text = " ".join(res.output.split())
    ckpt = torch.load(RunPaths(run).checkpoint("last"), map_location="cpu", weights_only=True)
    assert f"training loss is nan at epoch 1, batch 0 (optimiser step {ckpt['global_step']})" in text
    assert "lower the learning rate" in text and "--precision 32" in text
    assert "the last good checkpoint (epoch 0)" in text and "Traceback" not in text
    assert ckpt["epoch"] == 0 and all(torch.isfinite(t).all() for t in ckpt["state_dict"].values())
    assert len(_rows(run)) == 1


HOLDER = """
import fcntl, json, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, json.dumps({"pid": os.getpid(), "host": sys.argv[2], "since": "2026-12-01T10:00:00+00:00"}).encode())
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_train_into_a_folder_a_live_process_writes_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "busy"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run / LOCK_NAME), socket.gethostname()],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        res = CliRunner().invoke(app, ["train", "--out", str(run), *TRAIN_ARGS])
        assert res.exit_code == 2, res.output
        text = " ".join(res.output.split())
        assert f"pid {holder.pid} on {socket.gethostname()}" in text and "another polypseg process" in text
        assert json.loads((run / LOCK_NAME).read_text())["pid"] == holder.pid  # the holder's lock is left alone
        assert [p.name for p in run.iterdir()] == [LOCK_NAME]
    finally:
        holder.kill()
        holder.wait()
    # the kernel released the dead holder's lock: the same command now runs, and says whose lock it took
    res = CliRunner().invoke(app, ["train", "--out", str(run), *ONE_EPOCH])
    assert res.exit_code == 0, res.output
    assert f"taking over the lock of a polypseg process that no longer runs (pid {holder.pid}" in res.output
    assert not (run / LOCK_NAME).exists()


def test_a_reused_pid_does_not_fake_a_lock(tmp_path: Path) -> None:
    """Review finding: in a container the restarted train often has the dead one's pid (1): a pid-file lock
    then refused every resume as 'this process'. The flock is the kernel's, so only a live holder counts."""
    run = tmp_path / "restarted"
    run.mkdir()
    (run / LOCK_NAME).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": "x"}))
    res = CliRunner().invoke(app, ["train", "--out", str(run), *ONE_EPOCH])
    assert res.exit_code == 0, res.output


def test_a_full_disk_while_writing_a_checkpoint_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = pl.Trainer.save_checkpoint
    calls = {"n": 0}

    def full_on_the_third_save(self, filepath, *args, **kwargs):  # the second last.ckpt: epoch 1's
        # (counted by name: whether epoch 1 also writes best.ckpt, and first, depends on the CPU's rounding)
        calls["n"] += "last" in Path(filepath).name
        if calls["n"] == 2 and "last" in Path(filepath).name:
            Path(filepath).write_bytes(b"PK\x03\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filepath))
        return real(self, filepath, *args, **kwargs)

    monkeypatch.setattr(pl.Trainer, "save_checkpoint", full_on_the_third_save)
    run = tmp_path / "full"
    res = CliRunner().invoke(app, ["train", "--out", str(run), *TRAIN_ARGS])
    assert res.exit_code == 1, res.output
    last = RunPaths(run).checkpoint("last")
    text = "".join(res.output.split())  # the console may wrap anywhere, inside the path too
    assert (
        "".join(f"no space left on the device while writing {last}: the previous last.ckpt is intact".split()) in text
    )
    assert "Traceback" not in text
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 0
    assert sorted(p.name for p in RunPaths(run).checkpoints.iterdir()) == ["best.ckpt", "last.ckpt"]
    monkeypatch.setattr(pl.Trainer, "save_checkpoint", real)  # space freed: the run continues
    res = CliRunner().invoke(app, ["train", "--out", str(run), "--resume", "--epochs", "2", "--no-progress",
                                   "--no-tune"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert [r["epoch"] for r in _rows(run)] == ["0", "1"]


def test_temporary_files_a_killed_writer_left_never_block_a_restart(tmp_path: Path) -> None:
    """Review finding: a SIGKILL during the first checkpoint's write left checkpoints/.last.tmp<pid>.ckpt;
    train then said 'already holds files; pass --resume' and --resume said 'nothing to resume'."""
    run = tmp_path / "killed-early"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / ".last.tmp4242.ckpt").write_bytes(b"PK\x03\x04 half")
    (run / ".config.yaml.tmp4242").write_text("half")
    (run / "config.yaml").write_text("recipe: {}")
    res = CliRunner().invoke(app, ["train", "--out", str(run), *ONE_EPOCH])
    assert res.exit_code == 0, res.output
    assert not list(run.rglob(".*.tmp*")) and RunPaths(run).checkpoint("last").exists()


def test_tune_refuses_while_a_train_holds_the_run(tmp_path: Path) -> None:
    """Review finding: tune's read-modify-write of best.ckpt could overwrite a newer best that a concurrent
    train --resume wrote; tune now takes the run's lock too."""
    run = tmp_path / "tuned"
    assert CliRunner().invoke(app, ["train", "--out", str(run), *ONE_EPOCH]).exit_code == 0
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run / LOCK_NAME), socket.gethostname()],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        res = CliRunner().invoke(app, ["tune", str(run)])
        assert res.exit_code == 2 and "another polypseg process" in res.output
        assert not RunPaths(run).threshold.exists()
    finally:
        holder.kill()
        holder.wait()
    res = CliRunner().invoke(app, ["tune", str(run)])
    assert res.exit_code == 0, res.output
    assert RunPaths(run).threshold.exists() and not (run / LOCK_NAME).exists()
