"""Edge colours of the cut-outs: does colour decontamination make recomposited crops closer to
the truth?

    python -m bench.edge_colour_bench [--art pool|renpy] [--pool ../shared/datasets/sprites]
                                      [--every 1] [--out bench/results/edge_colour.json]

Truth from raw RGBA sprites (their own colour F and alpha a): those of the development sprite
pool (``--art pool``: dev2's artists) or the demo's Ren'Py art (``--art renpy``: dev's artists,
Debian's packages as ``kiridashi demo`` fetches them). Each sprite, 600 px high, is composited on
one of the same source's backgrounds. The cut-out's alpha is what the default
pipeline makes of a mask: the guided-filtered mask (``segment.refine``) turned into the matte
alpha of ``merge.edges`` - for the exact mask (a >= 0.5), the mask one pixel too wide (background
inside) and one pixel too narrow. Its colours are either the composite's own (``none``) or
:func:`kiridashi.edges.decontaminate`'s (``decontaminate``). The crop is recomposited on white and
on black and compared with the sprite composited on the same colour; the score is the mean
absolute error (0-255, RGB mean) over the edge band (where either alpha is partial, grown by
1 px), averaged over white and black. Lower is better.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from bench.common import REPO
from kiridashi.config import compose
from kiridashi.edges import decontaminate, edge_alpha
from kiridashi.segmenters.anime import guided_filter_near

POOL = REPO.parent / "shared" / "datasets" / "sprites"
MASKS = ("exact", "one_px_wide", "one_px_narrow")
COLOURS = ("none", "decontaminate")


def load_art(kind: str, pool: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(RGBA uint8 sprites, RGB uint8 backgrounds) of ``kind``: ``pool`` or ``renpy``."""
    if kind == "renpy":
        from kiridashi.demo import load_renpy_art

        art = load_renpy_art()
        return [s.rgba for s in art.sprites], [b.rgb for b in art.backgrounds]
    read = lambda p, flag: cv2.imread(str(p), flag)  # noqa: E731
    sprites = [read(p, cv2.IMREAD_UNCHANGED) for p in sorted((pool / "sprites").rglob("*.png"))]
    bgs = [
        read(p, cv2.IMREAD_COLOR) for p in sorted((pool / "backgrounds").rglob("*")) if p.is_file()
    ]
    return (
        [cv2.cvtColor(s, cv2.COLOR_BGRA2RGBA) for s in sprites if s is not None],
        [cv2.cvtColor(b, cv2.COLOR_BGR2RGB) for b in bgs if b is not None],
    )


def scene(sprite: np.ndarray, background: np.ndarray, height: int = 600):
    """(composite HxWx3 uint8 RGB, sprite colour HxWx3 float32, sprite alpha HxW float32) of an
    RGBA ``sprite`` scaled to ``height`` px on the RGB ``background``."""
    width = round(sprite.shape[1] * height / sprite.shape[0])
    rgba = cv2.resize(sprite, (width, height), interpolation=cv2.INTER_AREA)
    colour = rgba[..., :3].astype(np.float32)
    alpha = rgba[..., 3].astype(np.float32) / 255.0
    bg = cv2.resize(background, (width + 80, height + 80))
    bg = bg[40 : 40 + height, 40 : 40 + width].astype(np.float32)
    a3 = alpha[..., None]
    composite = (colour * a3 + bg * (1 - a3)).round().clip(0, 255).astype(np.uint8)
    return composite, colour, alpha


def recomposite_error(
    rgb: np.ndarray, alpha: np.ndarray, colour: np.ndarray, truth: np.ndarray, band: np.ndarray
) -> float:
    """Mean |crop over C - truth over C| in ``band``, averaged over C = white and black."""
    a = alpha.astype(np.float32)[..., None] / 255.0
    t = truth[..., None]
    errors = []
    for c in (255.0, 0.0):
        crop = a * rgb.astype(np.float32) + (1 - a) * c
        real = t * colour + (1 - t) * c
        errors.append(float(np.abs(crop - real)[band].mean()))
    return sum(errors) / len(errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--art", choices=("pool", "renpy"), default="pool")
    parser.add_argument("--pool", type=Path, default=POOL)
    parser.add_argument("--every", type=int, default=1, help="use every n-th sprite")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "edge_colour.json")
    args = parser.parse_args(argv)
    sprites, backgrounds = load_art(args.art, args.pool)
    sprites = sprites[:: args.every]
    if not sprites or not backgrounds:
        print(f"error: no sprites or backgrounds for --art {args.art} ({args.pool})")
        return 2
    cfg = compose([])
    refine, edges = cfg["segment"]["refine"], cfg["merge"]["edges"]
    box = int(edges["decontaminate_box_px"])
    kernel = np.ones((3, 3), np.uint8)
    scores = {m: {c: [] for c in COLOURS} for m in MASKS}
    seconds = 0.0
    for i, sprite in enumerate(sprites):
        rgb, colour, truth = scene(sprite, backgrounds[i % len(backgrounds)])
        exact = (truth >= 0.5).astype(np.uint8)
        masks = {
            "exact": exact > 0,
            "one_px_wide": cv2.dilate(exact, kernel) > 0,
            "one_px_narrow": cv2.erode(exact, kernel) > 0,
        }
        for name, mask in masks.items():
            soft = guided_filter_near(rgb, mask.astype(np.float32), int(refine["radius"]),
                                      float(refine["eps"]))  # fmt: skip
            alpha = edge_alpha(mask, soft, {**edges, "mode": "soft"})
            partial = ((alpha > 0) & (alpha < 255)) | ((truth > 0) & (truth < 1))
            band = cv2.dilate(partial.astype(np.uint8), kernel) > 0
            t = time.perf_counter()
            clean = decontaminate(rgb, alpha, box)
            seconds += time.perf_counter() - t
            for key, out in (("none", rgb), ("decontaminate", clean)):
                scores[name][key].append(recomposite_error(out, alpha, colour, truth, band))
    summary = {
        m: {c: round(float(np.mean(v)), 2) for c, v in by.items()} for m, by in scores.items()
    }
    result = {
        "art": args.art,
        "sprites": len(sprites),
        "backgrounds": len(backgrounds),
        "metric": "mean |recomposite - truth| on white and black in the edge band (0-255)",
        "summary": summary,
        "worst": {
            m: {c: round(float(np.max(v)), 2) for c, v in by.items()} for m, by in scores.items()
        },
        "decontaminate_s_per_crop": round(seconds / (len(sprites) * len(MASKS)), 3),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for m in MASKS:
        print(f"{m:14s} " + "  ".join(f"{c} {summary[m][c]:.2f}" for c in COLOURS))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
