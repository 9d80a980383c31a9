"""Detection: anime faces (LBP cascade, animeface), MediaPipe face/pose hints, optional YOLO.

:func:`detect_image` runs every enabled detector of ``cfg["detectors"]`` at every scale of
``cfg["scales"]`` (each (detector, scale, params) result cached separately through ``memo``),
fuses the boxes (weighted boxes fusion), derives one box per character and adds pose landmarks
per character. All coordinates are pixels of the given image, boxes XYXY.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kiridashi.detectors.base import build, detect_at_scale
from kiridashi.detectors.characters import build_characters
from kiridashi.detectors.fusion import fuse
from kiridashi.types import Character, Detection

log = logging.getLogger(__name__)


@dataclass
class DetectResult:
    """characters: one per character, left to right; detections: fused face/person boxes."""

    characters: list[Character]
    detections: list[Detection] = field(default_factory=list)
    raw_counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "characters": [c.to_dict() for c in self.characters],
            "detections": [d.to_dict() for d in self.detections],
            "raw_counts": dict(self.raw_counts),
        }

    @classmethod
    def from_dict(cls, d: dict) -> DetectResult:
        return cls(
            characters=[Character.from_dict(c) for c in d["characters"]],
            detections=[Detection.from_dict(x) for x in d.get("detections", [])],
            raw_counts=dict(d.get("raw_counts", {})),
        )


def _work_scale(image: np.ndarray, max_side: int) -> float:
    long_side = max(image.shape[:2])
    return 1.0 if max_side <= 0 or long_side <= max_side else max_side / long_side


def raw_detections(
    image: np.ndarray, cfg: dict, models_dir: Path, memo: Any
) -> dict[tuple[str, float], list[Detection]]:
    """(detector, scale) -> detections, each cached on its own (adding a scale adds runs only)."""
    base = _work_scale(image, int(cfg.get("max_side", 0)))
    runs: dict[tuple[str, float], list[Detection]] = {}
    for name, dcfg in cfg["detectors"].items():
        if not dcfg.get("enabled", True):
            continue
        detector = build(name, dcfg, models_dir=str(models_dir))
        if detector is None:  # model file missing: warned once by build()
            continue
        for scale in cfg["scales"]:
            scale = float(scale)

            def compute(detector=detector, scale=scale) -> list[dict]:
                return [d.to_dict() for d in detect_at_scale(detector, image, base * scale)]

            params = {"scale": scale, "max_side": cfg.get("max_side"), "detector": dcfg}
            found = memo(f"raw.{name}", params, compute)
            runs[(name, scale)] = [Detection.from_dict(d) for d in found]
    return runs


def add_pose(
    image: np.ndarray, characters: list[Character], cfg: dict, memo: Any
) -> list[Character]:
    """Pose landmarks for each character, run on the character's crop (cached per box)."""
    pose_cfg = cfg.get("pose") or {}
    if not pose_cfg.get("enabled", False) or not characters:
        return characters
    pose = build("pose", pose_cfg)
    if pose is None:
        return characters
    for ch in characters:
        box = tuple(round(v, 1) for v in ch.box)

        def compute(box=box) -> dict:
            return {k: list(v) for k, v in pose.landmarks(image, box).items()}

        points = memo("pose", {"box": list(box), "pose": pose_cfg}, compute)
        if points:
            ch.keypoints.update({k: tuple(v) for k, v in points.items()})
            ch.detectors = sorted({*ch.detectors, "pose"})
    return characters


def detect_image(image: np.ndarray, cfg: dict, models_dir: Path, memo: Any) -> DetectResult:
    """Characters in ``image`` (HxWx3 uint8 RGB); see the module docstring."""
    h, w = image.shape[:2]
    runs = raw_detections(image, cfg, models_dir, memo)
    weights = {n: float(d.get("weight", 1.0)) for n, d in cfg["detectors"].items()}
    fcfg = cfg.get("fusion", {})
    fused = fuse(
        {k: v for k, v in runs.items() if v},
        (h, w),
        weights,
        iou_thr=float(fcfg.get("iou_thr", 0.5)),
        skip_box_thr=float(fcfg.get("skip_box_thr", 0.0)),
        conf_type=str(fcfg.get("conf_type", "avg")),
    )
    characters = build_characters(fused, (h, w), cfg.get("character", {}))
    characters = add_pose(image, characters, cfg, memo)
    counts: dict[str, int] = {}
    for (name, _), dets in runs.items():
        counts[name] = counts.get(name, 0) + len(dets)
    return DetectResult(characters, [d for d, _ in fused], counts)
