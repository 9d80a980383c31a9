"""Never lose work: kill -9 and resume, parallel workers, unwritable output."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from kiridashi import io as kio
from kiridashi.cache import ResultCache
from kiridashi.pipeline import RESULTS, extract
from tests.conftest import REPO, SHARED

DEV_NAMES = (
    "renpy_eileen_happy__bg_c3",
    "renpy_lucy_mad__bg_uni",
    "renpy_sylvie_blue_normal__bg_cave",
    "godotvn_tachie_shame__bg_c3",
    "renpy_eileen_concerned__bg_park",
    "renpy_sylvie_green_smile__bg_club",
)


@pytest.fixture
def batch(tmp_path) -> Path:
    """Six distinct labelled images (dev set, else the demo set)."""
    dst = tmp_path / "batch"
    dst.mkdir()
    dev = SHARED / "datasets" / "dev" / "images"
    names = [n for n in DEV_NAMES if (dev / f"{n}.jpg").exists()]
    if len(names) == len(DEV_NAMES):
        for n in names:
            shutil.copy(dev / f"{n}.jpg", dst)
            shutil.copy(dev / f"{n}_gt.png", dst)
    else:
        from kiridashi.demo import build_demo

        build_demo(dst, n_images=len(DEV_NAMES), seed=3, source="procedural")
    return dst


def _extract_cmd(src: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "kiridashi.cli", "extract", str(src), str(out), "--no-check"]


def _outputs(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*.png"))
        if not p.name.startswith(".")
    }


@pytest.mark.slow
def test_kill_9_then_resume_loses_nothing(batch, tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, KIRIDASHI_LOG="WARNING")
    proc = subprocess.Popen(_extract_cmd(batch, out), cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if len(list((out / "masks").glob("*.png"))) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.stem for p in (out / "masks").glob("*.png")}
    # nothing half-written: every output decodes completely
    for png in out.rglob("*.png"):
        if not png.name.startswith("."):
            Image.open(png).load()
    # no corrupt cache entry
    cache = ResultCache(Path(os.environ["KIRIDASHI_CACHE_DIR"]))
    for key in list(cache.iter_keys()):
        cache.get(key)
    assert cache.stats.corrupt == 0

    resumed = subprocess.run(_extract_cmd(batch, out), cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    merge_line = next(x for x in resumed.stdout.splitlines() if x.startswith("merge:"))
    reused = int(merge_line.split("reused ")[1].split(",")[0])
    assert reused >= len(finished), merge_line
    assert not list(out.rglob(".*.tmp")), "temp files of the killed run are cleaned up"

    clean_env = dict(env, KIRIDASHI_CACHE_DIR=str(tmp_path / "fresh-cache"))
    ref = tmp_path / "ref"
    subprocess.run(_extract_cmd(batch, ref), cwd=REPO, env=clean_env, check=True,
                   capture_output=True, timeout=600)  # fmt: skip
    assert _outputs(out) == _outputs(ref)
    a, b = kio.read_json(out / RESULTS), kio.read_json(ref / RESULTS)
    assert [i["characters"] for i in a["images"]] == [i["characters"] for i in b["images"]]


@pytest.mark.slow
def test_two_workers_give_the_same_results_as_one(batch, tmp_path, cfg, monkeypatch):
    one = extract(batch, tmp_path / "one", {**cfg, "jobs": 1})
    monkeypatch.setenv("KIRIDASHI_CACHE_DIR", str(tmp_path / "cache2"))
    two = extract(batch, tmp_path / "two", {**cfg, "jobs": 2})
    assert two["summary"]["counts"]["merge"]["computed"] == len(two["images"])
    assert _outputs(tmp_path / "one") == _outputs(tmp_path / "two")
    assert [i["characters"] for i in one["images"]] == [i["characters"] for i in two["images"]]


@pytest.mark.parametrize(
    ("code", "message"),
    [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")],
)
def test_unwritable_output_stops_with_a_clear_error_and_keeps_files(
    batch, tmp_path, cfg, monkeypatch, code, message
):
    """A full or read-only output disk (simulated: the tests run as root, which ignores modes)."""
    from kiridashi import pipeline

    out = tmp_path / "out"
    extract(batch, out, cfg)
    before = _outputs(out)
    real = kio.atomic_write_bytes
    calls = []

    def full_disk(path, data):
        calls.append(path)
        if len(calls) > 2:
            raise OSError(code, message)
        real(path, data)

    monkeypatch.setattr(kio, "atomic_write_bytes", full_disk)
    shutil.rmtree(out / "crops")
    with pytest.raises(pipeline.OutputWriteError) as exc:
        extract(batch, out, cfg)
    assert message in exc.value.strerror
    assert "\n" not in exc.value.strerror
    after = _outputs(out)
    assert {k: v for k, v in before.items() if k.startswith("masks/")}.items() <= after.items()
    assert not list(out.rglob(".*.tmp"))
