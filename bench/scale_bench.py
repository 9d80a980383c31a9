"""Scale benchmark: peak memory flat in the number of images, and `dvc repro` no-op time.

    python -m bench.scale_bench [--n-small 100] [--n-large 1000] [--side 640]
        [--out bench/results/scale.json]

A synthetic set of ``n-large`` distinct images is derived from a few base images (the dev set
when ../shared exists, else the demo set): each image is a random 80-100 % crop of a base, maybe
mirrored, with a small colour tint, resized to ``side`` px wide, so every image has its own bytes
(its own cache keys) and real characters to cut out.

1. ``kiridashi extract`` on the first ``n-small`` images, then on all ``n-large`` (same cache, so
   the second run computes the rest): wall time and peak RSS of each run.
2. A scratch git+DVC checkout of this repo with the ``n-large`` images as ``data/input``
   (``dvc add``), the same result cache: a first ``dvc repro`` (every image served from the
   cache) and then the timed no-op ``dvc repro`` and ``dvc status``.
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

from bench.common import REPO, measured_run, scratch_dvc_repo

DEV = REPO.parent / "shared" / "datasets" / "dev" / "images"


def base_images(work: Path) -> list[Path]:
    """Labelled base images (no background-only scenes)."""
    if DEV.is_dir():
        files = sorted(DEV.glob("*.jpg"))
    else:
        from kiridashi.demo import build_demo

        build_demo(work / "demo", n_images=16, seed=0, source="auto")
        files = sorted((work / "demo").glob("*.jpg"))
    return [p for p in files if not p.name.startswith("empty")]


def synthesize(bases: list[Path], n: int, dst: Path, side: int, seed: int = 0) -> list[Path]:
    """``n`` distinct JPEG variants of ``bases`` in ``dst`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    dst.mkdir(parents=True, exist_ok=True)
    decoded = [cv2.imdecode(np.fromfile(str(p), np.uint8), cv2.IMREAD_COLOR) for p in bases]
    out = []
    for i in range(n):
        img = decoded[i % len(decoded)]
        h, w = img.shape[:2]
        share = rng.uniform(0.8, 1.0)
        ch, cw = int(h * share), int(w * share)
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = img[y0 : y0 + ch, x0 : x0 + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        tint = rng.uniform(0.95, 1.05, 3)
        crop = np.clip(crop.astype(np.float32) * tint, 0, 255).astype(np.uint8)
        scale = side / crop.shape[1]
        crop = cv2.resize(crop, (side, round(crop.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        path = dst / f"syn{i:05d}.jpg"
        cv2.imwrite(str(path), crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
        out.append(path)
    return out


def extract_run(images: Path, out: Path, env: dict) -> dict:
    cmd = [sys.executable, "-m", "kiridashi.cli", "extract", str(images), str(out), "--no-check"]
    res = measured_run(cmd, env, cwd=REPO)
    doc = json.loads((out / "extraction_results.json").read_text())
    n = doc["summary"]["images"]
    return {
        "images": n,
        "wall_s": res["wall_s"],
        "s_per_image": round(res["wall_s"] / max(1, n), 3),
        "peak_rss_mib": res["peak_rss_mib"],
        "counts": doc["summary"]["counts"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-small", type=int, default=100)
    parser.add_argument("--n-large", type=int, default=1000)
    parser.add_argument("--side", type=int, default=640, help="width of the synthetic images")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scale.json")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kiridashi-scale-"))
    env = dict(os.environ, KIRIDASHI_CACHE_DIR=str(work / "cache"), KIRIDASHI_LOG="WARNING")
    try:
        images = synthesize(base_images(work), args.n_large, work / "large", args.side)
        small = work / "small"
        small.mkdir()
        for p in images[: args.n_small]:
            os.link(p, small / p.name)
        results: dict = {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "image_width": args.side,
            "runs": {},
        }
        for name, folder in (
            (f"extract_{args.n_small}", small),
            (f"extract_{args.n_large}", work / "large"),
        ):
            run = extract_run(folder, work / f"out-{name}", env)
            results["runs"][name] = run
            print(
                f"{name}: {run['s_per_image']} s/image, peak RSS {run['peak_rss_mib']} MiB",
                flush=True,
            )

        repo, denv = scratch_dvc_repo(work, work / "large", env)
        dvc = [sys.executable, "-m", "dvc"]
        first = measured_run([*dvc, "repro"], denv, cwd=repo)
        noop = measured_run([*dvc, "repro"], denv, cwd=repo)
        status = measured_run([*dvc, "status"], denv, cwd=repo)
        assert "up to date" in noop["stdout"].lower(), noop["stdout"][-2000:]
        results["dvc"] = {
            "images": args.n_large,
            "first_repro_from_cache_s": first["wall_s"],
            "first_repro_peak_rss_mib": first["peak_rss_mib"],
            "noop_repro_s": noop["wall_s"],
            "status_s": status["wall_s"],
        }
        print(json.dumps(results["dvc"]), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
