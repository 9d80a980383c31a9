"""Workers die with their parent: `kill -9` of a real `kiridashi extract ... jobs=2` run leaves no
process behind (workers, resource tracker)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    out, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - out
        out |= frontier
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_kill_9_of_the_parent_leaves_no_process(tmp_path):
    from kiridashi.demo import build_demo

    images = tmp_path / "in"
    build_demo(images, n_images=12, seed=3, source="procedural")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kiridashi.cli", "extract", str(images), str(tmp_path / "out"),
         "jobs=2", "--no-check"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    family: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            family |= _children(proc.pid)
            if len(family) >= 3:  # two workers and the resource tracker
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before the pool started"
        time.sleep(1.0)  # the workers are importing or working
        family |= _children(proc.pid)
        assert len(family) >= 2, family
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in family):
            time.sleep(0.1)
        assert not [p for p in family if _alive(p)], "processes outlived their parent"
    finally:
        for pid in [proc.pid, *_children(proc.pid), *(p for p in family if _alive(p))]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
