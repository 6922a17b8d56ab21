"""Atomic writes: a failure half-way through leaves the previous file intact and no temporary file behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from polypseg.atomic import atomic_open, atomic_save, atomic_write_text
from polypseg.checkpoint import atomic_torch_save


def test_a_write_that_fails_half_way_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    atomic_write_text(target, '{"old": 1}')
    with pytest.raises(OSError, match="disk full"), atomic_open(target) as fh:
        fh.write('{"new": ')
        raise OSError(28, "disk full")
    assert target.read_text() == '{"old": 1}'
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_library_writer_that_fails_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    atomic_torch_save({"epoch": 1}, target)

    def half_then_fail(tmp: Path) -> None:
        tmp.write_bytes(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_save(target, half_then_fail)
    assert torch.load(target, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
