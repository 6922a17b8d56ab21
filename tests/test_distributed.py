"""Multi-process and multi-node launches: Lightning's rank decides who writes the run folder (defect: only
LOCAL_RANK / NODE_RANK were read, so under SLURM every task believed it was rank 0)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from polypseg.config import dump_recipe, load_recipe
from polypseg.training import read_metrics
from polypseg.training.fit import is_global_zero

SLURM_TASK_1 = {
    "SLURM_PROCID": "1", "SLURM_LOCALID": "0", "SLURM_NODEID": "1", "SLURM_NTASKS": "2", "SLURM_NNODES": "2",
    "SLURM_NTASKS_PER_NODE": "1", "SLURM_JOB_ID": "7", "SLURM_JOB_NAME": "polypseg", "SLURM_NODELIST": "n[1-2]",
}  # fmt: skip
TORCHRUN_NODE_1 = {
    "RANK": "1", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "GROUP_RANK": "1", "LOCAL_WORLD_SIZE": "1",
    "TORCHELASTIC_RUN_ID": "x", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29511",
}  # fmt: skip


@pytest.mark.parametrize("env", [SLURM_TASK_1, TORCHRUN_NODE_1], ids=["slurm-task-1", "torchrun-node-1"])
def test_a_second_nodes_first_process_is_not_rank_zero(monkeypatch: pytest.MonkeyPatch, env: dict) -> None:
    from lightning.fabric.utilities import rank_zero as fabric_rank_zero
    from lightning.pytorch.utilities import rank_zero as pl_rank_zero

    for module in (fabric_rank_zero, pl_rank_zero):  # a Trainer sets the process-wide rank: restore it after
        monkeypatch.setattr(module.rank_zero_only, "rank", module.rank_zero_only.rank)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("NODE_RANK", raising=False)
    assert not is_global_zero(accelerator="cpu", devices=1, num_nodes=2, strategy="ddp")


def test_a_single_process_is_rank_zero() -> None:
    assert is_global_zero(accelerator="cpu", devices=1, num_nodes=1, strategy="auto")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path: Path) -> None:
    """torchrun starts both processes itself; one run folder results, written once, tuned once."""
    recipe = tmp_path / "tiny.yaml"
    tiny = {"epochs": 1, "data.size": 64, "data.batch_size": 4, "model.args.base": 4, "model.args.depth": 2}
    recipe.write_text(dump_recipe(load_recipe("quick", tiny)))
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), "-m", "polypseg", "train", "--recipe", str(recipe),
           "--data", "synthetic:n=24,size=64,seed=2", "--out", str(run), "--devices", "2", "--accelerator", "cpu",
           "--no-progress"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = read_metrics(run)
    assert len(rows) == 1
    assert rows[0]["val_images"] == len(json.loads((run / "split.json").read_text())["splits"]["val"])
    env = json.loads((run / "env.json").read_text())
    assert env["world_size"] == 2 and env["strategy"] == "DDPStrategy" and "resumes" not in env
    assert (run / "threshold.json").exists()  # tuned by rank 0
    assert proc.stdout.count("threshold tuned on validation") == 1  # and by rank 0 alone
