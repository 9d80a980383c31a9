"""What a plain ``kiridashi extract`` prints: no native MediaPipe / TensorFlow Lite log lines
(main process nor workers), and a missing optional model reported once per run."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kiridashi.detectors.base import build, check_model_files
from kiridashi.quiet import is_native_noise, native_logs_filtered
from tests.conftest import REPO, SAMPLE_DEV, SHARED

NOISE = re.compile(
    r"TensorFlow Lite|XNNPACK|absl::InitializeLog|inference_feedback_manager"
    r"|^[IW]\d{4} \d\d:\d\d:|\.cc:\d+\]",
    re.MULTILINE,
)


def test_native_noise_is_dropped_and_everything_else_kept(capfd):
    capfd.readouterr()
    with native_logs_filtered():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are ")
        os.write(2, b"written to STDERR\n")
        os.write(2, b"W0000 00:00:1795646090.446286    3762 inference_feedback_manager.cc:114] x\n")
        os.write(2, b"I1125 22:34:04.123456    3762 gl_context.cc:369] GL version: 3.2\n")
        os.write(2, b"E0000 00:00:1795646090.446286    3762 model.cc:1] real trouble\n")
        os.write(2, b"something else\n")
    err = capfd.readouterr().err
    assert err == (
        "E0000 00:00:1795646090.446286    3762 model.cc:1] real trouble\nsomething else\n"
    )
    assert not is_native_noise("INFO kiridashi: our own log line")


def test_fd2_is_restored_and_exceptions_pass_through(capfd):
    with pytest.raises(RuntimeError, match="boom"), native_logs_filtered():
        os.write(2, b"E0000 00:00:1.0 1 x.cc:1] why it failed\n")
        raise RuntimeError("boom")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "E0000 00:00:1.0 1 x.cc:1] why it failed\nafter\n"


def _tiny_images(dst: Path) -> Path:
    """Two small images with characters (dev images shrunk, else procedural demo images)."""
    from PIL import Image

    dst.mkdir()
    dev = SHARED / "datasets" / "dev" / "images"
    names = [n for n in (SAMPLE_DEV[0], SAMPLE_DEV[2]) if (dev / f"{n}.jpg").is_file()]
    if len(names) == 2:
        for name in names:
            with Image.open(dev / f"{name}.jpg") as im:
                im.thumbnail((480, 480))
                im.save(dst / f"{name}.jpg", quality=90)
    else:
        from kiridashi.demo import build_demo

        build_demo(dst, n_images=2, seed=0, source="procedural")
        for gt in dst.glob("*_gt.png"):
            gt.unlink()
    return dst


def _extract(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KIRIDASHI_MODELS_DIR": str(tmp_path / "empty-models")}
    env.pop("KIRIDASHI_NATIVE_LOGS", None)
    cmd = [sys.executable, "-m", "kiridashi.cli", "extract"]
    cmd += [str(_tiny_images(tmp_path / "in")), str(tmp_path / "out"), "--no-check", *overrides]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "2 of 2 images processed" in proc.stdout
    return proc


def test_extract_prints_no_native_log_lines(tmp_path):
    proc = _extract(tmp_path, "jobs=1")
    assert not NOISE.search(proc.stdout + proc.stderr), proc.stderr
    assert "detect.raw.lbp_cascade: computed 2" in proc.stdout  # the bundled cascade ran


def test_parallel_extract_reports_a_missing_model_once_and_no_native_lines(tmp_path):
    proc = _extract(tmp_path, "jobs=2", "detect.detectors.lbp_cascade.model_file=nope.xml")
    out = proc.stdout + proc.stderr
    assert not NOISE.search(out), proc.stderr
    warned = [x for x in out.splitlines() if "detector lbp_cascade skipped" in x]
    assert len(warned) == 1, out
    assert "nope.xml" in warned[0] and "detect.detectors.lbp_cascade.model_file" in warned[0]


def test_start_up_check_warns_once_and_workers_only_at_debug(cfg, tmp_path, caplog):
    from kiridashi.detectors import base

    detectors = {"lbp_cascade": dict(cfg["detect"]["detectors"]["lbp_cascade"], model_file="x.xml")}
    with caplog.at_level(logging.DEBUG, logger="kiridashi.detectors.base"):
        check_model_files(detectors, models_dir=tmp_path)
        check_model_files(detectors, models_dir=tmp_path)  # e.g. the runner of a second stage
        assert build("lbp_cascade", detectors["lbp_cascade"], models_dir=tmp_path) is None
        try:
            base.set_missing_model_level(logging.DEBUG)  # what a worker process does
            check_model_files(detectors, models_dir=tmp_path / "w")
        finally:
            base.set_missing_model_level(logging.WARNING)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if "x.xml" in r.getMessage()]
    assert [level for level, _ in lines] == [logging.WARNING, logging.DEBUG], lines


def test_a_lazy_module_runs_its_code_on_first_use(capsys, monkeypatch):
    import sys

    from kiridashi.quiet import lazy_module

    monkeypatch.delitem(sys.modules, "this", raising=False)
    lazy_module("this")  # the Zen of Python prints itself when its code runs
    assert "this" in sys.modules and capsys.readouterr().out == ""
    assert sys.modules["this"].s  # first attribute access: the code runs now
    assert "Beautiful is better than ugly" in capsys.readouterr().out
    lazy_module("kiridashi_no_such_module")  # not found: nothing happens
    assert "kiridashi_no_such_module" not in sys.modules
