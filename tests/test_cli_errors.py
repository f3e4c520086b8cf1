"""``meta-ood`` exit statuses: 2 and one line for errors the user can act on (the traceback only with ``-v``), 1 and
a traceback for bugs, 130 for Ctrl-C."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from meta_ood_perception import cli
from meta_ood_perception.backends import BackendError
from meta_ood_perception.errors import BagError, BundleError, ConfigError, FaultError, InputError


def _error_records(caplog):
    return [r for r in caplog.records if r.name == "meta_ood" and r.levelno >= logging.ERROR]


def _inject(monkeypatch, error):
    """``meta-ood demo`` raises ``error`` (the parser looks the command function up when main builds it)."""

    def boom(args):
        raise error

    monkeypatch.setattr(cli, "cmd_demo", boom)


def test_a_bad_bundle_path_is_one_line_and_exit_2(tmp_path, caplog):
    missing = tmp_path / "no_bundle"
    status = cli.main(["export-onnx", "--bundle", str(missing), "--out", str(tmp_path / "x.onnx")])
    assert status == 2
    (record,) = _error_records(caplog)
    assert record.getMessage() == f"meta-ood export-onnx: bundle directory not found: {missing}"
    assert not record.exc_info and "Traceback" not in caplog.text


def test_verbose_adds_the_traceback_of_a_user_error(tmp_path, caplog):
    missing = tmp_path / "no_bundle"
    status = cli.main(["-v", "export-onnx", "--bundle", str(missing), "--out", str(tmp_path / "x.onnx")])
    assert status == 2
    (record,) = _error_records(caplog)
    assert record.getMessage() == f"meta-ood export-onnx: bundle directory not found: {missing}"
    assert record.exc_info is not None and record.exc_info[0] is BundleError
    assert "Traceback" in caplog.text and "load_bundle" in caplog.text


@pytest.mark.parametrize(
    "error",
    [
        InputError("frame of 1×1 pixels is below the 16-pixel minimum"),
        ConfigError("threshold must lie in [0, 1], got 2.0"),
        FaultError("network output holds 3 non-finite logits (NaN / inf)"),
        BackendError("onnxruntime backend: run failed: CUDA failure"),
        BundleError("bundle manifest not found: x/bundle.json"),
        BagError("cannot open bag x: not a rosbag2"),
        cli.CLIError("give exactly one of --checkpoint or --bundle"),
        FileNotFoundError(2, "No such file or directory", "features.npz"),
        PermissionError(13, "Permission denied", "out.mcap"),
    ],
)
def test_errors_of_the_hierarchy_and_file_errors_exit_2_with_one_line(monkeypatch, tmp_path, caplog, error):
    _inject(monkeypatch, error)
    assert cli.main(["demo", "--out", str(tmp_path / "demo")]) == 2
    (record,) = _error_records(caplog)
    message = record.getMessage()
    assert message.startswith("meta-ood demo: ") and "\n" not in message and str(error).split("\n")[0] in message
    assert not record.exc_info and "Traceback" not in caplog.text


def test_rosbags_own_errors_are_one_line(monkeypatch, tmp_path, caplog):
    writer_error = type("WriterError", (Exception,), {"__module__": "rosbags.rosbag2.errors"})
    _inject(monkeypatch, writer_error("output bag x exists"))
    assert cli.main(["demo", "--out", str(tmp_path / "demo")]) == 2
    (record,) = _error_records(caplog)
    assert record.getMessage() == "meta-ood demo: output bag x exists" and not record.exc_info


@pytest.mark.parametrize(
    ("error", "name"),
    [
        (ValueError("operands could not be broadcast together with shapes (3,) (4,)"), "ValueError"),
        (KeyError("logits"), "KeyError"),
        (TypeError("'NoneType' object is not subscriptable"), "TypeError"),
    ],
)
def test_a_bug_is_never_passed_off_as_a_user_error(monkeypatch, tmp_path, caplog, error, name):
    _inject(monkeypatch, error)
    assert cli.main(["demo", "--out", str(tmp_path / "demo")]) == 1
    (record,) = _error_records(caplog)
    assert record.getMessage().startswith(f"meta-ood demo: internal error (a bug): {name}: ")
    assert record.exc_info is not None and record.exc_info[1] is error  # the traceback, also without -v
    assert "Traceback" in caplog.text and "in boom" in caplog.text


def test_ctrl_c_exits_130(monkeypatch, tmp_path, caplog):
    _inject(monkeypatch, KeyboardInterrupt())
    assert cli.main(["demo", "--out", str(tmp_path / "demo")]) == 130
    assert [r.getMessage() for r in _error_records(caplog)] == ["meta-ood demo: interrupted"]


def _meta_ood(tmp_path, *args: str, code: str = "") -> subprocess.CompletedProcess[str]:
    """``meta-ood`` in a fresh interpreter (its own logging set-up), after ``code``."""
    script = f"import sys\nfrom meta_ood_perception import cli\n{code}\nsys.exit(cli.main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300, check=False)  # fmt: skip


def test_the_console_shows_one_line_for_a_user_error_and_a_traceback_for_a_bug(tmp_path):
    missing = tmp_path / "no_bundle"
    user = _meta_ood(tmp_path, "export-onnx", "--bundle", str(missing), "--out", str(tmp_path / "x.onnx"))
    assert user.returncode == 2
    assert user.stderr.strip().splitlines() == [f"meta-ood export-onnx: bundle directory not found: {missing}"]
    bug = _meta_ood(tmp_path, "demo", code="def boom(args):\n    return {}['logits']\ncli.cmd_demo = boom")
    assert bug.returncode == 1
    lines = bug.stderr.strip().splitlines()
    assert lines[0] == "meta-ood demo: internal error (a bug): KeyError: 'logits'"
    assert "Traceback (most recent call last):" in lines and lines[-1] == "KeyError: 'logits'"


def test_a_damaged_input_bag_is_bad_input_not_a_bug():
    from meta_ood_perception.cli import _replay_status

    assert _replay_status({"read_error": "the input bag is damaged after 3 messages: x", "frames_processed": 3}) == 2
    assert _replay_status({"interrupted": "SIGTERM", "frames_processed": 3}) == 143
    assert _replay_status({"frames_processed": 3}) == 0
