"""Scale-out benchmark (issue #17): the Ray executor against the local pool, and a run that
reuses everything through the shared ``cache.remote`` tier.

    python -m bench.scale_out_bench [--n 200] [--jobs 2] [--side 640]
        [--out bench/results/scale_out.json]

Images: ``n`` distinct variants of the dev (or demo) images (:func:`bench.scale_bench.synthesize`).
Every run is a real ``kiridashi extract`` process with its own empty local cache:

1. ``local``: the process pool, ``jobs`` workers, filling a ``file://`` remote tier.
2. ``ray``: ``executor=ray`` with ``jobs`` actors on a Ray runtime it starts on this machine
   (start-up included), no remote tier: it computes every image again.
3. ``reuse``: the local executor (1 process) on an empty local cache with the remote of run 1:
   every result comes from the remote (computed must be 0).

Overhead per image of Ray = (wall ray - wall local) / n; also the same for the steady state
(the runs' own ``summary.seconds``, which start when the first image is submitted and so include
Ray's start-up but not Python's imports). The machine's load average is recorded before and after:
other work on the machine slows both executors alike, but not necessarily evenly.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

from bench.common import REPO, measured_run
from bench.scale_bench import base_images, synthesize


def run(images: Path, out: Path, cache: Path, overrides: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "KIRIDASHI_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-m", "kiridashi.cli", "extract", str(images), str(out), "--no-check"]
    res = measured_run([*cmd, *overrides], env, cwd=REPO)
    doc = json.loads((out / "extraction_results.json").read_text())
    s = doc["summary"]
    return {
        "overrides": overrides,
        "images": s["images"],
        "processed": s["processed"],
        "skipped": s["skipped"],
        "computed": {step: c.get("computed", 0) for step, c in s["counts"].items()},
        "wall_s": res["wall_s"],
        "run_s": s["seconds"],
        "wall_ms_per_image": round(1000 * res["wall_s"] / s["images"], 1),
        "run_ms_per_image": round(1000 * s["seconds"] / s["images"], 1),
        "peak_rss_mib": res["peak_rss_mib"],
    }


def masks(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "masks").rglob("*.png"))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--side", type=int, default=640)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scale_out.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kiridashi-scaleout-") as tmp:
        work = Path(tmp)
        images = work / "images"
        synthesize(base_images(work), args.n, images, args.side)
        remote = (work / "remote").as_uri()
        load_before = os.getloadavg()
        jobs = f"jobs={args.jobs}"
        local = run(
            images, work / "out-local", work / "cache-local", [jobs, f"cache.remote={remote}"]
        )
        print("local:", local, flush=True)
        on_ray = run(images, work / "out-ray", work / "cache-ray", [jobs, "executor=ray"])
        print("ray:", on_ray, flush=True)
        reuse = run(images, work / "out-reuse", work / "cache-empty", [f"cache.remote={remote}"])
        print("reuse:", reuse, flush=True)
        load_after = os.getloadavg()
        objects = [p for p in (work / "remote").rglob("*") if p.is_file()]
        remote_bytes = sum(p.stat().st_size for p in objects)
        same = masks(work / "out-ray") == masks(work / "out-local") == masks(work / "out-reuse")
    n = args.n
    result = {
        "n_images": n,
        "jobs": args.jobs,
        "side_px": args.side,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_1_5_15_before": load_before, "load_avg_1_5_15_after": load_after},
        "local": local,
        "ray": on_ray,
        "reuse": reuse,
        "ray_overhead": {
            "wall_ms_per_image": round(1000 * (on_ray["wall_s"] - local["wall_s"]) / n, 1),
            "wall_share": round(on_ray["wall_s"] / local["wall_s"] - 1, 3),
            "run_ms_per_image": round(1000 * (on_ray["run_s"] - local["run_s"]) / n, 1),
            "run_share": round(on_ray["run_s"] / local["run_s"] - 1, 3),
        },
        "remote": {
            "objects": len(objects),
            "bytes": remote_bytes,
            "objects_per_image": round(len(objects) / n, 2),
            "bytes_per_image": round(remote_bytes / n),
        },
        "masks_identical": same,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("ray_overhead", "remote", "masks_identical")}))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
