"""``precision: auto`` and bf16 inference follow the device (polypseg.device)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from polypseg import device
from polypseg.config import Recipe
from polypseg.inference import Predictor
from polypseg.models import build_model


@pytest.mark.parametrize(
    ("given", "short", "lightning"),
    [
        ("32", "32", "32-true"),
        (32, "32", "32-true"),
        ("32-true", "32", "32-true"),
        ("bf16", "bf16", "bf16-mixed"),
        ("bf16-mixed", "bf16", "bf16-mixed"),
        ("16", "16", "16-mixed"),
        ("16-mixed", "16", "16-mixed"),
        ("fp16", "16", "16-mixed"),
    ],
)
def test_one_precision_vocabulary_with_lightning_spellings(given: object, short: str, lightning: str) -> None:
    assert device.parse_precision(given) == short
    assert device.resolve_precision(given, "cpu") == short  # explicit names pass through
    assert device.lightning_precision(short) == lightning


@pytest.mark.parametrize("bad", ["64", 64, "half", True, None])
def test_unknown_precisions_fail_with_the_valid_names(bad: object) -> None:
    with pytest.raises(ValueError, match="precision must be one of auto, 32, bf16, 16"):
        device.parse_precision(bad)


@pytest.mark.parametrize(("units", "expected"), [(True, "bf16"), (False, "32")])
def test_auto_on_cpu_follows_bf16_units(monkeypatch: pytest.MonkeyPatch, units: bool, expected: str) -> None:
    monkeypatch.setattr(device, "cpu_has_bf16_units", lambda: units)
    assert device.resolve_precision("auto", "cpu") == expected
    assert device.native_bf16("cpu") is units


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16"), (False, "16")])
def test_auto_on_cuda_follows_bf16_support(monkeypatch: pytest.MonkeyPatch, bf16: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert device.device_type("auto") == "cuda"
    assert device.resolve_precision("auto", "auto") == expected
    assert device.resolve_precision("auto", "cpu") in ("32", "bf16")  # cpu forced: not the GPU rule


def test_cpu_probe_matches_the_cpu_flags() -> None:
    """The probe agrees with /proc/cpuinfo where that exists (Linux)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    assert device.cpu_has_bf16_units() == ("avx512_bf16" in flags or "amx_tile" in flags)


def test_recipe_default_is_auto_and_predictor_auto_follows_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Recipe().precision == "auto"
    model = build_model("unet", base=4, depth=2)
    for units, expected in ((True, "bf16"), (False, "32")):
        monkeypatch.setattr(device, "cpu_has_bf16_units", lambda u=units: u)
        assert Predictor(model, 32, (0, 0, 0), (1, 1, 1), device="cpu", precision="auto").precision == expected
    assert Predictor(model, 32, (0, 0, 0), (1, 1, 1), device="cpu").precision == "32"  # library default: fp32
    assert Predictor(model, 32, (0, 0, 0), (1, 1, 1), device="cpu", precision="bf16-mixed").precision == "bf16"


def test_importing_polypseg_turns_off_albumentations_update_check() -> None:
    """albumentations would ask PyPI for a newer version on import; polypseg must not reach the network."""
    import subprocess
    import sys

    code = "import os, polypseg, albumentations; print(os.environ.get('NO_ALBUMENTATIONS_UPDATE'))"
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


@pytest.mark.parametrize("isa", ["AVX2", "avx512_core_vnni", "SSE41"])
def test_an_isa_cap_below_bf16_means_no_bf16_units(monkeypatch: pytest.MonkeyPatch, isa: str) -> None:
    """ONEDNN_MAX_CPU_ISA=AVX2 emulates an AVX2-only CPU on an AMX one: bf16 would be emulated there, so
    ``auto`` must pick fp32 as it does on a real AVX2 CPU."""
    import polypseg.device as device

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    assert not device.cpu_has_bf16_units()
    assert device.resolve_precision("auto", "cpu") == "32"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    monkeypatch.setattr(device.torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert device.cpu_has_bf16_units()


def test_a_run_records_the_isa_limit_it_trained_under(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run trained with torch limited to AVX2 code (an emulated CPU without bf16 units) says so in its
    env.json: the CPU line alone names the host, whose epochs would be faster."""
    from polypseg.device import AVX2_ONLY_ENV
    from polypseg.training.env import env_info

    for key in AVX2_ONLY_ENV:
        monkeypatch.delenv(key, raising=False)
    assert "isa_limit" not in env_info()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert env_info()["isa_limit"] == {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
