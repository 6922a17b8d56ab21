"""Atomic writes: a failure half-way through leaves the previous file intact and no temporary file behind."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
import torch

from polypseg.atomic import atomic_open, atomic_save, atomic_write_text
from polypseg.checkpoint import atomic_torch_save
from polypseg.errors import DiskFullError


def test_an_error_that_is_not_a_full_disk_passes_through_unchanged(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    with pytest.raises(OSError) as caught, atomic_open(target) as fh:
        fh.write("x")
        raise OSError(5, "Input/output error")
    assert not isinstance(caught.value, DiskFullError) and caught.value.errno == 5
    assert list(tmp_path.iterdir()) == []


def test_a_write_that_fails_half_way_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    atomic_write_text(target, '{"old": 1}')
    intact = r"while writing .*summary\.json: the previous summary\.json is intact"
    with pytest.raises(DiskFullError, match=intact), atomic_open(target) as fh:
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

    with pytest.raises(DiskFullError, match="no space left on the device") as caught:
        atomic_save(target, half_then_fail)
    assert isinstance(caught.value, OSError)  # still an OSError for callers that catch those
    assert torch.load(target, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_library_writer_that_makes_a_private_file_leaves_the_mode_a_plain_write_gives(tmp_path: Path) -> None:
    # safetensors' save_file (0.8) creates its file with mode 0600, so a shipped model or an export
    # written through atomic_save was unreadable to other users; a plain open() gives 0666 minus the umask
    from safetensors.torch import save_file

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    expected = stat.S_IMODE(plain.stat().st_mode)
    weights = tmp_path / "model.safetensors"
    atomic_save(weights, lambda tmp: save_file({"w": torch.zeros(2)}, str(tmp)))
    assert stat.S_IMODE(weights.stat().st_mode) == expected
    atomic_write_text(tmp_path / "card.json", "{}")
    assert stat.S_IMODE((tmp_path / "card.json").stat().st_mode) == expected


def test_replacing_a_file_keeps_the_mode_its_owner_gave_it(tmp_path: Path) -> None:
    target = tmp_path / "secret.json"
    target.write_text("{}")
    target.chmod(0o600)
    atomic_write_text(target, '{"new": 1}')
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    target.chmod(0o640)
    atomic_save(target, lambda tmp: tmp.write_text("{}"))
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_an_image_written_atomically_reads_back_and_a_failed_encode_keeps_the_old_file(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    from polypseg.atomic import atomic_write_image

    target = tmp_path / "case0_best.png"
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 200  # red
    atomic_write_image(target, rgb)
    assert cv2.imread(str(target))[..., ::-1].tolist() == rgb.tolist()  # RGB in, RGB back
    with pytest.raises(ValueError, match="could not encode"):
        atomic_write_image(target.with_suffix(".nosuchformat"), rgb)
    with pytest.raises(ValueError, match="could not encode"):  # an array PNG cannot hold: nothing replaced
        atomic_write_image(target, np.zeros((4, 6, 7), np.float64))
    assert cv2.imread(str(target))[..., ::-1].tolist() == rgb.tolist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case0_best.png"]


#: Files that write without the atomic helper, and why that is safe.
RAW_WRITERS_ALLOWED = {
    "atomic.py": "the helper itself",
    "runlock.py": "the flock is the lock; the file only names its holder (written in place while held)",
    "cli/failure.py": "a new traceback log with a unique name; nothing replaces an older file",
    "data/cache.py": "built in a temporary folder that is renamed into place when complete",
    "data/synthetic.py": "built in a temporary folder that is renamed into place when complete",
}
#: Lines in benchmarks/ that stream a log while a child process runs: read only after it ends, never a result
#: (serve_load.py's server log lives in a temporary folder, so the ``tmp`` rule already passes it).
RAW_LOG_STREAMS = {"memory.py": 'log.open("w")'}
RAW_WRITE = re.compile(
    r"\.write_text\(|\.write_bytes\(|\bopen\([^)]*['\"][wa]b?['\"]|\.savefig\(|imwrite\(|torch\.save\(|np\.save\(|"
    r"json\.dump\(|save_file\(|onnx\.save\(|VideoWriter\(|\.tofile\("
)
REPO = Path(__file__).resolve().parents[1]


def raw_writes(root: Path, allowed: dict[str, str], streams: dict[str, str]) -> list[str]:
    """``file:line: code`` for every raw write under ``root`` outside the ``allowed`` files, the ``streams``
    (file -> the code of its one streamed log) and temporary paths; files are named relative to ``root``."""
    offenders = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in allowed:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            in_memory = "buffer" in code  # torch.save into a BytesIO that atomic_write_bytes then writes
            if rel in streams and streams[rel] in code:
                continue
            if RAW_WRITE.search(code) and "tmp" not in code and not in_memory and '"torch.save(' not in code:
                offenders.append(f"{rel}:{n}: {line.strip()}")
    return offenders


def test_every_file_polypseg_writes_goes_through_the_atomic_helper() -> None:
    """A static guard: a raw write is allowed only where it writes a temporary path that the helper renames
    (a writer passed to ``atomic_save``, whose target is named ``tmp``), into an in-memory ``buffer``, or in
    :data:`RAW_WRITERS_ALLOWED`."""
    offenders = raw_writes(REPO / "src" / "polypseg", RAW_WRITERS_ALLOWED, {})
    assert not offenders, "write through polypseg.atomic:\n" + "\n".join(offenders)


def test_every_benchmark_writes_its_results_through_the_atomic_helper() -> None:
    """The same guard over ``benchmarks/``: a result JSON or table cut short by an interrupt or a full disk
    would read as a finished measurement with missing rows (or not parse at all) on the next ``--table``."""
    offenders = raw_writes(REPO / "benchmarks", {}, RAW_LOG_STREAMS)
    assert not offenders, "write through polypseg.atomic:\n" + "\n".join(offenders)


def test_the_guard_finds_a_raw_write_and_passes_a_streamed_log(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text('out.write_text(json.dumps(r))\nlog = (work / "serve.log").open("w")\n')
    (tmp_path / "b.py").write_text("json.dump(r, fh)  # a comment: out.write_text(x)\natomic_write_text(out, x)\n")
    streamed = {"a.py": '(work / "serve.log").open("w")'}
    b1 = "b.py:1: json.dump(r, fh)  # a comment: out.write_text(x)"
    a2 = 'a.py:2: log = (work / "serve.log").open("w")'
    assert raw_writes(tmp_path, {}, {}) == ["a.py:1: out.write_text(json.dumps(r))", a2, b1]
    assert raw_writes(tmp_path, {"b.py": "why"}, streamed) == ["a.py:1: out.write_text(json.dumps(r))"]
