"""SAM embedding-cache benchmark: what segment costs after a detect-param change.

    python -m bench.sam_bench [--n 12] [--model-type tiny|vit_b|vit_l|vit_h] [--checkpoint PATH]
                              [--threads 1] [--side 640] [--out bench/results/sam_bench.json]

Runs the real SAM backend (conf/segment/sam_vit_b.yaml with ``model_type``/``checkpoint``
overridden) over ``n`` synthetic images twice, through the real segment memo on an empty
cache. Between the runs only a detection parameter changes (how much the character boxes are
grown), as after `dvc exp run -S detect...`: run 1 computes every image embedding, run 2 reuses
them all and pays only the prompt encoder + mask decoder.

Without ``--checkpoint`` the weights are random (saved to a temp file and loaded through the
product's loading code): the compute is that of the architecture, the masks are meaningless.
``--model-type vit_b`` without a checkpoint gives the real ViT-B encoder cost (slow on CPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from kiridashi.cache import ImageMemo, ResultCache
from kiridashi.types import Character

REPO = Path(__file__).resolve().parents[1]


def synthetic_scene(seed: int, side: int) -> tuple[np.ndarray, list[tuple]]:
    """(HxWx3 uint8 RGB image, [(body XYXY, face XYXY)] of 1-3 simple figures), H = 3/4 W."""
    rng = np.random.default_rng(seed)
    h, w = side * 3 // 4, side
    ramp = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    low, high = rng.integers(40, 200, 3), rng.integers(40, 200, 3)
    image = np.broadcast_to(low + (high - low) * ramp, (h, w, 3)).astype(np.uint8).copy()
    figures = []
    count = int(rng.integers(1, 4))
    for k in range(count):
        fw = w / count * 0.5
        cx = w / count * (k + 0.5) + rng.uniform(-0.1, 0.1) * fw
        top = h * rng.uniform(0.05, 0.2)
        face = (cx - fw * 0.3, top, cx + fw * 0.3, top + fw * 0.6)
        body = (cx - fw / 2, top, cx + fw / 2, h * 0.98)
        colour = rng.integers(0, 255, 3)
        x0, y0, x1, y1 = (int(v) for v in body)
        image[int(face[3]) : y1, x0:x1] = colour
        fx0, fy0, fx1, fy1 = (int(v) for v in face)
        image[fy0:fy1, fx0:fx1] = (250, 220, 200)
        figures.append((body, face))
    return image, figures


def characters_for(figures: list[tuple], box_growth: float, hw: tuple[int, int]) -> list:
    """Characters as a detector with ``box_growth`` (share of the box size) would report them."""
    h, w = hw
    out = []
    for (x0, y0, x1, y1), face in figures:
        gx, gy = (x1 - x0) * box_growth, (y1 - y0) * box_growth
        box = (max(0.0, x0 - gx), max(0.0, y0 - gy), min(w, x1 + gx), min(h, y1 + gy))
        out.append(Character(box=box, score=0.9, face_box=face))
    return out


def random_checkpoint(model_type: str, folder: Path) -> Path:
    """Random weights of ``model_type`` saved as a checkpoint (seeded, reproducible)."""
    import torch

    from kiridashi.segmenters.sam import architecture, build_sam_modules

    torch.manual_seed(0)
    path = folder / f"random_{model_type}.pth"
    torch.save(build_sam_modules(architecture(model_type)).state_dict(), path)
    return path


def run(cfg: dict, scenes: list, box_growth: float, cache: ResultCache, models_dir: Path) -> dict:
    """Segment every scene once; seconds and the embeddings computed/reused in this run."""
    from kiridashi.segmenters import segment_image
    from kiridashi.segmenters.base import build

    seg = build(cfg, models_dir)
    before = (seg.stats.computed, seg.stats.reused, seg.stats.encoder_seconds)
    start = time.perf_counter()
    for index, (image, figures) in enumerate(scenes):
        memo = ImageMemo(cache, "segment", "bench", f"scene-{index}")
        segment_image(image, characters_for(figures, box_growth, image.shape[:2]), cfg,
                      models_dir, memo)  # fmt: skip
    seconds = time.perf_counter() - start
    return {
        "detect_box_growth": box_growth,
        "seconds": round(seconds, 3),
        "embeddings_computed": seg.stats.computed - before[0],
        "embeddings_reused": seg.stats.reused - before[1],
        "encoder_seconds": round(seg.stats.encoder_seconds - before[2], 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=12, help="synthetic images")
    parser.add_argument("--side", type=int, default=640, help="image width (height = 3/4)")
    parser.add_argument("--model-type", default="tiny")
    parser.add_argument("--checkpoint", type=Path, help="real weights (default: random)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (shared CPUs: 1)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "sam_bench.json")
    args = parser.parse_args(argv)

    import torch

    from kiridashi.config import compose

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="sam_bench_") as tmp:
        tmp_dir = Path(tmp)
        checkpoint = args.checkpoint or random_checkpoint(args.model_type, tmp_dir)
        cfg = compose(
            ["segment=sam_vit_b", f"segment.model_type={args.model_type}",
             f"segment.checkpoint={Path(checkpoint).resolve()}", "segment.device=cpu"]
        )["segment"]  # fmt: skip
        scenes = [synthetic_scene(seed, args.side) for seed in range(args.n)]
        cache = ResultCache(tmp_dir / "cache")
        # warm-up on another image: model loading and first-call costs stay out of both runs
        run(cfg, [synthetic_scene(args.n, args.side)], 0.05, ResultCache(tmp_dir / "warm"), tmp_dir)
        first = run(cfg, scenes, 0.05, cache, tmp_dir)
        second = run(cfg, scenes, 0.15, cache, tmp_dir)
    result = {
        "what": "segment=sam over the same images twice; only detection box growth changes",
        "model_type": args.model_type,
        "weights": "checkpoint" if args.checkpoint else "random (compute only)",
        "images": args.n,
        "image_size": [args.side * 3 // 4, args.side],
        "characters": sum(len(f) for _, f in scenes),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "run1": first,
        "run2_after_detect_change": second,
        "speedup": round(first["seconds"] / max(second["seconds"], 1e-9), 2),
    }
    for name in ("run1", "run2_after_detect_change"):
        r = result[name]
        print(f"{name:25s} {r['seconds']:8.2f} s  embeddings computed {r['embeddings_computed']:3d}"
              f"  reused {r['embeddings_reused']:3d}  encoder {r['encoder_seconds']:.2f} s")  # fmt: skip
    print(f"speedup {result['speedup']}x  ->  {args.out}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
