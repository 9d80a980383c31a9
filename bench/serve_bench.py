"""``kiridashi serve`` under load: N concurrent clients, cold and cached, against ``extract``.

    python -m bench.serve_bench [--images DIR] [--n 16] [--jobs 2] [--clients 1 4 16]
        [--requests 1000] [--out bench/results/serve.json]

Images: the first ``n`` dev images (../shared/datasets/dev/images, else the demo set), as they
are. For each client count:

- cold: a fresh server (``jobs`` workers) with an empty cache answers the ``n`` images, each
  once, ``clients`` at a time; throughput (images/s) and p50 / p95 latency. The server is ready
  (models loaded) before the clock starts, so this is the per-image cost.
- cached: ``requests`` uploads of those images (round robin) to the same server, now all cache
  hits; throughput, p50 / p95, and the RSS of the server and its workers every 100 requests.

``kiridashi extract`` with the same ``jobs`` on the same images and an empty cache gives the
reference: its marginal throughput (``n`` images minus a run on 2 images, so Python start-up and
model loading cancel out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import REPO
from tests.serve_client import Server, start_server

DEV = REPO.parent / "shared" / "datasets" / "dev" / "images"


def pick_images(src: Path | None, n: int, dst: Path) -> list[Path]:
    dst.mkdir(parents=True, exist_ok=True)
    if src is None and DEV.is_dir():
        src = DEV
    if src is None:
        from kiridashi.demo import build_demo

        build_demo(dst, n_images=n, seed=0, source="procedural")
        return sorted(p for p in dst.glob("*.png") if not p.stem.endswith("_gt"))[:n]
    files = sorted(p for p in src.iterdir() if p.suffix == ".jpg")[:n]
    for f in files:
        shutil.copy(f, dst / f.name)
    return sorted(dst.glob("*.jpg"))


def rss_tree_kib(pid: int) -> int:
    """RSS of ``pid`` and its children (KiB), from /proc."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(
                next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS"))
            )
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue
    return total


def load(server: Server, images: list[tuple[str, bytes]], total: int, clients: int, on_done=None):
    """``total`` uploads, ``clients`` at a time; latencies (s) and wall time."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(total))
    failures: list[str] = []

    def client() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            name, data = images[i % len(images)]
            t0 = time.perf_counter()
            reply = server.upload("/v1/extract", "image", name, data)
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                if reply.status != 200:
                    failures.append(f"{reply.status} {reply.body[:100]!r}")
                if on_done:
                    on_done(len(latencies))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - t0, failures


def summary(latencies: list[float], wall: float) -> dict:
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else None
    return {
        "requests": len(latencies),
        "wall_s": round(wall, 2),
        "throughput_per_s": round(len(latencies) / wall, 3),
        "p50_ms": round(1000 * (q[49] if q else latencies[0]), 1),
        "p95_ms": round(1000 * (q[94] if q else latencies[0]), 1),
    }


def extract_reference(images_dir: Path, work: Path, jobs: int, env: dict) -> dict:
    """Marginal images/s of ``kiridashi extract`` (n images minus 2 images, each cold)."""
    walls = {}
    for label, folder in (("all", images_dir), ("two", work / "two")):
        if label == "two":
            folder.mkdir(exist_ok=True)
            for f in sorted(images_dir.glob("*.jpg"))[:2]:
                shutil.copy(f, folder / f.name)
        cache = work / f"cache_extract_{label}"
        run_env = {**env, "KIRIDASHI_CACHE_DIR": str(cache)}
        cmd = [sys.executable, "-m", "kiridashi.cli", "extract", str(folder)]
        cmd += [str(work / f"out_{label}"), "--no-check", f"jobs={jobs}"]
        t0 = time.perf_counter()
        subprocess.run(cmd, env=run_env, check=True, capture_output=True)
        walls[label] = time.perf_counter() - t0
    n = len(list(images_dir.glob("*.jpg")))
    marginal = (walls["all"] - walls["two"]) / (n - 2)
    return {
        "images": n,
        "wall_s": round(walls["all"], 2),
        "wall_2_images_s": round(walls["two"], 2),
        "marginal_s_per_image": round(marginal, 3),
        "throughput_per_s": round(1 / marginal, 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=Path)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "serve.json")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="serve_bench_"))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("KIRIDASHI_TOKEN", None)
    if (REPO.parent / "shared" / "models").is_dir():
        env.setdefault("KIRIDASHI_MODELS_DIR", str(REPO.parent / "shared" / "models"))
    paths = pick_images(args.images, args.n, work / "images")
    images = [(p.name, p.read_bytes()) for p in paths]
    out: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "note": "2 cores shared with other work (another engineer's runs may overlap)",
        "images": len(images),
        "jobs": args.jobs,
        "runs": [],
    }
    try:
        out["extract"] = extract_reference(work / "images", work, args.jobs, env)
        print("extract:", out["extract"], flush=True)
        for clients in args.clients:
            run_env = {**env, "KIRIDASHI_CACHE_DIR": str(work / f"cache_{clients}")}
            server = start_server(work, run_env, [f"jobs={args.jobs}"])
            try:
                server.wait_ready()
                lat, wall, fail = load(server, images, len(images), clients)
                cold = {**summary(lat, wall), "failures": fail}
                memory = [
                    {"requests": 0, "rss_mib": round(rss_tree_kib(server.proc.pid) / 1024, 1)}
                ]

                def sample(done: int, server=server, memory=memory) -> None:
                    if done % 100 == 0:
                        rss = rss_tree_kib(server.proc.pid) / 1024
                        memory.append({"requests": done, "rss_mib": round(rss, 1)})

                lat, wall, fail = load(server, images, args.requests, clients, sample)
                cached = {**summary(lat, wall), "failures": fail}
            finally:
                server.stop()
            run = {"clients": clients, "cold": cold, "cached": cached, "memory": memory}
            out["runs"].append(run)
            print(json.dumps(run), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ref = out["extract"]["throughput_per_s"]
    for run in out["runs"]:
        run["cold"]["vs_extract"] = round(run["cold"]["throughput_per_s"] / ref, 3)
        mem = [m["rss_mib"] for m in run["memory"][1:]]
        run["memory_growth_mib"] = round(mem[-1] - mem[0], 1) if mem else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
