"""Whole-pipeline benchmark at 1280x720: cold (1 and 2 workers), warm, cache size, peak RSS.

    python -m bench.pipeline_bench [--images DIR] [--n 40] [--n-small 10] [--jobs 1 2]
        [--repeat 1] [--out bench/results/pipeline.json]

Images: ../shared/datasets/dev/images when present (resized/cropped to 1280x720), else the demo set.
Each configuration runs in a fresh subprocess with its own empty cache, so "cold" is really cold.
Wall clock includes starting Python, importing and loading the models (in each worker); a run on
the first ``n-small`` images with the last ``jobs`` value separates that fixed start-up cost from
the marginal cost per image: (wall(n) - wall(n_small)) / (n - n_small). ``--repeat K`` runs
each cold configuration K times (a fresh cache each) and reports the median run, with every
run's s/image beside it: on a shared or virtual machine one run varies by +-5 %.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from bench.common import REPO, measured_run

DEV = REPO.parent / "shared" / "datasets" / "dev" / "images"


def prepare_images(src: Path | None, n: int, dst: Path, size=(1280, 720)) -> list[Path]:
    """``n`` images of exactly ``size`` (W, H) in ``dst`` (centre crop after scaling to cover)."""
    dst.mkdir(parents=True, exist_ok=True)
    if src is None:
        if DEV.is_dir():
            src = DEV
        else:
            from kiridashi.demo import build_demo

            src = dst.parent / "demo"
            build_demo(src, n_images=n, seed=0, source="auto")
    files = sorted(p for p in Path(src).glob("*.jpg") if not p.stem.endswith("_gt"))
    files = [p for p in files if not p.name.startswith("empty__")][:n]
    out = []
    for p in files:
        img = cv2.imdecode(np.fromfile(str(p), np.uint8), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        s = max(size[0] / w, size[1] / h)
        img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        y0 = (img.shape[0] - size[1]) // 2
        x0 = (img.shape[1] - size[0]) // 2
        img = img[y0 : y0 + size[1], x0 : x0 + size[0]]
        target = dst / p.name
        cv2.imwrite(str(target), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        out.append(target)
    return out


def run_extract(images: Path, out: Path, cache: Path, jobs: int) -> dict:
    """One ``kiridashi extract`` in a subprocess; wall seconds, peak RSS (MiB), counts."""
    env = dict(os.environ, KIRIDASHI_CACHE_DIR=str(cache), KIRIDASHI_LOG="WARNING")
    cmd = [sys.executable, "-m", "kiridashi.cli", "extract", str(images), str(out)]
    res = measured_run([*cmd, f"jobs={jobs}", "--no-check"], env, cwd=REPO)
    doc = json.loads((out / "extraction_results.json").read_text())
    return {
        "wall_s": res["wall_s"],
        "peak_rss_mib": res["peak_rss_mib"],
        "pipeline_s": doc["summary"]["seconds"],
        "counts": doc["summary"]["counts"],
    }


def cache_bytes_per_stage(cache: Path) -> dict[str, int]:
    from kiridashi.cache import ResultCache

    rc = ResultCache(cache)
    sizes: dict[str, int] = {}
    for key in rc.iter_keys():
        blob = rc._store.get(key)  # noqa: SLF001 - raw size of the stored entry
        step = key.split("/", 1)[0]
        sizes[step] = sizes.get(step, 0) + (len(blob) if isinstance(blob, bytes) else 0)
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, help="source images (default: dev set or demo)")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--n-small", type=int, default=10)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=1, help="cold runs per configuration")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "pipeline.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kiridashi-bench-"))
    try:
        images = prepare_images(args.images, args.n, work / "images")
        n = len(images)
        results: dict = {
            "images": n,
            "resolution": "1280x720",
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "runs": {},
        }
        median_dirs: dict[int, tuple[Path, Path]] = {}  # jobs -> (out, cache) of the median run
        for jobs in args.jobs:
            trials = []
            for k in range(max(1, args.repeat)):
                out, cache = work / f"out-j{jobs}-{k}", work / f"cache-j{jobs}-{k}"
                trials.append((run_extract(work / "images", out, cache, jobs), out, cache))
            trials.sort(key=lambda t: t[0]["wall_s"])
            cold, out, cache = trials[len(trials) // 2]
            median_dirs[jobs] = (out, cache)
            cold["s_per_image"] = round(cold["wall_s"] / n, 3)
            cold["images_per_s"] = round(n / cold["wall_s"], 3)
            cold["s_per_image_runs"] = [round(t[0]["wall_s"] / n, 3) for t in trials]
            results["runs"][f"cold_jobs{jobs}"] = cold
            print(
                f"cold jobs={jobs}: {cold['s_per_image']} s/image wall (median of "
                f"{cold['s_per_image_runs']})",
                flush=True,
            )
        jobs = args.jobs[-1]
        if 0 < args.n_small < n:
            small = work / "images-small"
            small.mkdir()
            for p in images[: args.n_small]:
                os.link(p, small / p.name)
            few = run_extract(small, work / "out-small", work / "cache-small", jobs)
            big = results["runs"][f"cold_jobs{jobs}"]
            marginal = (big["wall_s"] - few["wall_s"]) / (n - args.n_small)
            results["runs"][f"cold_jobs{jobs}_n{args.n_small}"] = few
            results[f"marginal_s_per_image_jobs{jobs}"] = round(marginal, 3)
            results[f"startup_s_jobs{jobs}"] = round(few["wall_s"] - args.n_small * marginal, 2)
            print(
                f"jobs={jobs}: marginal {marginal:.3f} s/image, start-up "
                f"{results[f'startup_s_jobs{jobs}']} s",
                flush=True,
            )
        out, cache = median_dirs[args.jobs[0]]
        shutil.rmtree(out)
        warm = run_extract(work / "images", work / "out-warm", cache, 1)
        warm["ms_per_image_pipeline"] = round(1000 * warm["pipeline_s"] / n, 2)
        results["runs"]["warm_outputs_deleted"] = warm
        print(f"warm: {warm['ms_per_image_pipeline']} ms/image (pipeline loop)", flush=True)
        per_stage = cache_bytes_per_stage(cache)
        results["cache_bytes_per_image"] = {k: round(v / n) for k, v in per_stage.items()}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
