"""Keeping MediaPipe's native log lines (TensorFlow Lite, absl, glog) off the terminal.

MediaPipe's C++ side logs through absl before anyone calls ``absl::InitializeLog()``, so every
message goes to file descriptor 2 whatever the log-level variables say, e.g. ::

    INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    W0000 00:00:1795646090.446286    3762 inference_feedback_manager.cc:114] Feedback manager ...

They come while a model is built and while its graph starts, partly from the graph's own
threads after the constructor has returned. :func:`build_quietly` therefore builds a model and
runs it once on a small blank image with fd 2 captured (:func:`native_logs_filtered`); then
the captured lines that are not such routine notes (errors, anything unknown, Python output)
are written back to stderr. Python exceptions pass through unchanged. MediaPipe Pose also notes
its first landmark projection (at the first character with a pose), so its ``process`` calls run
inside :func:`native_logs_filtered` too (~0.1 ms each). Everything here runs in the process that
builds the model, so spawned worker processes are covered too.

``KIRIDASHI_NATIVE_LOGS=1`` leaves fd 2 alone (to see the native lines when debugging).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

# read by glog / TensorFlow when their logging starts: drop INFO and WARNING, keep errors
QUIET_ENV = {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}

# routine native notes: absl / glog INFO and WARNING lines ("W0000 00:00:1795646090.446286
#   3762 file.cc:114] ...", the time in seconds while absl is not initialised, else HH:MM:SS)
# and TensorFlow Lite's "INFO: ..." lines, plus absl's note about its missing initialisation
_NOISE = re.compile(
    r"^(?:[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] "
    r"|INFO: "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called)"
)


def is_native_noise(line: str) -> bool:
    """Whether ``line`` is a routine INFO / WARNING note of MediaPipe's native libraries."""
    return bool(_NOISE.match(line))


def lazy_module(name: str) -> None:
    """Put a lazily loaded ``name`` into ``sys.modules`` (``importlib.util.LazyLoader``): its
    code runs on first attribute access, not on import. Nothing happens when it is already
    imported or cannot be found."""
    if name in sys.modules:
        return
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return
    if spec is None or spec.loader is None:
        return
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


def import_mediapipe() -> Any:
    """``import mediapipe`` with the native log levels set first (and absl-py's to ERROR).

    ``matplotlib.pyplot``, which MediaPipe's drawing utilities import at the top and kiridashi
    never uses, is loaded lazily: 0.75 of the 1.35 s the import takes."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    lazy_module("matplotlib.pyplot")
    import mediapipe

    with contextlib.suppress(ImportError):
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    return mediapipe


@contextlib.contextmanager
def native_logs_filtered() -> Iterator[None]:
    """Capture fd 2 for the block, then write back every line that is not native noise.

    Restores fd 2 however the block ends; exceptions propagate untouched (their tracebacks are
    printed later, to the real stderr). Does nothing when ``KIRIDASHI_NATIVE_LOGS`` is set or
    fd 2 cannot be duplicated.
    """
    if os.environ.get("KIRIDASHI_NATIVE_LOGS"):
        yield
        return
    with contextlib.suppress(AttributeError, ValueError, OSError):
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as capture:
        try:
            os.dup2(capture.fileno(), 2)
            yield
        finally:
            with contextlib.suppress(AttributeError, ValueError, OSError):
                sys.stderr.flush()  # Python output of the block went through the capture too
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            kept = "".join(x for x in text.splitlines(keepends=True) if not is_native_noise(x))
            if kept:
                os.write(2, kept.encode("utf-8"))


def build_quietly(factory: Callable[[], T], warm_up_side: int = 64) -> T:
    """``factory()`` (a MediaPipe solution with ``process(image)``) built and run once on a
    blank ``warm_up_side``-px RGB image inside :func:`native_logs_filtered`, so the start-up
    notes of the model and its graph threads are filtered out."""
    with native_logs_filtered():
        model = factory()
        model.process(np.zeros((warm_up_side, warm_up_side, 3), np.uint8))
    return model
