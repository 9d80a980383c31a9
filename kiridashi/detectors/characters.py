"""From fused face/person boxes to one candidate box per character.

A standing visual-novel character is grown from its face with anime proportions: the box spans
``width_faces`` face widths around the face centre, starts ``hair_top`` face heights above the
face (hair, ahoge) and runs ``body_faces`` face heights below it (usually to the image bottom).
A person box (YOLO) that contains the face widens the box; a person box without a face becomes a
character of its own. The segmenter treats the box as a prior, not a crop, so a box that is a
little small does not cut off hair or hands.
"""

from __future__ import annotations

from kiridashi.metrics import box_iou
from kiridashi.types import BoxXYXY, Character, Detection


def _containment(inner: BoxXYXY, outer: BoxXYXY) -> float:
    ix = max(0.0, min(inner[2], outer[2]) - max(inner[0], outer[0]))
    iy = max(0.0, min(inner[3], outer[3]) - max(inner[1], outer[1]))
    area = max(1e-6, (inner[2] - inner[0]) * (inner[3] - inner[1]))
    return ix * iy / area


def distinct_faces(faces: list[Detection], iou_thr: float, contain_thr: float) -> list[Detection]:
    """Faces sorted by score with duplicates (overlapping or nested boxes) removed."""
    kept: list[Detection] = []
    for f in sorted(faces, key=lambda d: -d.score):
        if all(
            box_iou(f.box, k.box) < iou_thr
            and _containment(f.box, k.box) < contain_thr
            and _containment(k.box, f.box) < contain_thr
            for k in kept
        ):
            kept.append(f)
    return kept


def suppress_body_faces(faces: list[Detection], cfg: dict) -> list[Detection]:
    """Drop faces that sit on another, more confident character's body or face.

    A face below another face's chin and within ``torso_faces`` face widths of its centre line
    lies on that character's torso; a much smaller face right next to a face is a hair
    ornament or a pattern. Neighbouring characters (side by side, even at different depths)
    are kept.
    """
    kept: list[Detection] = []
    ratio = float(cfg.get("min_neighbour_face_ratio", 0.6))
    torso = float(cfg.get("torso_faces", 0.75))
    for f in faces:  # sorted by score, best first
        cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
        fw = f.box[2] - f.box[0]
        drop = False
        for k in kept:
            kcx, kcy = (k.box[0] + k.box[2]) / 2, (k.box[1] + k.box[3]) / 2
            kw = k.box[2] - k.box[0]
            on_torso = cy > k.box[3] and abs(cx - kcx) < torso * kw
            ornament = fw < ratio * kw and abs(cx - kcx) < kw and abs(cy - kcy) < kw
            if on_torso or ornament:
                drop = True
                break
        if not drop:
            kept.append(f)
    return kept


def grow_from_face(face: BoxXYXY, image_hw: tuple[int, int], cfg: dict) -> BoxXYXY:
    """Character box (XYXY) from a face box with anime proportions, clipped to the image."""
    h, w = image_hw
    fx0, fy0, fx1, fy1 = face
    fw, fh = fx1 - fx0, fy1 - fy0
    cx = (fx0 + fx1) / 2.0
    half = float(cfg.get("width_faces", 4.0)) * fw / 2.0
    x0, x1 = cx - half, cx + half
    y0 = fy0 - float(cfg.get("hair_top", 0.6)) * fh
    y1 = fy1 + float(cfg.get("body_faces", 8.0)) * fh
    return max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)


def _inside(face: Detection, person: Detection) -> bool:
    cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
    return person.box[0] <= cx <= person.box[2] and person.box[1] <= cy <= person.box[3]


def build_characters(
    fused: list[tuple[Detection, list[Detection]]], image_hw: tuple[int, int], cfg: dict
) -> list[Character]:
    """Characters (left to right) from fused detections; see the module docstring."""
    h, w = image_hw
    min_face = float(cfg.get("min_face_fraction", 0.02)) * min(h, w)
    faces = [
        (d, s)
        for d, s in fused
        if d.label == "face"
        and d.score >= float(cfg.get("min_face_score", 0.1))
        and min(d.box[2] - d.box[0], d.box[3] - d.box[1]) >= min_face
    ]
    support = {id(d): s for d, s in faces}
    kept = distinct_faces(
        [d for d, _ in faces],
        float(cfg.get("duplicate_iou", 0.3)),
        float(cfg.get("duplicate_containment", 0.6)),
    )
    kept = suppress_body_faces(kept, cfg)
    persons = [d for d, _ in fused if d.label == "person"]
    min_detectors = int(cfg.get("min_face_detectors", 2))
    if min_detectors > 1:  # a lone detector's face must lie on a person (foreground) region
        kept = [
            f
            for f in kept
            if len({d.detector for d in support.get(id(f), [])}) >= min_detectors
            or any(_inside(f, p) for p in persons)
        ]
    used_persons: set[int] = set()
    chars: list[Character] = []
    for face in kept:
        box = grow_from_face(face.box, image_hw, cfg)
        for i, p in enumerate(persons):
            if not _inside(face, p):
                continue
            used_persons.add(i)
            if sum(_inside(other, p) for other in kept) == 1:  # one face: the person is its body
                box = (min(box[0], p.box[0]), min(box[1], p.box[1]),
                       max(box[2], p.box[2]), max(box[3], p.box[3]))  # fmt: skip
        sup = support.get(id(face), [])
        chars.append(
            Character(
                box=box,
                score=round(face.score, 4),
                face_box=face.box,
                detectors=sorted({d.detector for d in sup} or {face.detector}),
                scales=sorted({d.scale for d in sup}),
                keypoints=dict(face.keypoints),
            )
        )
    for i, p in enumerate(persons):
        if i not in used_persons and p.score >= float(cfg.get("min_person_score", 0.3)):
            chars.append(Character(box=p.box, score=round(0.5 * p.score, 4),
                                   detectors=p.detector.split("+")))  # fmt: skip
    return sorted(chars, key=lambda c: (c.box[0] + c.box[2]) / 2)
