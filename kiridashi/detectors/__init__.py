"""Detection: anime faces (LBP cascade, animeface), MediaPipe face/pose hints, optional YOLO.

:func:`detect_image` runs every enabled scene detector of ``cfg["detectors"]`` at every scale of
``cfg["scales"]`` on a copy of the image whose long side is ``work_side * scale`` px (each
(detector, scale, detector params) result is cached on its own through ``memo``, so adding a
scale computes only that scale), fuses the boxes (weighted boxes fusion, supporters recorded),
grows one box per character from faces and a foreground map (plus face-less foreground / person
proposals), takes a second look for the faces of face-less characters, and adds per-character
keypoints (MediaPipe Pose on each character's crop). A scene left with no character gets a last
look for small ones (:mod:`kiridashi.detectors.small_faces`: faces upscaled, each confirmed by a
figure below it). Last, a box that ends at its character's knees reaches down to the legs the
pose implies (``character.leg_room``; pose then runs again on the grown box, which may lower it
once more). The foreground map comes first: detectors
with ``within_foreground: true`` (the slow animeface) search only around it.
All returned coordinates are pixels of the given image; boxes are XYXY.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from kiridashi.detectors.base import (
    build,
    build_enabled,
    constructor_params,
    detect_at_scale,
)
from kiridashi.detectors.characters import (
    Foreground,
    build_characters,
    pose_leg_room,
    settle_pending,
)
from kiridashi.detectors.fusion import fuse
from kiridashi.detectors.recheck import find_face
from kiridashi.detectors.small_faces import small_characters
from kiridashi.types import Character, Detection

log = logging.getLogger(__name__)

T = TypeVar("T")
Memo = Callable[[str, dict, Callable[[], T]], T]

__all__ = ["DetectResult", "detect_image", "raw_detections"]


@dataclass
class DetectResult:
    """characters: one per character, left to right; detections: fused face/person boxes;
    raw_counts: number of raw detections per detector (all scales together);
    support: per fused detection, ``{"detectors": [...], "scales": [...]}`` that support it;
    rejected: face-less candidates not made characters, ``{"box", "score", "source", "reason"}``
    (box XYXY, image px)."""

    characters: list[Character]
    detections: list[Detection] = field(default_factory=list)
    raw_counts: dict[str, int] = field(default_factory=dict)
    support: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "characters": [c.to_dict() for c in self.characters],
            "detections": [d.to_dict() for d in self.detections],
            "raw_counts": dict(self.raw_counts),
            "support": [dict(s) for s in self.support],
            "rejected": [dict(r) for r in self.rejected],
        }

    @classmethod
    def from_dict(cls, d: dict) -> DetectResult:
        return cls(
            characters=[Character.from_dict(c) for c in d.get("characters", [])],
            detections=[Detection.from_dict(x) for x in d.get("detections", [])],
            raw_counts={k: int(v) for k, v in d.get("raw_counts", {}).items()},
            support=[dict(s) for s in d.get("support", [])],
            rejected=[dict(r) for r in d.get("rejected", [])],
        )


PRIMARY_VIEW = "preprocessed"


def work_factor(image_hw: tuple[int, int], work_side: int, scale: float) -> float:
    """Resize factor for one scale: the long side becomes ``work_side * scale`` (0: native)."""
    base = 1.0 if work_side <= 0 else work_side / float(max(image_hw))
    return base * float(scale)


def foreground_region(fg: Foreground | None, cfg: dict) -> tuple[int, int, int, int] | None:
    """XYXY int box (image px) around the foreground - permissive map >= ``threshold`` - grown
    by ``margin`` of the image's long side; None (search the whole image) without a map or
    without foreground pixels. ``cfg`` is ``detect.foreground_region``."""
    if fg is None:
        return None
    ys, xs = np.nonzero(fg.any_map >= float(cfg.get("threshold", 0.3)))
    if len(xs) == 0:
        return None
    h, w = fg.image_hw
    pad = float(cfg.get("margin", 0.05)) * max(h, w)
    x0, y0, x1, y1 = fg.to_image((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    return (
        int(max(0, np.floor(x0 - pad))),
        int(max(0, np.floor(y0 - pad))),
        int(min(w, np.ceil(x1 + pad))),
        int(min(h, np.ceil(y1 + pad))),
    )


def raw_detections(
    views: dict[str, np.ndarray],
    cfg: dict,
    models_dir: Path,
    memo: Memo,
    fg: Foreground | None = None,
) -> dict[tuple[str, float, str], list[Detection]]:
    """(detector, scale, view) -> detections in full-image pixels, each run cached on its own.

    ``views`` maps a view name to an HxWx3 uint8 RGB image; all views are the same picture at
    the same size (e.g. ``preprocessed`` and ``original``: CLAHE finds some faces and hides
    others); a detector entry's own ``views`` list picks among them (:func:`detector_views`). A
    detector with ``within_foreground: true`` searches only
    :func:`foreground_region` of ``fg`` (at the scale of the whole image), which saves the slow
    ones most of the frame."""
    work_side = int(cfg.get("work_side", 0))
    scales = [float(s) for s in cfg.get("scales", [1.0])]
    detectors = build_enabled(cfg.get("detectors", {}), models_dir=Path(models_dir))
    fg_region = foreground_region(fg, cfg.get("foreground_region") or {})
    runs: dict[tuple[str, float, str], list[Detection]] = {}
    for name, det in detectors.items():
        if getattr(det, "per_character", False):
            continue
        params = constructor_params(cfg["detectors"][name])
        region = fg_region if cfg["detectors"][name].get("within_foreground", False) else None
        for view, image in detector_views(name, cfg, views).items():
            for scale in scales:
                factor = work_factor(image.shape[:2], work_side, scale)

                def compute(det=det, image=image, factor=factor, scale=scale, region=region):
                    found = detect_at_scale(det, image, factor, scale, region)
                    return [d.to_dict() for d in found]

                key = {"detector": name, "params": params, "scale": scale, "work_side": work_side}
                if view != PRIMARY_VIEW:
                    key["view"] = view
                if region is not None:
                    key["region"] = list(region)
                found = memo(f"raw.{name}", key, compute)
                runs[(name, scale, view)] = [Detection.from_dict(d) for d in found]
    return runs


def search_views(
    image: np.ndarray, cfg: dict, other_views: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """View name -> image for each view of ``cfg["views"]`` (the ``detect`` section):
    ``image`` is the ``preprocessed`` view, ``other_views`` the others (same HxW). Raises
    ValueError for a view with no image or of another shape."""
    available = {PRIMARY_VIEW: image, **(other_views or {})}
    names = [str(v) for v in cfg.get("views", [PRIMARY_VIEW])]
    if unknown := [v for v in names if v not in available]:
        raise ValueError(f"detect.views: no image for {unknown} (have {sorted(available)})")
    for other in (other_views or {}).values():
        if other.shape != image.shape:
            raise ValueError(f"detect view of shape {other.shape} != image {image.shape}")
    return {v: available[v] for v in names}


def detector_views(name: str, cfg: dict, views: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The views of ``views`` (``detect.views``) that detector ``name`` searches: those its
    entry's ``views`` list names, or all of them when it has no list or names none of them (so
    ``detect.views=[preprocessed]`` alone switches every detector to that view)."""
    wanted = [str(v) for v in cfg["detectors"][name].get("views") or [] if str(v) in views]
    return {v: views[v] for v in wanted} if wanted else views


def foreground(image: np.ndarray, cfg: dict, memo: Memo) -> Foreground | None:
    """The foreground maps (``cfg["foreground"]``, cached as k x h x w uint8), or None."""
    fcfg = cfg.get("foreground") or {}
    if not fcfg.get("enabled", False):
        return None
    model = build("foreground", fcfg)
    if model is None:
        return None

    def compute() -> np.ndarray:
        return np.round(model.probability(image) * 255).astype(np.uint8)

    maps = np.asarray(memo("foreground", constructor_params(fcfg), compute), np.float32) / 255.0
    maps = maps.reshape(-1, *maps.shape[-2:])
    return Foreground(maps.mean(axis=0), image.shape[:2], maps.max(axis=0))


def add_character_keypoints(
    image: np.ndarray, characters: list[Character], cfg: dict, models_dir: Path, memo: Memo
) -> dict[str, int]:
    """Run the per-character detectors (pose) on each character box; returns raw counts."""
    counts: dict[str, int] = {}
    for name, dcfg in (cfg.get("detectors") or {}).items():
        if not dcfg or not dcfg.get("enabled", True):
            continue
        det = build(name, dcfg, models_dir=Path(models_dir))
        if det is None or not getattr(det, "per_character", False):
            continue
        params = constructor_params(dcfg)
        counts[name] = 0
        for ch in characters:
            box = tuple(round(float(v), 1) for v in ch.box)

            def compute(det=det, box=box) -> list[dict]:
                return [d.to_dict() for d in det.detect_in_box(image, box)]

            found = memo(f"char.{name}", {"params": params, "box": list(box)}, compute)
            for d in found:
                counts[name] += 1
                ch.keypoints.update({k: tuple(v) for k, v in d["keypoints"].items()})
                ch.detectors = sorted({*ch.detectors, name})
    return counts


def recheck_faceless(
    image: np.ndarray, characters: list[Character], cfg: dict, models_dir: Path, memo: Memo
) -> None:
    """Second look for faces of face-less characters (``cfg["face_recheck"]``), in place."""
    rcfg = cfg.get("face_recheck") or {}
    if not rcfg.get("enabled", False):
        return
    dcfgs = cfg.get("detectors") or {}
    names = [n for n in rcfg.get("detectors", []) if n in dcfgs]
    dets = {n: d for n in names if (d := build(n, dcfgs[n], models_dir=Path(models_dir)))}
    if not dets:
        return
    params = {
        "detectors": {n: constructor_params(dcfgs[n]) for n in dets},
        "crop_top": float(rcfg.get("crop_top", 0.6)),
        "widths_px": [int(v) for v in rcfg.get("widths_px", [160])],
        "min_score": float(rcfg.get("min_score", 0.5)),
        "margin": float(rcfg.get("margin", 0.1)),
    }
    for ch in characters:
        if ch.face_box is not None:
            continue
        box = tuple(round(float(v), 1) for v in ch.box)

        def compute(box=box) -> dict | None:
            face = find_face(
                image,
                box,
                dets,
                params["crop_top"],
                params["widths_px"],
                params["min_score"],
                params["margin"],
            )
            return face.to_dict() if face is not None else None

        found = memo("face_recheck", {**params, "box": list(box)}, compute)
        if found is None:
            continue
        face = Detection.from_dict(found)
        fb = face.box
        hair = float((cfg.get("character") or {}).get("hair_top", 0.45)) * (fb[3] - fb[1])
        ch.box = (  # the head belongs to the character
            round(max(0.0, min(ch.box[0], fb[0])), 2),
            round(max(0.0, min(ch.box[1], fb[1] - hair)), 2),
            round(min(float(image.shape[1]), max(ch.box[2], fb[2])), 2),
            ch.box[3],
        )
        ch.face_box = tuple(round(v, 2) for v in fb)
        ch.keypoints.update(face.keypoints)
        ch.detectors = sorted({*ch.detectors, face.detector})
        ch.score = round(max(ch.score, float(rcfg.get("score", 0.6)) * face.score), 4)


def make_leg_room(characters: list[Character], ccfg: dict, image_h: int) -> list[Character]:
    """Lower (in place) the bottom of each character's box to the legs its pose implies
    (:func:`~kiridashi.detectors.characters.pose_leg_room`, ``character.leg_room``); returns
    the characters whose box grew."""
    lcfg = ccfg.get("leg_room") or {}
    if not lcfg.get("enabled", False):
        return []
    grown = []
    for ch in characters:
        bottom = pose_leg_room(
            ch, float(lcfg["shin_thighs"]), float(lcfg["min_confidence"]), image_h
        )
        if bottom is not None:
            ch.box = (ch.box[0], ch.box[1], ch.box[2], round(bottom, 2))
            grown.append(ch)
    return grown


def look_for_small_characters(
    image: np.ndarray, cfg: dict, models_dir: Path, memo: Memo
) -> list[Character]:
    """The characters of :mod:`kiridashi.detectors.small_faces` (``cfg["small_faces"]``) for
    a scene where nothing was found; [] when it is off or its detectors are not available."""
    scfg = cfg.get("small_faces") or {}
    dcfgs = cfg.get("detectors") or {}
    net_name = str(scfg.get("figure_detector", ""))
    if not scfg.get("enabled", False) or net_name not in dcfgs:
        return []
    names = [n for n in scfg.get("detectors", []) if n in dcfgs]
    faces = {n: d for n in names if (d := build(n, dcfgs[n], models_dir=Path(models_dir)))}
    net = build(net_name, dcfgs[net_name], models_dir=Path(models_dir))
    if not faces or net is None:
        return []
    hair_top = float((cfg.get("character") or {}).get("hair_top", 0.45))
    params = {
        **{k: v for k, v in scfg.items() if k not in ("enabled", "detectors", "figure_detector")},
        "detectors": {n: constructor_params(dcfgs[n]) for n in faces},
        "figure_detector": constructor_params(dcfgs[net_name]),
        "hair_top": hair_top,
    }

    def compute() -> list[dict]:
        found = small_characters(image, faces, net, scfg, hair_top)
        return [c.to_dict() for c in found]

    return [Character.from_dict(c) for c in memo("small_faces", params, compute)]


def detect_image(
    image: np.ndarray,
    cfg: dict,
    models_dir: Path,
    memo: Memo,
    other_views: dict[str, np.ndarray] | None = None,
) -> DetectResult:
    """Characters in ``image`` (HxWx3 uint8 RGB); ``cfg`` is the ``detect`` config section.

    See the module docstring. ``memo(kind, params, compute)`` caches sub-results per image.
    ``other_views``: the same picture otherwise prepared (same HxW), e.g. ``{"original":
    without denoise and CLAHE}``; the scene detectors search each view of ``cfg["views"]``
    (``image`` is the ``preprocessed`` view) and their boxes are fused together.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"detect_image needs an HxWx3 uint8 RGB image, got {image.shape}")
    h, w = image.shape[:2]
    fg = foreground(image, cfg, memo)
    runs = raw_detections(search_views(image, cfg, other_views), cfg, models_dir, memo, fg)
    weights = {n: float(d.get("weight", 1.0)) for n, d in (cfg.get("detectors") or {}).items()}
    fcfg = cfg.get("fusion") or {}
    fused = fuse(
        {k: v for k, v in runs.items() if v},
        (h, w),
        weights,
        iou_thr=float(fcfg.get("iou_thr", 0.4)),
        skip_box_thr=float(fcfg.get("skip_box_thr", 0.0)),
        conf_type=str(fcfg.get("conf_type", "avg")),
    )
    rejected: list[dict] = []
    pending: list[Character] = []
    ccfg = cfg.get("character") or {}
    characters = build_characters(fused, (h, w), ccfg, fg, rejected, pending)
    counts: dict[str, int] = {}
    for (name, *_), dets in runs.items():
        counts[name] = counts.get(name, 0) + len(dets)
    recheck_faceless(image, characters, cfg, models_dir, memo)
    counts.update(add_character_keypoints(image, characters, cfg, models_dir, memo))
    if pending:
        characters = settle_pending(characters, pending, ccfg, rejected)
    if not characters and (characters := look_for_small_characters(image, cfg, models_dir, memo)):
        counts.update(add_character_keypoints(image, characters, cfg, models_dir, memo))
    grown = make_leg_room(characters, ccfg, h)
    if grown:  # pose again on the grown boxes: it now sees the shins, and may move the feet
        for name, n in add_character_keypoints(image, grown, cfg, models_dir, memo).items():
            counts[name] = counts.get(name, 0) + n
        make_leg_room(grown, ccfg, h)
    support = [{"detectors": f.detectors, "scales": f.scales} for f in fused]
    return DetectResult(characters, [f.detection for f in fused], counts, support, rejected)
