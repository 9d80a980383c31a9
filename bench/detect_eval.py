"""Detection quality and speed on the dev set (``../shared/datasets/dev``).

    python -m bench.detect_eval [--images DIR] [--set detect.key=value ...] [--no-ablation]
                                [--memo FILE] [--limit N]

Runs :func:`kiridashi.detectors.detect_image` (default config + Hydra overrides, a dict memo) on
every dev image after the configured preprocessing and reports, per subset (single / multi /
empty):

- character recall: GT characters matched one-to-one by a predicted character box with
  IoU >= 0.5 (GT boxes = bounding boxes of ``alpha/NAME_gt_<i>.png`` per-character masks, else
  of ``NAME_gt.png``),
- precision: matched / predicted characters (every character predicted on an empty scene is a
  false one),
- face rate: share of images with a character where a face was found (any character with a
  face box; ``face_rate_on_gt`` also requires that character to match a GT character),
- seconds per image (cold memo; ``seconds_per_image_1280x720`` on 1280x720 images only),
- ablation: the same metrics with each detector (and the foreground map) disabled, reusing the
  cached raw detections.

Writes bench/results/detect_eval.json. ``--memo FILE`` keeps raw results between runs (pickle)
so that tuning the character step does not rerun the detectors; timings are then not cold.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import pickle
import time
from pathlib import Path

import numpy as np

from kiridashi import io as kio
from kiridashi.cache import params_digest
from kiridashi.config import compose
from kiridashi.detectors import DetectResult, detect_image
from kiridashi.metrics import mask_box, match_boxes
from kiridashi.preprocess import preprocess_image

REPO = Path(__file__).resolve().parents[1]
DEV = REPO.parent / "shared" / "datasets" / "dev" / "images"
MODELS = REPO.parent / "shared" / "models"
MATCH_IOU = 0.5


class DictMemo:
    """``memo(kind, params, compute)`` backed by a dict per image (optionally pickled)."""

    def __init__(self, store: dict | None = None):
        self.store = store if store is not None else {}
        self.image = ""
        self.computed = 0

    def __call__(self, kind: str, params: dict, compute):
        key = (self.image, kind, params_digest(params))
        if key not in self.store:
            self.store[key] = compute()
            self.computed += 1
        return self.store[key]


def kind_of(name: str) -> str:
    if name.startswith("empty"):
        return "empty"
    return "multi" if name.startswith("multi") else "single"


def gt_boxes(img_path: Path) -> list[tuple[int, int, int, int]]:
    """XYXY GT character boxes (original image pixels)."""
    alpha = img_path.parent.parent / "alpha"
    parts = sorted(alpha.glob(f"{img_path.stem}_gt_[0-9]*.png"))
    masks = [kio.load_mask(p)[0] for p in parts]
    if not masks:
        masks = [kio.load_mask(img_path.with_name(f"{img_path.stem}_gt.png"))[0]]
    return [b for m in masks if (b := mask_box(m)) is not None]


def score_image(res: DetectResult, gts: list, factor: float) -> dict:
    """factor: original px per detection px."""
    pred = [tuple(v * factor for v in c.box) for c in res.characters]
    matches = match_boxes(pred, gts, MATCH_IOU)
    matched_pred = {i for i, _, _ in matches}
    return {
        "gt": len(gts),
        "pred": len(pred),
        "matched": len(matches),
        "face": any(c.face_box is not None for c in res.characters),
        "face_on_gt": any(res.characters[i].face_box is not None for i in matched_pred),
        "faceless": sum(c.face_box is None for c in res.characters),
        "ious": [round(v, 3) for _, _, v in matches],
    }


def summarise(rows: list[dict]) -> dict:
    out: dict = {}
    for kind in ("single", "multi", "empty", "all"):
        sub = [r for r in rows if kind == "all" or r["kind"] == kind]
        if not sub:
            continue
        gt = sum(r["gt"] for r in sub)
        pred = sum(r["pred"] for r in sub)
        matched = sum(r["matched"] for r in sub)
        with_chars = [r for r in sub if r["gt"]]
        out[kind] = {
            "images": len(sub),
            "gt_characters": gt,
            "predicted": pred,
            "matched": matched,
            "recall": round(matched / gt, 4) if gt else None,
            "precision": round(matched / pred, 4) if pred else None,
            "false_characters": pred - matched,
            "face_rate": round(np.mean([r["face"] for r in with_chars]), 4) if with_chars else None,
            "face_rate_on_gt": (
                round(np.mean([r["face_on_gt"] for r in with_chars]), 4) if with_chars else None
            ),
        }
    return out


def load_dev(images: Path, cfg: dict, limit: int | None) -> list[tuple[Path, np.ndarray, float]]:
    paths = sorted(p for p in images.glob("*.jpg") if not p.stem.endswith("_gt"))[:limit]
    out = []
    for path in paths:
        rgb = kio.load_image(path).rgb
        image = preprocess_image(rgb, cfg["preprocess"])
        out.append((path, image, rgb.shape[1] / image.shape[1]))
    return out


def run(data, dcfg: dict, models: Path, memo: DictMemo, gts: dict) -> list[dict]:
    rows = []
    for path, image, factor in data:
        memo.image = path.name
        before = memo.computed
        t0 = time.perf_counter()
        res = detect_image(image, dcfg, models, memo)
        dt = time.perf_counter() - t0
        row = {"image": path.name, "kind": kind_of(path.name), "hw": list(image.shape[:2])}
        row.update(score_image(res, gts[path.name], factor))
        row.update(seconds=round(dt, 4), cold=memo.computed > before, raw=res.raw_counts)
        row["characters"] = [
            {"box": c.box, "face": c.face_box is not None, "score": c.score, "det": c.detectors}
            for c in res.characters
        ]
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--images", type=Path, default=DEV)
    parser.add_argument("--models", type=Path, default=MODELS)
    parser.add_argument(
        "--set", nargs="*", default=[], help="Hydra overrides, e.g. detect.work_side=640"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/detect_eval.json")
    parser.add_argument("--memo", type=Path, default=None, help="pickle file for raw results")
    parser.add_argument("--no-ablation", action="store_true")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("-v", "--verbose", action="store_true", help="list misses and false hits")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    cfg = compose(args.set)
    dcfg = cfg["detect"]
    data = load_dev(args.images, cfg, args.limit)
    gts = {p.name: gt_boxes(p) for p, _, _ in data}
    store = pickle.loads(args.memo.read_bytes()) if args.memo and args.memo.is_file() else {}
    memo = DictMemo(store)
    rows = run(data, dcfg, args.models, memo, gts)
    summary = summarise(rows)
    cold = [r for r in rows if r["cold"]]
    n_scales = len(dcfg.get("scales", [1.0]))
    summary["seconds_per_image"] = round(float(np.mean([r["seconds"] for r in rows])), 4)
    hd = [r["seconds"] for r in cold if r["hw"] == [720, 1280]]
    summary["seconds_per_image_1280x720"] = round(float(np.mean(hd)), 4) if hd else None
    summary["seconds_per_image_per_scale_1280x720"] = (
        round(float(np.mean(hd)) / n_scales, 4) if hd else None
    )
    summary["timed_images_cold"] = len(cold)
    summary["scales"] = dcfg.get("scales")
    summary["overrides"] = args.set

    ablation = {}
    if not args.no_ablation:
        names = [n for n, d in dcfg["detectors"].items() if d.get("enabled", True)]
        for name in [*names, "foreground"]:
            acfg = copy.deepcopy(dcfg)
            (acfg["detectors"][name] if name != "foreground" else acfg["foreground"])["enabled"] = (
                False
            )
            s = summarise(run(data, acfg, args.models, memo, gts))
            ablation[f"without_{name}"] = {
                k: {m: s[k][m] for m in ("recall", "precision", "face_rate")} for k in s
            }
    if args.memo:
        args.memo.write_bytes(pickle.dumps(memo.store))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"summary": summary, "ablation": ablation, "images": rows}
    args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(json.dumps({"summary": summary, "ablation": ablation}, indent=1, default=float))
    if args.verbose:
        for r in rows:
            if r["matched"] < r["gt"] or r["pred"] > r["matched"]:
                print(f"  {r['image'][:70]:70s} gt={r['gt']} pred={r['pred']} "
                      f"matched={r['matched']} ious={r['ious']} raw={r['raw']}")  # fmt: skip


if __name__ == "__main__":
    main()
