"""Segmentation on the dev set: mean IoU, boundary F, worst images, seconds per image.

    python -m bench.segment_eval [--chars gt|detector] [--preprocess [--preprocess-only detect|segment]] [--set segment.key=value ...]
        [--only SUBSTR] [--overlays DIR] [--long-side 1280] [--ablate STEP ...]

``--ablate selfie colour ...`` also runs the evaluation once per step with
``segment.<step>.enabled=false`` and adds an ``ablation`` table (what each step adds).

Character inputs (``--chars``):

- ``gt`` (default): realistic stand-ins for detections, built from the ground truth: the face box
  and face points from ``animeface.detect`` (the face whose centre lies in the character's GT mask)
  and a character box = the GT bounding box with every side moved outwards by a random 2-10 % of
  the box size plus a +-3 % shift (seeded per image), so the box is never tight.
- ``detector``: ``kiridashi.detectors.detect_image`` with ``conf/detect/default.yaml``.

Scores (masks thresholded at 0.5, metrics from :mod:`kiridashi.metrics`): single images compare the
union of the predicted masks with the GT; multi images compare the union with the GT union (and
report per-character IoU after matching); empty images report the predicted foreground share.
Writes bench/results/segment_eval.json (``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import time
from pathlib import Path

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from kiridashi import io as kio
from kiridashi.config import compose, resolve_models_dir
from kiridashi.metrics import boundary_scores, iou
from kiridashi.segmenters import segment_image
from kiridashi.types import Character

REPO = Path(__file__).resolve().parents[1]
DEV = REPO.parent / "shared" / "datasets" / "dev" / "images"
FACE_CACHE = Path("/tmp/kiridashi_segment_eval_faces.json")
log = logging.getLogger("segment_eval")


class DictMemo:
    """Dict-backed memo (same call signature as the pipeline's ImageMemo)."""

    def __init__(self) -> None:
        self.store: dict = {}

    def __call__(self, kind, params, compute):
        key = (kind, json.dumps(params, sort_keys=True, default=str))
        if key not in self.store:
            self.store[key] = compute()
        return self.store[key]


def gt_masks(img_path: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """(union GT HxW bool, per-character GT masks left to right)."""
    gt, _ = kio.load_mask(img_path.with_name(f"{img_path.stem}_gt.png"))
    alpha = img_path.parent.parent / "alpha"
    parts = sorted(
        alpha.glob(f"{img_path.stem}_gt_[0-9]*.png"), key=lambda p: int(p.stem.split("_")[-1])
    )
    chars = [kio.load_mask(p)[0] for p in parts] if parts else ([gt] if gt.any() else [])
    return gt, chars


def animeface_faces(path: Path, rgb: np.ndarray) -> list[dict]:
    """animeface results for one image (cached in /tmp: the detector costs ~0.4 s)."""
    cache = json.loads(FACE_CACHE.read_text()) if FACE_CACHE.exists() else {}
    key = f"{path.name}:{rgb.shape[0]}x{rgb.shape[1]}"
    if key not in cache:
        import animeface
        from PIL import Image

        faces = []
        for f in animeface.detect(Image.fromarray(rgb)):
            b = f.face.pos
            kp = {}
            for part in ("left_eye", "right_eye", "mouth"):
                p = getattr(f, part).pos
                kp[f"face.{part}"] = (p.x + p.width / 2.0, p.y + p.height / 2.0, f.likelihood)
            for part in ("nose", "chin"):
                p = getattr(f, part).pos
                kp[f"face.{part}"] = (float(p.x), float(p.y), f.likelihood)
            box = [float(b.x), float(b.y), float(b.x + b.width), float(b.y + b.height)]
            faces.append({"box": box, "score": float(f.likelihood), "keypoints": kp})
        cache[key] = faces
        FACE_CACHE.write_text(json.dumps(cache))
    return cache[key]


def gt_characters(path: Path, rgb: np.ndarray, chars_gt: list[np.ndarray]) -> list[Character]:
    """Stand-in detections from the GT (see the module docstring); seeded per image name."""
    h, w = rgb.shape[:2]
    rng = np.random.default_rng(abs(hash_name(path.name)))
    faces = [f for f in animeface_faces(path, rgb) if f["score"] >= 0.5]
    out = []
    for m in chars_gt:
        ys, xs = np.nonzero(m)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        bw, bh = x1 - x0, y1 - y0
        grow = rng.uniform(0.02, 0.10, 4)
        shift = rng.uniform(-0.03, 0.03, 2)
        box = (
            float(np.clip(x0 - grow[0] * bw + shift[0] * bw, 0, w)),
            float(np.clip(y0 - grow[1] * bh + shift[1] * bh, 0, h)),
            float(np.clip(x1 + grow[2] * bw + shift[0] * bw, 0, w)),
            float(np.clip(y1 + grow[3] * bh + shift[1] * bh, 0, h)),
        )
        face = None
        for f in faces:
            cx = int((f["box"][0] + f["box"][2]) / 2)
            cy = int((f["box"][1] + f["box"][3]) / 2)
            if 0 <= cy < h and 0 <= cx < w and m[cy, cx]:
                face = f
                break
        if face is not None:
            faces.remove(face)
            out.append(
                Character(
                    box,
                    0.9,
                    tuple(face["box"]),
                    ["gt", "animeface"],
                    [1.0],
                    {k: tuple(v) for k, v in face["keypoints"].items()},
                )  # fmt: skip
            )
        else:
            out.append(Character(box, 0.5, None, ["gt"], [1.0], {}))
    return out


def _read_cache(path: Path) -> dict:
    """The detection cache file as a dict; {} when it is missing or unreadable (a run killed
    mid-write before writes were atomic)."""
    with contextlib.suppress(OSError, ValueError):
        return json.loads(path.read_text())
    return {}


def detector_characters(
    path: Path, image: np.ndarray, cfg: dict, models_dir: Path, args, original: np.ndarray
) -> list[Character]:
    """The detector's characters for ``image`` (HxWx3 RGB; ``original``: the same without
    preprocessing, the ``original`` detect view), cached in /tmp per detect config,
    preprocess mode and image (detection costs ~0.6 s/image and does not change between
    segmenter experiments)."""
    from kiridashi.cache import code_version, params_digest
    from kiridashi.detectors import detect_image

    mode = args.preprocess_only or ("both" if args.preprocess else "raw")
    mode = "raw" if mode == "segment" else "pre" if mode != "raw" else "raw"
    pre = cfg["preprocess"] if mode == "pre" else None
    key = params_digest([cfg["detect"], pre, code_version("kiridashi.detectors")])
    cache_path = Path(f"/tmp/kiridashi_segment_eval_dets_{key}.json")
    cache = _read_cache(cache_path)
    name = f"{path.name}:{image.shape[0]}x{image.shape[1]}:{mode}"
    if name not in cache:
        det = detect_image(image, cfg["detect"], models_dir, DictMemo(), {"original": original})
        # dev and dev2 evaluations may run side by side on the same detect config: keep what
        # the other wrote since, and write atomically
        cache = {**_read_cache(cache_path), **cache, name: [c.to_dict() for c in det.characters]}
        tmp = cache_path.with_name(f"{cache_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, cache_path)
    return [Character.from_dict(d) for d in cache[name]]


def hash_name(name: str) -> int:
    """A stable (process-independent) integer from a string."""
    import zlib

    return zlib.crc32(name.encode())


def match_iou(preds: list[np.ndarray], gts: list[np.ndarray]) -> list[float]:
    """Per-GT-character IoU after Hungarian matching (unmatched GT scores 0)."""
    if not gts:
        return []
    if not preds:
        return [0.0] * len(gts)
    m = np.array([[iou(p, g) for p in preds] for g in gts])
    r, c = linear_sum_assignment(-m)
    out = [0.0] * len(gts)
    for i, j in zip(r, c, strict=True):
        out[i] = float(m[i, j])
    return out


def overlay(
    rgb: np.ndarray, pred: np.ndarray, gt: np.ndarray, chars: list[Character]
) -> np.ndarray:
    """RGB debug view: green = true positive, red = false positive, blue = missed; boxes, faces."""
    vis = (rgb.astype(np.float32) * 0.5).astype(np.uint8)
    vis[pred & gt] = (0.5 * vis[pred & gt] + [0, 127, 0]).astype(np.uint8)
    vis[pred & ~gt] = [255, 0, 0]
    vis[~pred & gt] = [0, 80, 255]
    for ch in chars:
        x0, y0, x1, y1 = (int(v) for v in ch.box)
        cv2.rectangle(vis, (x0, y0), (x1 - 1, y1 - 1), (255, 255, 0), 2)
        if ch.face_box is not None:
            x0, y0, x1, y1 = (int(v) for v in ch.face_box)
            cv2.rectangle(vis, (x0, y0), (x1 - 1, y1 - 1), (255, 0, 255), 2)
        for x, y, _ in ch.keypoints.values():
            cv2.circle(vis, (int(x), int(y)), 3, (255, 255, 255), -1)
    return vis


def kind_of(name: str) -> str:
    return (
        "empty" if name.startswith("empty") else "multi" if name.startswith("multi") else "single"
    )


def load_inputs(path: Path, args, cfg: dict, models_dir: Path) -> dict:
    """One image's inputs: ``rgb`` (what is scored against), ``gt`` / ``chars_gt`` (union and
    per-character GT masks), ``image`` (what the segmenter sees) and ``characters``."""
    from kiridashi.preprocess import preprocess_image

    rgb = kio.load_image(path).rgb
    gt, chars_gt = gt_masks(path)
    if args.long_side:
        s = args.long_side / max(rgb.shape[:2])
        size = (round(rgb.shape[1] * s), round(rgb.shape[0] * s))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        gt = cv2.resize(gt.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        chars_gt = [
            cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
            for m in chars_gt
        ]
    image = preprocess_image(rgb, cfg["preprocess"]) if args.preprocess else rgb
    if image.shape[:2] != rgb.shape[:2]:
        raise SystemExit("preprocess resized the image; use --long-side to stay below max_side")
    det_image = image
    if args.preprocess_only == "detect":
        det_image, image = image, rgb
    elif args.preprocess_only == "segment":
        det_image = rgb
    if args.chars == "detector":
        characters = detector_characters(path, det_image, cfg, models_dir, args, rgb)
    else:
        characters = gt_characters(path, rgb, chars_gt)
    return {"rgb": rgb, "gt": gt, "chars_gt": chars_gt, "image": image, "characters": characters}


def plate_evidence(inputs: list[dict], seg_cfg: dict) -> list[tuple[int, np.ndarray | None]]:
    """Each image's (number of background-plate partners, plate evidence or None) among
    ``inputs``, as ``kiridashi extract`` pairs a folder's images
    (:mod:`kiridashi.segmenters.plates`); none when the segment config has no plates (with
    ``--only``, partners come from the images it keeps)."""
    from kiridashi.segmenters import plates

    section = seg_cfg.get("plates")
    if not section or not section.get("enabled"):
        return [(0, None)] * len(inputs)
    cfg = plates.settings(section)
    boxes = [[c.box for c in x["characters"]] for x in inputs]
    views = [plates.view(x["image"], b, cfg) for x, b in zip(inputs, boxes, strict=True)]
    out: list[tuple[int, np.ndarray | None]] = []
    for i, picked in enumerate(plates.pick_partners(views, cfg)):
        others = [(inputs[j]["image"], boxes[j]) for j in picked]
        plate = plates.plate_evidence(inputs[i]["image"], boxes[i], others, cfg) if picked else None
        out.append((len(picked), plate))
    return out


def evaluate(args) -> dict:
    cfg = compose(args.set)
    models_dir = resolve_models_dir(cfg["models_dir"])
    seg_cfg = cfg["segment"]
    paths = sorted(p for p in args.images.glob("*.jpg") if args.only in p.name)
    inputs = [load_inputs(path, args, cfg, models_dir) for path in paths]
    t0 = time.perf_counter()
    plated = plate_evidence(inputs, seg_cfg)  # views, pairing and evidence of the whole set
    plate_seconds = (time.perf_counter() - t0) / max(1, len(inputs))
    rows = []
    for path, x, (partners, plate) in zip(paths, inputs, plated, strict=True):
        rgb, gt, chars_gt, image, characters = (
            x["rgb"], x["gt"], x["chars_gt"], x["image"], x["characters"]
        )  # fmt: skip
        memo = DictMemo()
        t0 = time.perf_counter()
        soft = segment_image(image, characters, seg_cfg, models_dir, memo, plate)
        dt = time.perf_counter() - t0 + (plate_seconds if plate is not None else 0.0)
        preds = [m >= 0.5 for m in soft]
        union = np.logical_or.reduce(preds) if preds else np.zeros(gt.shape, bool)
        kind = kind_of(path.name)
        row = {"image": path.stem, "kind": kind, "n_gt": len(chars_gt), "n_chars": len(characters),
               "faces": sum(c.face_box is not None for c in characters), "partners": partners,
               "seconds": round(dt, 3), "megapixels": round(gt.size / 1e6, 3)}  # fmt: skip
        if kind == "empty":
            row["fg_fraction"] = round(float(union.mean()), 4)
        else:
            bf, bp, br = boundary_scores(union, gt)
            row.update(iou=round(iou(union, gt), 4), boundary_f=round(bf, 4),
                       boundary_p=round(bp, 4), boundary_r=round(br, 4))  # fmt: skip
            if kind == "multi":
                row["char_iou"] = [round(v, 4) for v in match_iou(preds, chars_gt)]
        rows.append(row)
        log.info("%s %s", path.stem[:60], {k: v for k, v in row.items() if k != "image"})
        if args.overlays:
            args.overlays.mkdir(parents=True, exist_ok=True)
            vis = overlay(rgb, union, gt, characters)
            cv2.imwrite(str(args.overlays / f"{path.stem}.jpg"), vis[:, :, ::-1])
    return summarize(rows, args, seg_cfg)


def summarize(rows: list[dict], args, seg_cfg: dict) -> dict:
    def mean(vals):
        vals = list(vals)
        return round(float(np.mean(vals)), 4) if vals else None

    summary: dict = {}
    for kind in ("single", "multi"):
        sub = [r for r in rows if r["kind"] == kind]
        if sub:
            summary[kind] = {
                "images": len(sub),
                "mean_iou": mean(r["iou"] for r in sub),
                "min_iou": round(min(r["iou"] for r in sub), 4),
                "mean_boundary_f": mean(r["boundary_f"] for r in sub),
                "images_iou_below_0.8": sum(r["iou"] < 0.8 for r in sub),
            }
            if kind == "multi":
                summary[kind]["mean_char_iou"] = mean(v for r in sub for v in r["char_iou"])
    empty = [r for r in rows if r["kind"] == "empty"]
    if empty:
        summary["empty"] = {
            "images": len(empty),
            "mean_fg_fraction": mean(r["fg_fraction"] for r in empty),
        }
    summary["seconds_per_image"] = mean(r["seconds"] for r in rows)
    summary["seconds_per_megapixel"] = mean(r["seconds"] / r["megapixels"] for r in rows)
    scored = sorted((r for r in rows if "iou" in r), key=lambda r: r["iou"])
    summary["worst"] = [
        {"image": r["image"], "iou": r["iou"], "boundary_f": r["boundary_f"]} for r in scored[:8]
    ]
    return {
        "args": {
            "chars": args.chars,
            "preprocess": args.preprocess,
            "preprocess_only": args.preprocess_only,
            "set": args.set,
            "long_side": args.long_side,
            "only": args.only,
        },  # fmt: skip
        "segment_config": seg_cfg,
        "summary": summary,
        "rows": rows,
    }


def headline(summary: dict) -> dict:
    """The numbers of an ablation row: single / multi IoU and boundary F, seconds per image."""
    single, multi = summary.get("single", {}), summary.get("multi", {})
    return {
        "single_iou": single.get("mean_iou"),
        "single_boundary_f": single.get("mean_boundary_f"),
        "multi_iou": multi.get("mean_iou"),
        "multi_boundary_f": multi.get("mean_boundary_f"),
        "seconds_per_image": summary.get("seconds_per_image"),
    }


def ablation(args, full: dict) -> dict:
    """Headline numbers with each of ``args.ablate`` switched off (``segment.<step>.enabled``)."""
    table = {"all steps": headline(full["summary"])}
    for step in args.ablate:
        sub = argparse.Namespace(**vars(args))
        sub.set = [*args.set, f"segment.{step}.enabled=false"]
        sub.overlays = None
        table[f"without {step}"] = headline(evaluate(sub)["summary"])
        print(step, table[f"without {step}"], flush=True)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=Path, default=DEV)
    parser.add_argument("--chars", choices=("gt", "detector"), default="gt")
    parser.add_argument(
        "--preprocess", action="store_true", help="apply the preprocess stage first"
    )
    parser.add_argument(
        "--set",
        nargs="*",
        action="extend",
        default=[],
        help="Hydra overrides, e.g. segment=isnetis (repeatable)",
    )
    parser.add_argument(
        "--preprocess-only",
        choices=("detect", "segment"),
        default=None,
        help="with --preprocess: feed the preprocessed image to this step only (the other: raw)",
    )
    parser.add_argument("--only", default="", help="only images whose name contains this")
    parser.add_argument("--long-side", type=int, default=0, help="resize images to this long side")
    parser.add_argument("--overlays", type=Path, default=None, help="write debug overlays here")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/segment_eval.json")
    parser.add_argument("--ablate", nargs="*", default=[], help="steps to switch off one by one")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    result = evaluate(args)
    if args.ablate:
        result["ablation"] = ablation(args, result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
