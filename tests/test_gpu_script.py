"""benchmarks/gpu.sh and gpu_prepare.sh, checked here without a GPU: what they run must exist, what they pin
must be what the tests run, what the header promises must be what the code does, and the speed benchmark
they end with must keep what it measured when the time limit cuts it."""

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
speed = pytest.importorskip("speed")

GPU_SH = (BENCHMARKS / "gpu.sh").read_text()
PREPARE_SH = (BENCHMARKS / "gpu_prepare.sh").read_text()


def _speed_models_in_gpu_sh() -> list[str]:
    """The model names gpu.sh passes to ``speed.py --models`` (continuation lines joined)."""
    command = GPU_SH.replace("\\\n", " ")
    match = re.search(r"--models (.*?) --", command)
    assert match, "gpu.sh no longer passes --models to speed.py"
    return match.group(1).split()


def test_gpu_sh_measures_only_models_the_speed_benchmark_has_and_the_shipped_shape_among_them():
    names = _speed_models_in_gpu_sh()
    known = set(speed.our_models()) | set(speed.MONAI_MODELS)
    assert [n for n in names if n not in known] == []
    assert "unet_b16_s2" in names  # polyp-unet16's shape (stride-2 stem, base 16): the model users get


def test_speed_refuses_a_model_name_it_does_not_have(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """Defect: ``--models`` kept the names it knew and dropped the rest without a word, so a typo (or gpu.sh
    asking for a model the script lacks) measured nothing for it and said nothing."""
    picked = speed.select_models(["unet_b16_s2", "unet_b16"])
    assert sorted(picked) == ["unet_b16", "unet_b16_s2"]
    assert set(speed.select_models(None)) >= set(speed.our_models())
    with pytest.raises(SystemExit, match=r"unet_b61: no such model here; known: .*unet_b16_s2"):
        speed.select_models(["unet_b16", "unet_b61"])
    # MONAI's references without MONAI: said and skipped, and a GPU run keeps measuring our models
    monkeypatch.setattr(speed, "monai_models", dict)
    capsys.readouterr()
    assert list(speed.select_models(["monai_unet", "unet_b16"])) == ["unet_b16"]
    assert "skipped monai_unet: MONAI is not installed (pip install -e .[bench])" in capsys.readouterr().out


def test_gpu_prepare_pins_the_versions_this_environment_runs():
    pins = dict(re.findall(r"([A-Za-z][\w-]*)==([\w.]+)", PREPARE_SH))
    assert {"albumentations", "pysodmetrics", "pydantic", "monai"} <= set(pins)
    installed = {}
    for name in pins:
        try:
            installed[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    # every pin but MONAI (the 'bench' extra) is a dependency of polypseg itself, so it is installed here
    assert set(pins) - set(installed) <= {"monai"}
    assert {n: v for n, v in installed.items() if v != pins[n]} == {}


def test_gpu_sh_header_states_the_defaults_its_code_uses():
    header = " ".join(line.lstrip("# ") for line in GPU_SH.splitlines() if line.startswith("#"))
    code_defaults = dict(re.findall(r"\$\{(GPU_[A-Z_]+):-(\d+)\}", GPU_SH))
    assert {"GPU_TOTAL_S", "GPU_TRAIN_MIN", "GPU_BATCH"} <= set(code_defaults)
    for variable, value in code_defaults.items():
        stated = re.search(rf"{variable}\b[^()]*\(default (\d+)", header)
        assert stated, f"gpu.sh's header does not state {variable}'s default"
        assert stated.group(1) == value, variable
    # the device call it prescribes leaves the script's own limit room for the start of speed.py's last row
    timeout = int(re.search(r"timeout_s=(\d+)", header).group(1))
    assert int(code_defaults["GPU_TOTAL_S"]) < timeout <= 600


def _gpu_tag(tmp_path: Path, gpu_name: str, env: dict[str, str] | None = None) -> str:
    """Run gpu.sh's ``gpu_tag`` with a fake ``nvidia-smi`` that reports ``gpu_name``."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "nvidia-smi").write_text(f"#!/bin/sh\necho '{gpu_name}'\n")
    (fake / "nvidia-smi").chmod(0o755)
    function = re.search(r"^gpu_tag\(\) \{.*?^\}", GPU_SH, re.S | re.M)
    assert function, "gpu.sh has no gpu_tag function"
    env = {"PATH": f"{fake}:{os.environ['PATH']}", **(env or {})}
    done = subprocess.run(["bash", "-c", function.group(0) + "\ngpu_tag"], env=env, capture_output=True, text=True,
                          check=True)  # fmt: skip
    return done.stdout.strip()


def test_gpu_sh_names_its_results_after_the_gpu_it_ran_on(tmp_path: Path):
    """Defect: gpu.sh tagged every quality result 'h200', while the device tool's first call now gets an H100."""
    assert _gpu_tag(tmp_path, "NVIDIA H100 80GB HBM3") == "h100"
    assert _gpu_tag(tmp_path, "NVIDIA H200") == "h200"
    assert _gpu_tag(tmp_path, "NVIDIA A100-SXM4-40GB") == "a100"
    assert _gpu_tag(tmp_path, "NVIDIA H100 80GB HBM3", {"GPU_TAG": "mine"}) == "mine"
    assert "--tag h200" not in GPU_SH and '--tag "$TAG"' in GPU_SH


def _speed_write(path: Path, rows: list[int]) -> None:
    speed.write_result(path, {"rows": rows})


def _quality_save(path: Path, rows: list[int]) -> None:
    quality = pytest.importorskip("quality")
    quality._save({"dataset": "d", "recipe": "r", "seed": 0, "mDice": 0.5, "epochs_done": 1, "rows": rows}, path)


def _section_write(path: Path, rows: list[int]) -> None:
    generalise = pytest.importorskip("generalise")
    generalise.replace_section(path, "<!-- s -->", "<!-- e -->", ["<!-- s -->", json.dumps(rows), "<!-- e -->"])


@pytest.mark.parametrize("write", [_speed_write, _quality_save, _section_write], ids=["speed", "quality", "section"])
def test_an_interrupted_benchmark_write_keeps_the_previous_file(write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Defect: speed.py rewrote its result file in place after every row, and gpu.sh stops it with SIGINT at its
    time limit: an interrupt during the write left a truncated file in place of the rows measured so far. The
    quality result gpu.sh writes first, and the docs sections the tables rewrite, were written the same way."""
    path = tmp_path / "result.json"
    write(path, [1, 2])
    before = path.read_text()
    assert "[1,2]" in "".join(before.split())

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt  # the SIGINT arrives while the new text is on its way to the disk

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write(path, [1, 2, 3])
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary file left behind
