"""A last look for small characters in a scene where nothing was found.

Figures a quarter of the frame high have faces of 15-25 px: below what the face detectors find in
the whole scene, and too small for the figure net at its input side. When detection ends with no
character at all, the face detectors search the image again upscaled (``upscale``, e.g. 2x).
Upscaled, they also fire on furniture and patterns, so a face counts only when the figure net,
run on the window a figure with that face would fill (``window_*`` in face sizes: a few face
widths either side, from above the hair to ten faces below), finds a figure there whose top
holds the face: the face's centre inside the figure box horizontally, and vertically between one
face height above its top and ``head_share`` of its height below it. The window is resized to
the net's input side, so the net sees the figure at a size it knows.

The character's box is the union of that figure box and the face with hair room above it.
All boxes are XYXY pixels of the given image.
"""

from __future__ import annotations

import numpy as np

from kiridashi.detectors.base import Detector, rescale, scale_image
from kiridashi.metrics import box_iou, containment
from kiridashi.types import BoxXYXY, Character, Detection


def upscaled_faces(
    image: np.ndarray, detectors: dict[str, Detector], upscale: float, min_score: float
) -> list[Detection]:
    """Faces of ``detectors`` in ``image`` (HxWx3 uint8 RGB) resized by ``upscale``, scores >=
    ``min_score``, in ``image``'s px, best first, overlapping ones (IoU > 0.3) merged into the
    best."""
    scaled = np.ascontiguousarray(scale_image(image, upscale))
    fx, fy = image.shape[1] / scaled.shape[1], image.shape[0] / scaled.shape[0]
    found = [
        rescale(d, fx, fy, upscale)
        for det in detectors.values()
        for d in det.detect(scaled)
        if d.label == "face" and d.score >= min_score
    ]
    kept: list[Detection] = []
    for d in sorted(found, key=lambda d: -d.score):
        if all(box_iou(d.box, k.box) <= 0.3 for k in kept):
            kept.append(d)
    return kept


def figure_window(face: BoxXYXY, image_hw: tuple[int, int], cfg: dict) -> tuple[int, int, int, int]:
    """XYXY int window (clipped to the image) that a figure with ``face`` at its top fills."""
    fx0, fy0, fx1, fy1 = face
    fw, fh = fx1 - fx0, fy1 - fy0
    cx = (fx0 + fx1) / 2.0
    half = float(cfg.get("window_width_faces", 8.0)) * fw / 2.0
    h, w = image_hw
    return (
        int(max(0, np.floor(cx - half))),
        int(max(0, np.floor(fy0 - float(cfg.get("window_above_faces", 1.0)) * fh))),
        int(min(w, np.ceil(cx + half))),
        int(min(h, np.ceil(fy1 + float(cfg.get("window_below_faces", 10.0)) * fh))),
    )


def figure_below(
    image: np.ndarray, face: BoxXYXY, figure_net: Detector, cfg: dict
) -> Detection | None:
    """The best figure (``figure_net`` box, image px) in the window below ``face`` whose top
    holds the face, with score >= ``figure_min_score``; None when there is none."""
    x0, y0, x1, y1 = figure_window(face, image.shape[:2], cfg)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    fcx, fcy = (face[0] + face[2]) / 2.0, (face[1] + face[3]) / 2.0
    fh = face[3] - face[1]
    head = float(cfg.get("head_share", 0.4))
    best: Detection | None = None
    for d in figure_net.detect(np.ascontiguousarray(image[y0:y1, x0:x1])):
        if d.score < float(cfg.get("figure_min_score", 0.25)):
            continue
        d = rescale(d, 1.0, 1.0, 1.0, (x0, y0))
        bx0, by0, bx1, by1 = d.box
        holds_face = bx0 <= fcx <= bx1 and by0 - fh <= fcy <= by0 + head * (by1 - by0)
        if holds_face and (best is None or d.score > best.score):
            best = d
    return best


def small_characters(
    image: np.ndarray,
    face_detectors: dict[str, Detector],
    figure_net: Detector,
    cfg: dict,
    hair_top: float = 0.45,
) -> list[Character]:
    """Characters (left to right) of the small faces of ``image`` (HxWx3 uint8 RGB) that a
    figure confirms; ``cfg`` is ``detect.small_faces``, ``hair_top`` the room above a face (in
    face heights) that belongs to its character."""
    h, w = image.shape[:2]
    faces = upscaled_faces(
        image, face_detectors, float(cfg.get("upscale", 2.0)), float(cfg.get("min_score", 0.5))
    )
    out: list[Character] = []
    for face in faces:
        fig = figure_below(image, face.box, figure_net, cfg)
        if fig is None:
            continue
        fb = face.box
        box = (
            max(0.0, min(fig.box[0], fb[0])),
            max(0.0, min(fig.box[1], fb[1] - hair_top * (fb[3] - fb[1]))),
            min(float(w), max(fig.box[2], fb[2])),
            min(float(h), max(fig.box[3], fb[3])),
        )
        if any(box_iou(box, c.box) > 0.3 or containment(box, c.box) > 0.6 for c in out):
            continue  # a second face on the same figure
        out.append(
            Character(
                box=tuple(round(v, 2) for v in box),
                score=round(float(np.sqrt(face.score * fig.score)), 4),
                face_box=tuple(round(v, 2) for v in fb),
                detectors=sorted({face.detector, fig.detector}),
                scales=[float(cfg.get("upscale", 2.0))],
                keypoints=dict(face.keypoints),
            )
        )
    return sorted(out, key=lambda c: c.box[0])
