"""Debug overlays: face boxes, face points, pose bones and the mask outline on the input image.

Keypoints outside the character's mask are drawn as red crosses and listed, which answers "why
do pose points appear outside the mask?" per image. Coordinates are full-resolution pixels as in
``extraction_results.json``; images are HxWx3 uint8 RGB.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np

from kiridashi import io as kio
from kiridashi.types import confident

log = logging.getLogger(__name__)

# MediaPipe Pose bones by landmark name (the "pose." prefix is added when looking points up)
POSE_BONES = (
    ("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "left_ear"),
    ("right_eye", "right_ear"), ("mouth_left", "mouth_right"),
    ("left_shoulder", "right_shoulder"), ("left_shoulder", "left_elbow"),
    ("left_elbow", "left_wrist"), ("right_shoulder", "right_elbow"),
    ("right_elbow", "right_wrist"), ("left_wrist", "left_index"), ("right_wrist", "right_index"),
    ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"), ("left_hip", "right_hip"),
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("right_hip", "right_knee"),
    ("right_knee", "right_ankle"),
)  # fmt: skip
MIN_KEYPOINT_CONFIDENCE = 0.3
COLOURS = ((0, 200, 255), (255, 160, 0), (120, 255, 80), (255, 80, 200))  # RGB per character


def keypoints_outside(character: dict, mask: np.ndarray, min_conf: float = MIN_KEYPOINT_CONFIDENCE):
    """Names of the character's confident keypoints that fall outside ``mask`` (HxW bool)."""
    from kiridashi.checks import keypoint_names_outside

    return keypoint_names_outside(character, mask, min_conf, 0)[0]


def draw_overlay(
    rgb: np.ndarray,
    characters: list[dict],
    mask: np.ndarray | None,
    outside: dict[str, list[str]] | None = None,
) -> np.ndarray:
    """A copy of ``rgb`` with mask outline, boxes, face points and pose bones drawn on it.

    Keypoints listed in ``outside`` ({character index: [names]}, as the quality report's
    ``keypoints_outside``) are drawn as red crosses; without it, confident points outside the
    union ``mask`` are.
    """
    canvas = rgb.copy()
    h, w = canvas.shape[:2]
    thick = max(1, round(max(h, w) / 600))
    if mask is not None and mask.any():
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, contours, -1, (255, 0, 255), thick)
    for k, ch in enumerate(characters):
        colour = COLOURS[k % len(COLOURS)]
        x0, y0, x1, y1 = (int(round(v)) for v in ch.get("character_box") or ch["box"])
        cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, thick)
        if ch.get("face_box"):
            fx0, fy0, fx1, fy1 = (int(round(v)) for v in ch["face_box"])
            cv2.rectangle(canvas, (fx0, fy0), (fx1, fy1), (255, 255, 0), thick)
        pts = {n: v for n, v in ch.get("keypoints", {}).items()}
        for a, b in POSE_BONES:
            pa, pb = pts.get(f"pose.{a}"), pts.get(f"pose.{b}")
            if pa and pb and _confident(pa) and _confident(pb):
                cv2.line(canvas, _xy(pa), _xy(pb), colour, thick, cv2.LINE_AA)
        if outside is not None:
            crossed = set(outside.get(str(ch.get("index", k)), []))
        else:
            crossed = set(keypoints_outside(ch, mask)) if mask is not None else set()
        for name, p in pts.items():
            if not _confident(p):
                continue
            if name in crossed:
                c, r = _xy(p), 3 * thick + 2
                cv2.line(canvas, (c[0] - r, c[1] - r), (c[0] + r, c[1] + r), (255, 0, 0), thick + 1)
                cv2.line(canvas, (c[0] - r, c[1] + r), (c[0] + r, c[1] - r), (255, 0, 0), thick + 1)
            else:
                dot = (255, 255, 0) if name.startswith("face.") else colour
                cv2.circle(canvas, _xy(p), 2 * thick + 1, dot, -1, cv2.LINE_AA)
    return canvas


def _confident(p) -> bool:
    return confident(p, MIN_KEYPOINT_CONFIDENCE)


def _xy(p) -> tuple[int, int]:
    return int(round(p[0])), int(round(p[1]))


def overlay_results(results_path: Path, out_dir: Path | None = None) -> list[dict]:
    """Write ``overlays/REL.png`` for every processed image; returns per-image outside-mask lists.

    A keypoint is outside when it lies beyond its own character's mask (from the crop's alpha)
    by more than the boundary tolerance, as in the quality report.
    """
    from kiridashi.checks import keypoint_names_outside
    from kiridashi.crops import character_masks
    from kiridashi.metrics import boundary_tolerance

    results_path = Path(results_path)
    doc = kio.read_document(results_path, "an extraction_results.json", "images")
    root = results_path.parent
    out_dir = Path(out_dir) if out_dir else root / "overlays"
    input_dir = Path(doc.get("input_dir") or ".")
    summary = []
    for rec in doc["images"]:
        if rec.get("status") != "ok":
            continue
        try:
            rgb = kio.load_image(input_dir / rec["source"]).rgb
            mask, _ = kio.load_mask(root / rec["mask"])
        except (kio.BadInput, FileNotFoundError) as exc:
            log.warning("overlay: %s: %s", rec["source"], exc)
            continue
        chars = rec.get("characters", [])
        tolerance = round(boundary_tolerance(mask.shape))
        outside = {
            str(c["index"]): keypoint_names_outside(c, m, MIN_KEYPOINT_CONFIDENCE, tolerance)[0]
            for c, m in zip(chars, character_masks(rec, root, mask), strict=True)
        }
        rel = rec["mask"].split("/", 1)[1]
        kio.atomic_write_png(out_dir / rel, draw_overlay(rgb, chars, mask, outside))
        summary.append({"source": rec["source"], "overlay": str(out_dir / rel), "outside": outside})
    return summary


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("overlay", help="draw boxes, face points, pose bones and mask outlines")
    p.add_argument("results", help="path to extraction_results.json")
    p.add_argument("--out", help="folder for the overlay PNGs (default: overlays/ beside it)")
    p.set_defaults(func=cmd_overlay)


def cmd_overlay(args: argparse.Namespace) -> int:
    summary = overlay_results(Path(args.results), Path(args.out) if args.out else None)
    for item in summary:
        outside = {k: v for k, v in item["outside"].items() if v}
        note = f"  points outside the mask: {outside}" if outside else ""
        print(f"{item['overlay']}{note}")
    return 0
