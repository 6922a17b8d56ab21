"""The one error path of the command line (issue #14 item 1): exit codes, messages without tracebacks,
the traceback log of an unexpected error, and ``--debug`` / ``POLYPSEG_DEBUG=1``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import polypseg.data.check as check
from polypseg.cli import app
from polypseg.errors import DiskFullError, InputError, TrainingFailedError


def _raise(exc: BaseException):
    def boom(*args, **kwargs):
        raise exc

    return boom


@pytest.mark.parametrize(
    ("exc", "code", "shown"),
    [
        (InputError("the recipe key 'epohcs' is unknown; did you mean 'epochs'?"), 2, "did you mean 'epochs'?"),
        (FileNotFoundError(2, "No such file or directory", "/data/nowhere.png"), 2,
         "No such file or directory: /data/nowhere.png; check the path"),
        (PermissionError(13, "Permission denied", "/runs/x"), 2, "Permission denied: /runs/x; check the file's"),
        (TrainingFailedError("training loss is nan at epoch 3"), 1, "training loss is nan at epoch 3"),
        (DiskFullError("no space left on the device while writing a.ckpt"), 1, "no space left"),
        (OSError(28, "No space left on device"), 1, "no space left on the device; free some space"),
        (type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory"), 1, "out of memory; use a smaller"),
    ],
    ids=["input", "missing-file", "permission", "diverged", "disk-full", "raw-enospc", "cuda-oom"],
)  # fmt: skip
def test_expected_failures_print_a_message_and_their_exit_code(
    monkeypatch: pytest.MonkeyPatch, exc: BaseException, code: int, shown: str
) -> None:
    monkeypatch.setattr(check, "check_data", _raise(exc))
    res = CliRunner().invoke(app, ["data", "check", "somewhere"])
    assert res.exit_code == code
    assert res.output.startswith("error: ") and shown in " ".join(res.output.split())
    assert "Traceback" not in res.output and "unexpected" not in res.output


def test_an_unexpected_error_exits_1_and_says_where_its_traceback_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POLYPSEG_DEBUG", raising=False)
    monkeypatch.setattr(check, "check_data", _raise(RuntimeError("boom in the middle")))
    res = CliRunner().invoke(app, ["data", "check", "somewhere"])
    assert res.exit_code == 1
    text = " ".join(res.output.split())
    assert "error: RuntimeError: boom in the middle" in text and "Traceback" not in text
    log = Path(re.search(r"the traceback is in (\S+);", text).group(1))
    logged = log.read_text()
    assert "Traceback (most recent call last)" in logged and "RuntimeError: boom in the middle" in logged


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_prints_the_traceback(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    monkeypatch.setattr(check, "check_data", _raise(InputError("bad")))
    if how == "env":
        monkeypatch.setenv("POLYPSEG_DEBUG", "1")
    args = ["--debug", "data", "check", "x"] if how == "flag" else ["data", "check", "x"]
    res = CliRunner().invoke(app, args)
    assert isinstance(res.exception, InputError)  # re-raised: Python prints its traceback


def test_ctrl_c_outside_training_exits_130_with_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check, "check_data", _raise(KeyboardInterrupt()))
    res = CliRunner().invoke(app, ["data", "check", "x"])
    assert res.exit_code == 130
    assert "interrupted (Ctrl-C)" in res.output and "Traceback" not in res.output


def test_usage_errors_keep_typers_message_and_exit_2() -> None:
    res = CliRunner().invoke(app, ["train", "--no-such-option"])
    assert res.exit_code == 2 and "No such option" in res.output


def test_an_invalid_group_regex_is_bad_input_naming_the_option(tmp_path: Path) -> None:
    """Defect: a --group-regex Python cannot compile ended as an unexpected error (exit 1)."""
    res = CliRunner().invoke(app, ["train", "--data", "synthetic:n=20,size=64", "--out", str(tmp_path / "r"),
                                   "--group-regex", "([a-z", "--epochs", "1", "--no-progress"])  # fmt: skip
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "--group-regex '([a-z' is not a valid regular expression" in text and "unexpected" not in text
    assert not (tmp_path / "r").exists()


def test_a_closed_pipe_is_left_to_typer_not_reported_as_a_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review finding: 'polypseg ... | head' raised BrokenPipeError inside the command, and the error path
    called it an unexpected error and wrote a traceback log."""
    monkeypatch.setattr(check, "check_data", _raise(BrokenPipeError(32, "Broken pipe")))
    res = CliRunner().invoke(app, ["data", "check", "x"])
    assert res.exit_code == 1 and "unexpected" not in res.output and "error:" not in res.output  # Typer's EPIPE rule
