"""Detection on the dev set: faces found per GT character, false characters, time per image.

    python -m bench.detect_eval [--images DIR] [--set detect.key=value ...]

A GT character counts as found when a predicted character's face centre lies inside its mask
(per-character masks from ``alpha/NAME_gt_<k>.png``, else the union GT). Writes
bench/results/detect_eval.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from kiridashi import io as kio
from kiridashi.config import compose, resolve_models_dir
from kiridashi.detectors import detect_image
from kiridashi.preprocess import preprocess_image

REPO = Path(__file__).resolve().parents[1]
DEV = REPO.parent / "shared" / "datasets" / "dev" / "images"


def gt_characters(img_path: Path, shape) -> list[np.ndarray]:
    alpha = img_path.parent.parent / "alpha"
    parts = sorted(alpha.glob(f"{img_path.stem}_gt_[0-9]*.png"))
    if parts:
        return [kio.load_mask(p)[0] for p in parts]
    gt, _ = kio.load_mask(img_path.with_name(f"{img_path.stem}_gt.png"))
    return [gt] if gt.any() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, default=DEV)
    parser.add_argument("--set", nargs="*", default=[], help="Hydra overrides")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/detect_eval.json")
    args = parser.parse_args()
    cfg = compose(args.set)
    models_dir = resolve_models_dir(cfg["models_dir"])
    rows = []
    for path in sorted(p for p in args.images.glob("*.jpg")):
        rgb = kio.load_image(path).rgb
        image = preprocess_image(rgb, cfg["preprocess"])
        s = rgb.shape[0] / image.shape[0]
        t0 = time.perf_counter()
        res = detect_image(image, cfg["detect"], models_dir, lambda k, p, f: f())
        dt = time.perf_counter() - t0
        gts = gt_characters(path, rgb.shape[:2])
        found, false = set(), 0
        faces = 0
        for ch in res.characters:
            ref = ch.face_box if ch.face_box is not None else ch.box
            faces += ch.face_box is not None
            cx = int((ref[0] + ref[2]) / 2 * s)
            cy = int((ref[1] + ref[3]) / 2 * s)
            hit = [
                k for k, m in enumerate(gts) if m[min(cy, m.shape[0] - 1), min(cx, m.shape[1] - 1)]
            ]
            if hit:
                found.add(hit[0])
            else:
                false += 1
        kind = (
            "empty"
            if path.name.startswith("empty")
            else "multi"
            if path.name.startswith("multi")
            else "single"
        )
        rows.append({"image": path.name, "kind": kind, "gt": len(gts), "found": len(found),
                     "false": false, "n_chars": len(res.characters), "faces": faces, "seconds": round(dt, 3),
                     "raw": res.raw_counts})  # fmt: skip
    summary = {}
    for kind in ("single", "multi", "empty"):
        sub = [r for r in rows if r["kind"] == kind]
        if sub:
            gt = sum(r["gt"] for r in sub)
            summary[kind] = {
                "images": len(sub),
                "gt_characters": gt,
                "found": sum(r["found"] for r in sub),
                "recall": round(sum(r["found"] for r in sub) / gt, 4) if gt else None,
                "false_characters": sum(r["false"] for r in sub),
                "images_with_face": sum(r["faces"] > 0 for r in sub),
            }
    summary["seconds_per_image"] = round(float(np.mean([r["seconds"] for r in rows])), 3)
    summary["overrides"] = args.set
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "images": rows}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    for r in rows:
        if r["found"] < r["gt"] or r["false"]:
            print("  miss/false:", r["image"], r["gt"], r["found"], r["false"], r["raw"])


if __name__ == "__main__":
    main()
