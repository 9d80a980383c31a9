"""More than one machine (issue #17): the Ray executor and the shared ``cache.remote`` tier.

Real engines throughout: a Ray runtime on this machine (2 CPUs) with real worker processes (one
is killed mid-run), a file-system remote, and a real S3 API (moto's server mode) reached by s3fs
over HTTP. Tests that need the ``ray`` extra or moto skip when they are not installed (CI
installs them).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from kiridashi import io as kio
from kiridashi.cache import ResultCache
from kiridashi.cache_remote import RemoteStore
from kiridashi.pipeline import RESULTS, extract
from tests.test_cli import _kiridashi, _one_error_line


def _outputs(out: Path) -> dict[str, bytes]:
    """Every mask and crop of an output folder, by relative path."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for sub in ("masks", "crops")
        for p in sorted((out / sub).rglob("*.png"))
    }


def _demo(folder: Path, n: int) -> Path:
    from kiridashi.demo import build_demo

    build_demo(folder, n_images=n, seed=3, source="procedural")
    return folder


def _counts(doc: dict) -> dict[str, int]:
    return {s: c.get("computed", 0) for s, c in doc["summary"]["counts"].items()}


# -- settings: one error line -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("executor=spark", "executor=spark: unknown option (options: local, ray)"),
        ("executor.in_flight=0", "executor.in_flight=0"),
        ("cache.remote=shared/cache", "cache.remote=shared/cache: expected a URL"),
        ("cache.remote=nosuch://x/y", "cache.remote=nosuch://x/y: no file system for nosuch://"),
    ],
)
def test_a_bad_executor_or_remote_setting_is_one_error_line(
    sample_images, tmp_path, setting, expected
):
    args = [setting] if setting.startswith(("executor=", "cache.")) else ["executor=ray", setting]
    line = _one_error_line(_kiridashi("extract", str(sample_images), str(tmp_path / "o"), *args))
    assert expected in line, line
    assert not (tmp_path / "o").exists()


def test_the_ray_option_composes_and_is_checked(cfg):
    from kiridashi.schema import compose_valid

    ray_cfg = compose_valid(["executor=ray", "executor.address=auto", "jobs=2"])
    assert ray_cfg["executor"] == {
        "name": "ray", "address": "auto", "actors": None, "in_flight": 2, "retries": 2
    }  # fmt: skip
    assert cfg["executor"] == {"name": "local", "in_flight": 2} and cfg["cache"]["remote"] is None


# -- the remote tier on a shared file system -----------------------------------------------------


def test_remote_objects_are_written_once_checksummed_and_corrupt_ones_replaced(tmp_path):
    url = (tmp_path / "remote").as_uri()
    first = ResultCache(tmp_path / "local1", remote=RemoteStore(url))
    value, computed = first.get_or_compute("merge/v/abc/p", lambda: {"x": [1, 2, 3]})
    assert computed and first.stats.remote_writes == 1
    obj = tmp_path / "remote" / "v1" / "merge" / "v" / "abc" / "p"
    assert obj.is_file() and not list(obj.parent.glob(".*.tmp"))
    good = obj.read_bytes()

    def never():
        raise AssertionError("computed although the remote holds it")

    second = ResultCache(tmp_path / "local2", remote=RemoteStore(url))  # a new machine
    assert second.get_or_compute("merge/v/abc/p", never) == ({"x": [1, 2, 3]}, False)
    assert second.stats.remote_hits == 1 and second.stats.remote_writes == 0
    assert second.get("merge/v/abc/p") == {"x": [1, 2, 3]}  # now in its local tier too
    obj.write_bytes(good[:-3] + b"zzz")  # a corrupt object
    third = ResultCache(tmp_path / "local3", remote=RemoteStore(url))
    assert third.get_or_compute("merge/v/abc/p", lambda: {"x": [1, 2, 3]}) == (
        {"x": [1, 2, 3]},
        True,
    )
    assert third.stats.remote_corrupt == 1 and obj.read_bytes() == good  # replaced


def test_an_unreachable_remote_is_a_miss_not_a_failure(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"not a folder")
    cache = ResultCache(tmp_path / "local", remote=RemoteStore(blocker.as_uri()))
    assert cache.get_or_compute("k/v/c/p", lambda: 7) == (7, True)
    assert cache.remote.failures >= 1 and cache.stats.remote_writes == 0


def test_a_new_machine_with_the_same_remote_computes_nothing(
    sample_images, tmp_path, cfg, monkeypatch
):
    cfg["cache"]["remote"] = (tmp_path / "shared").as_uri()
    first = extract(sample_images, tmp_path / "out1", cfg)
    assert _counts(first)["merge"] > 0
    monkeypatch.setenv("KIRIDASHI_CACHE_DIR", str(tmp_path / "empty-local-cache"))
    again = extract(sample_images, tmp_path / "out2", cfg)
    assert set(_counts(again).values()) == {0}, again["summary"]["counts"]
    assert again["summary"]["reused"] == first["summary"]["processed"]
    assert _outputs(tmp_path / "out2") == _outputs(tmp_path / "out1")


# -- the remote tier on a real S3 API (moto's server mode) --------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_bucket(monkeypatch):
    """``s3://kiridashi-test/shared`` on a moto server on localhost (a real HTTP S3 API)."""
    s3fs = pytest.importorskip("s3fs")
    s3fs.S3FileSystem.clear_instance_cache()  # fsspec keeps one per set of arguments: a new port
    server_mod = pytest.importorskip("moto.server")
    port = _free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }.items():
        monkeypatch.setenv(key, value)
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket="kiridashi-test")
    yield client, "s3://kiridashi-test/shared"
    server.stop()
    s3fs.S3FileSystem.clear_instance_cache()


def test_s3_remote_reuse_corrupt_object_and_concurrent_writers(s3_bucket, tmp_path):
    client, url = s3_bucket
    key = "segment/v/0123/p"
    value = {"masks": [b"\x00\xff" * 1000], "n": 2}
    start = threading.Barrier(2)
    results = []

    def writer(k: int) -> None:  # two machines computing the same key at the same moment
        cache = ResultCache(tmp_path / f"local{k}", remote=RemoteStore(url))

        def compute():
            start.wait(timeout=30)
            return value

        results.append((cache.get_or_compute(key, compute), cache.stats.remote_writes))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [r[0] for r in results] == [(value, True)] * 2
    assert sum(r[1] for r in results) >= 1
    obj = client.get_object(Bucket="kiridashi-test", Key=f"shared/v1/{key}")["Body"].read()
    assert ResultCache._unpack(obj) == value  # whoever wrote last, the object is whole

    fresh = ResultCache(tmp_path / "local-new", remote=RemoteStore(url))
    assert fresh.get_or_compute(key, lambda: 1 / 0) == (value, False)
    client.put_object(Bucket="kiridashi-test", Key=f"shared/v1/{key}", Body=obj[:100])  # torn
    again = ResultCache(tmp_path / "local-again", remote=RemoteStore(url))
    assert again.get_or_compute(key, lambda: value) == (value, True)
    assert again.stats.remote_corrupt == 1
    replaced = client.get_object(Bucket="kiridashi-test", Key=f"shared/v1/{key}")["Body"].read()
    assert replaced == obj


@pytest.mark.slow
def test_two_runs_at_once_share_an_s3_remote(s3_bucket, sample_images, tmp_path):
    """Two ``kiridashi extract`` processes (separate local caches) write the same keys to S3 at
    the same time; a third on an empty local cache then computes nothing."""
    import subprocess
    import sys

    _, url = s3_bucket
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def run(k: int) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "kiridashi.cli", "extract", str(sample_images),
             str(tmp_path / f"out{k}"), "--no-check", f"cache.remote={url}"],
            env={**env, "KIRIDASHI_CACHE_DIR": str(tmp_path / f"cache{k}")},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    procs = [run(0), run(1)]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    third = run(2)
    out, err = third.communicate(timeout=600)
    assert third.returncode == 0, err
    doc = kio.read_json(tmp_path / "out2" / RESULTS)
    assert set(_counts(doc).values()) == {0}, doc["summary"]["counts"]
    assert _outputs(tmp_path / "out2") == _outputs(tmp_path / "out0") == _outputs(tmp_path / "out1")


# -- the Ray executor ---------------------------------------------------------------------------


def _on_ray(cfg: dict, *overrides: str) -> dict:
    """``cfg`` with the ``ray`` executor (as ``executor=ray`` composes it)."""
    from kiridashi.config import compose

    return {**cfg, "executor": compose(["executor=ray", *overrides])["executor"]}


@pytest.fixture(scope="module")
def ray_runtime():
    """A Ray runtime on this machine with 2 CPUs, shared by the tests of this module."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_executor_writes_the_same_outputs_as_the_local_one(
    ray_runtime, tmp_path, cfg, monkeypatch
):
    images = _demo(tmp_path / "in", 6)
    local = extract(images, tmp_path / "local", cfg)
    monkeypatch.setenv("KIRIDASHI_CACHE_DIR", str(tmp_path / "ray-cache"))  # computes again
    on_ray = extract(images, tmp_path / "ray", _on_ray(cfg, "executor.in_flight=1"))
    assert on_ray["summary"]["computed"] == local["summary"]["computed"] > 0
    assert _outputs(tmp_path / "ray") == _outputs(tmp_path / "local")
    strip = ("created", "summary")  # the time of the run
    assert {k: v for k, v in on_ray.items() if k not in strip} == {
        k: v for k, v in local.items() if k not in strip
    }


def _ray_worker_pids() -> list[int]:
    import psutil

    pids = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if cmd and cmd[0].startswith("ray::_ImageWorker"):
            pids.append(proc.info["pid"])
    return pids


@pytest.mark.slow
def test_a_killed_ray_worker_loses_nothing(ray_runtime, tmp_path, cfg, monkeypatch):
    images = _demo(tmp_path / "in", 8)
    expected_doc = extract(images, tmp_path / "local", cfg)
    monkeypatch.setenv("KIRIDASHI_CACHE_DIR", str(tmp_path / "ray-cache"))
    ray_cfg = _on_ray(cfg)
    done: dict = {}
    run = threading.Thread(target=lambda: done.update(extract(images, tmp_path / "ray", ray_cfg)))
    run.start()
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and run.is_alive() and time.monotonic() < deadline:
        written = list((tmp_path / "ray" / "masks").glob("*.png"))
        pids = _ray_worker_pids()
        if written and pids:  # mid-run: some images done, the workers busy with others
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    run.join(timeout=600)
    assert killed is not None, "the run ended before a worker could be killed"
    assert done["summary"]["skipped"] == 0 and done["summary"]["processed"] == len(
        expected_doc["images"]
    )
    assert all(r["status"] == "ok" for r in done["images"])
    assert _outputs(tmp_path / "ray") == _outputs(tmp_path / "local")


def test_inputs_and_outputs_at_s3_urls(s3_bucket, sample_images, tmp_path, cfg):
    """``kiridashi extract s3://bucket/in s3://bucket/out``: read and written through the S3 API,
    the same bytes as a local run."""
    client, _ = s3_bucket
    for path in sorted(sample_images.iterdir()):
        client.put_object(Bucket="kiridashi-test", Key=f"in/{path.name}", Body=path.read_bytes())
    doc = extract("s3://kiridashi-test/in", "s3://kiridashi-test/out/", cfg)
    local = extract(sample_images, tmp_path / "local", cfg)
    assert doc["summary"]["processed"] == local["summary"]["processed"] > 0
    assert [r["source"] for r in doc["images"]] == [r["source"] for r in local["images"]]
    listed = client.list_objects_v2(Bucket="kiridashi-test", Prefix="out/")["Contents"]
    remote = {
        o["Key"][len("out/") :]: client.get_object(Bucket="kiridashi-test", Key=o["Key"])[
            "Body"
        ].read()
        for o in listed
        if o["Key"].endswith(".png")
    }
    assert remote == _outputs(tmp_path / "local")
    results = client.get_object(Bucket="kiridashi-test", Key=f"out/{RESULTS}")["Body"].read()
    assert b'"processed"' in results
