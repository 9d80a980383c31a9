"""From fused face/person boxes and a foreground map to one candidate box per character.

Face path. Every distinct face (fused boxes, duplicates and faces lying in the body of a better
face's character removed) seeds a character. Its *prior* box uses anime sprite proportions:
``width_faces`` face widths wide around the face centre, from ``hair_top`` face heights above the
face to ``body_faces`` face heights below it. The image's own evidence then refines it: inside a
search window (``search_faces`` face widths either side, limited to this face's *territory* -
the part of the image closer to it than to a neighbouring face, in face-width units) the
foreground pixels connected to the face and the region under it (neck / torso) are collected,
grown by hysteresis into the connected permissive-map pixels >= ``fg_weak_threshold`` (at most
``fg_max_grow`` of their height further), and their bounding box (after trimming sparse rows and
columns) becomes the character box, so hair hanging below the chin, raised hands and props fit
inside. Evidence that disagrees wildly
with the prior (too narrow, no pixels) falls back to the prior. A box that reaches within
``bottom_snap`` of the image bottom is extended to it (sprites are cut by the frame).

Face-independent path. Figure boxes (label "person": the learned figure net, optionally YOLO)
and large connected foreground components that no face character explains become characters without a face (``face_box=None``) and with
a lower score, so a missed face does not mean a missed character. A face character explains the
foreground ``proposal_core_faces`` face widths either side of its face (its box may reach over
a face-less neighbour); leftovers narrower than ``proposal_min_width_faces`` face widths, or
lying in a face character's box below its face, are its own hair, arms or props. Face-less
characters then bound their neighbours' territories too (``refit_beside_faceless``).
Background-only scenes give small, weak or wide flat components, which are rejected by size,
mean probability and shape. No character without a figure (``figure_evidence``): a foreground
component becomes a character only where a figure box of one of ``figure_evidence.detectors``
overlaps it (the person map also fires on furniture, floors and lamp posts); the others are
returned as rejected, with the reason.

All boxes are XYXY pixels of the HxW image; the foreground map may be smaller (any h x w), it
is mapped by the ratio of sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from kiridashi.detectors.fusion import Fused
from kiridashi.metrics import box_iou, containment
from kiridashi.types import BoxXYXY, Character, Detection, confident


@dataclass
class Foreground:
    """Person/foreground probability maps (h x w float32, [0, 1]) for an H x W image.

    prob: the conservative map (used to fit boxes and check faces); prob_any: the permissive
    map (used for face-less proposals; defaults to ``prob``).
    """

    prob: np.ndarray
    image_hw: tuple[int, int]
    prob_any: np.ndarray | None = None

    @property
    def sx(self) -> float:
        return self.image_hw[1] / float(self.prob.shape[1])

    @property
    def sy(self) -> float:
        return self.image_hw[0] / float(self.prob.shape[0])

    @property
    def any_map(self) -> np.ndarray:
        """The permissive map (``prob_any``, else ``prob``)."""
        return self.prob_any if self.prob_any is not None else self.prob

    def to_map(self, box: BoxXYXY) -> tuple[int, int, int, int]:
        """Image-pixel XYXY box -> integer map box (clipped, possibly empty)."""
        h, w = self.prob.shape
        x0 = int(np.clip(np.floor(box[0] / self.sx), 0, w))
        y0 = int(np.clip(np.floor(box[1] / self.sy), 0, h))
        x1 = int(np.clip(np.ceil(box[2] / self.sx), 0, w))
        y1 = int(np.clip(np.ceil(box[3] / self.sy), 0, h))
        return x0, y0, x1, y1

    def to_image(self, box: tuple[float, float, float, float]) -> BoxXYXY:
        return (box[0] * self.sx, box[1] * self.sy, box[2] * self.sx, box[3] * self.sy)


def _clip(box: BoxXYXY, image_hw: tuple[int, int]) -> BoxXYXY:
    h, w = image_hw
    return (
        float(max(0.0, min(w, box[0]))),
        float(max(0.0, min(h, box[1]))),
        float(max(0.0, min(w, box[2]))),
        float(max(0.0, min(h, box[3]))),
    )


def distinct_faces(faces: list[Fused], cfg: dict) -> list[Fused]:
    """Faces, best first, without duplicates (overlapping / nested boxes) and body false hits.

    A face whose centre lies in the upper body of a better face's character (below that face's
    chin, within ``body_width_faces`` face widths of its centre, not much larger) is a false
    detection on the chest, hands or clothes and is dropped.
    """
    iou_thr = float(cfg.get("duplicate_iou", 0.3))
    contain_thr = float(cfg.get("duplicate_containment", 0.6))
    body_w = float(cfg.get("body_width_faces", 0.9))
    body_h = float(cfg.get("body_height_faces", 3.0))
    body_ratio = float(cfg.get("body_score_ratio", 0.9))
    kept: list[Fused] = []
    for f in sorted(faces, key=lambda x: -x.detection.score):
        b = f.detection.box
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        ok = True
        for k in kept:
            kb = k.detection.box
            if (
                box_iou(b, kb) >= iou_thr
                or containment(b, kb) >= contain_thr
                or containment(kb, b) >= contain_thr
            ):
                ok = False
                break
            kw, kh = kb[2] - kb[0], kb[3] - kb[1]
            kcx = (kb[0] + kb[2]) / 2
            in_body = kb[3] - 0.1 * kh <= cy <= kb[3] + body_h * kh and abs(cx - kcx) <= body_w * kw
            weaker = f.detection.score <= body_ratio * k.detection.score or len(f.detectors) < len(
                k.detectors
            )
            # a larger face under a smaller one can be a character in front: keep it unless
            # only one detector saw it
            small = (b[2] - b[0]) <= 1.5 * kw or len(f.detectors) == 1
            if in_body and weaker and small:
                ok = False
                break
        if ok:
            kept.append(f)
    return kept


def face_evidence(face: BoxXYXY, fg: Foreground, threshold: float) -> tuple[float, float]:
    """(mean foreground probability inside the face box, foreground extent above the face top
    in face heights) - measured in the central half of the face's columns, going up from the
    face centre while rows are mostly foreground. A real face sits near the top of its
    foreground (hair only above it); a false hit on the chest or hands has the head above it."""
    fw, fh = face[2] - face[0], face[3] - face[1]
    x0, y0, x1, y1 = fg.to_map(face)
    inside = float(fg.prob[y0:y1, x0:x1].mean()) if x1 > x0 and y1 > y0 else 0.0
    bx0, _, bx1, _ = fg.to_map((face[0] + 0.25 * fw, 0, face[2] - 0.25 * fw, 1))
    if bx1 <= bx0:
        return inside, 0.0
    rows = fg.prob[:, bx0:bx1].mean(axis=1) >= threshold
    r = min(len(rows) - 1, int((face[1] + face[3]) / 2 / fg.sy))
    top = r
    while top > 0 and rows[top - 1]:
        top -= 1
    return inside, (face[1] - top * fg.sy) / max(fh, 1e-6)


def plausible_face(face: Fused, fg: Foreground | None, cfg: dict) -> bool:
    """False for a face seen by one detector only that the foreground contradicts: foreground
    continues far above it (``max_fg_above_faces``: a hit on the body) or the face box is mostly
    background (``min_fg_inside``) without a high score (``weak_face_score``)."""
    if fg is None or len(face.detectors) > 1:
        return True
    inside, above = face_evidence(face.detection.box, fg, float(cfg.get("fg_threshold", 0.5)))
    if above > float(cfg.get("max_fg_above_faces", 1.4)):
        return False
    return not (
        inside < float(cfg.get("min_fg_inside", 0.35))
        and face.detection.score < float(cfg.get("weak_face_score", 0.8))
    )


def prior_box(face: BoxXYXY, image_hw: tuple[int, int], cfg: dict) -> BoxXYXY:
    """Character box (XYXY) from a face box with anime sprite proportions, clipped."""
    fx0, fy0, fx1, fy1 = face
    fw, fh = fx1 - fx0, fy1 - fy0
    cx = (fx0 + fx1) / 2.0
    half = float(cfg.get("width_faces", 2.6)) * fw / 2.0
    return _clip(
        (
            cx - half,
            fy0 - float(cfg.get("hair_top", 0.45)) * fh,
            cx + half,
            fy1 + float(cfg.get("body_faces", 7.0)) * fh,
        ),
        image_hw,
    )


def territory(face: BoxXYXY, others: list[BoxXYXY], lo: float, hi: float) -> tuple[float, float]:
    """The x-range [lo, hi] narrowed to the part closer (in face widths) to ``face`` than to
    any other face: the boundary with a neighbour sits at ``cx + (ox - cx) * fw / (fw + ow)``."""
    cx, fw = (face[0] + face[2]) / 2, face[2] - face[0]
    for o in others:
        ox, ow = (o[0] + o[2]) / 2, o[2] - o[0]
        if abs(ox - cx) < 1e-6:
            continue
        edge = cx + (ox - cx) * fw / (fw + ow)
        if ox > cx:
            hi = min(hi, edge)
        else:
            lo = max(lo, edge)
    return lo, hi


def _trimmed_extent(mask: np.ndarray, min_share: float) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1; exclusive) of ``mask`` after dropping rows / columns with
    fewer set pixels than ``min_share`` of the mask's largest row / column count."""
    cols = mask.sum(axis=0)
    rows = mask.sum(axis=1)
    if cols.max() == 0:
        return None
    xs = np.nonzero(cols >= max(1.0, min_share * cols.max()))[0]
    ys = np.nonzero(rows >= max(1.0, min_share * rows.max()))[0]
    return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1


def grow_into(strong: np.ndarray, weak: np.ndarray, max_grow: float) -> np.ndarray:
    """Hysteresis: ``strong`` (h x w bool) plus the ``weak`` (h x w bool) pixels connected to
    it, at most ``max_grow`` times the strong region's height beyond its bounding box.

    The selfie maps are confident on the torso but fade on hair tips, raised arms, skirts and
    props; the weak map recovers them without letting a weak region start a character."""
    ys, xs = np.nonzero(strong)
    if len(xs) == 0 or max_grow <= 0:
        return strong
    pad = int(round(max_grow * (ys.max() + 1 - ys.min())))
    x0, y0 = max(0, xs.min() - pad), max(0, ys.min() - pad)
    x1, y1 = xs.max() + 1 + pad, ys.max() + 1 + pad
    region = (weak[y0:y1, x0:x1] | strong[y0:y1, x0:x1]).astype(np.uint8)
    _, labels = cv2.connectedComponents(region, connectivity=8)
    keep = np.unique(labels[strong[y0:y1, x0:x1]])
    out = strong.copy()
    out[y0:y1, x0:x1] |= np.isin(labels, keep[keep > 0])
    return out


def evidence_box(
    face: BoxXYXY, others: list[BoxXYXY], fg: Foreground, prior: BoxXYXY, cfg: dict
) -> BoxXYXY | None:
    """Box of the foreground connected to ``face`` inside its search window (None: no evidence)."""
    h, w = fg.image_hw
    fx0, fy0, fx1, fy1 = face
    fw, fh = fx1 - fx0, fy1 - fy0
    cx = (fx0 + fx1) / 2
    search = float(cfg.get("search_faces", 3.0)) * fw
    lo, hi = territory(face, others, max(0.0, cx - search), min(float(w), cx + search))
    top = max(0.0, fy0 - float(cfg.get("search_top_faces", 1.2)) * fh)
    window = (lo, top, hi, float(h))
    mx0, my0, mx1, my1 = fg.to_map(window)
    if mx1 - mx0 < 2 or my1 - my0 < 2:
        return None
    fgmask = (fg.prob[my0:my1, mx0:mx1] >= float(cfg.get("fg_threshold", 0.5))).astype(np.uint8)
    if not fgmask.any():
        return None
    n, labels, _, _ = cv2.connectedComponentsWithStats(fgmask, connectivity=8)
    # seeds: the face core and the neck / upper torso under it
    seeds = [
        (cx - 0.3 * fw, fy0 + 0.2 * fh, cx + 0.3 * fw, fy1),
        (cx - 0.5 * fw, fy1, cx + 0.5 * fw, fy1 + 1.2 * fh),
    ]
    keep: set[int] = set()
    for s in seeds:
        sx0, sy0, sx1, sy1 = fg.to_map(s)
        sx0, sx1 = max(sx0 - mx0, 0), min(sx1 - mx0, labels.shape[1])
        sy0, sy1 = max(sy0 - my0, 0), min(sy1 - my0, labels.shape[0])
        if sx1 > sx0 and sy1 > sy0:
            keep.update(int(v) for v in np.unique(labels[sy0:sy1, sx0:sx1]) if v)
    if not keep:
        return None
    comp = np.isin(labels, list(keep))
    weak = fg.any_map[my0:my1, mx0:mx1] >= float(cfg.get("fg_weak_threshold", 1.0))
    comp = grow_into(comp, weak, float(cfg.get("fg_max_grow", 0.0)))
    ext = _trimmed_extent(comp, float(cfg.get("trim_share", 0.04)))
    if ext is None:
        return None
    ex0, ey0, ex1, ey1 = ext
    box = fg.to_image((ex0 + mx0, ey0 + my0, ex1 + mx0, ey1 + my0))
    width_faces = (box[2] - box[0]) / max(fw, 1e-6)
    if width_faces < float(cfg.get("min_evidence_width_faces", 1.0)):
        return None
    return box


def _snap_bottom(box: BoxXYXY, image_hw: tuple[int, int], cfg: dict) -> BoxXYXY:
    h = image_hw[0]
    if h - box[3] <= float(cfg.get("bottom_snap", 0.04)) * h:
        return (box[0], box[1], box[2], float(h))
    return box


def face_character(
    face: Fused, others: list[BoxXYXY], image_hw: tuple[int, int], fg: Foreground | None, cfg: dict
) -> Character:
    """The character grown from one fused face (see the module docstring)."""
    fb = face.detection.box
    fw, fh = fb[2] - fb[0], fb[3] - fb[1]
    prior = prior_box(fb, image_hw, cfg)
    box = prior
    ev = evidence_box(fb, others, fg, prior, cfg) if fg is not None else None
    if ev is not None:
        # the face (with some hair above it) always belongs to the character; a character is
        # at most ``max_side_faces`` face widths either side of its face centre, and its body
        # runs at least ``min_body_faces`` face heights below the face (the foreground map often
        # fades on skirts and legs)
        cx = (fb[0] + fb[2]) / 2
        side = float(cfg.get("max_side_faces", 2.5)) * fw
        hair = float(cfg.get("hair_top", 0.45)) * fh
        box = (
            max(cx - side, min(ev[0], fb[0] - 0.15 * fw)),
            min(ev[1], fb[1] - hair),
            min(cx + side, max(ev[2], fb[2] + 0.15 * fw)),
            max(ev[3], fb[3] + float(cfg.get("min_body_faces", 4.0)) * fh),
        )
    box = _snap_bottom(_clip(box, image_hw), image_hw, cfg)
    return Character(
        box=tuple(round(v, 2) for v in box),
        score=round(float(face.detection.score), 4),
        face_box=tuple(round(v, 2) for v in fb),
        detectors=face.detectors,
        scales=face.scales,
        keypoints=dict(face.detection.keypoints),
    )


def foreground_proposals(fg: Foreground, cfg: dict) -> list[tuple[BoxXYXY, float]]:
    """(box XYXY image px, score) of large, confident, upright foreground components."""
    thr = float(cfg.get("fg_threshold", 0.5))
    mask = (fg.prob >= thr).astype(np.uint8)
    weak = fg.prob >= float(cfg.get("fg_weak_threshold", 1.0))
    k = max(1, int(round(float(cfg.get("fg_open_fraction", 0.01)) * max(mask.shape))))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((k, k), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    out = []
    min_area = float(cfg.get("fg_min_area", 0.03)) * mask.size
    min_h = float(cfg.get("fg_min_height", 0.3)) * mask.shape[0]
    min_prob = float(cfg.get("fg_min_mean_prob", 0.75))
    max_aspect = float(cfg.get("fg_max_aspect", 1.6))
    for i in range(1, n):
        x, y, bw, bh, area = (int(v) for v in stats[i])
        if area < min_area or bh < min_h or bw > max_aspect * bh:
            continue
        # background regions spread over the frame: reject components touching three borders
        # or the top and a side
        mh, mw = mask.shape
        top, left, right = y <= 1, x <= 1, x + bw >= mw - 1
        if top + left + right + (y + bh >= mh - 1) >= 3 or (top and (left or right)):
            continue
        comp = labels == i
        mean_p = float(fg.prob[comp].mean())
        if mean_p < min_prob:
            continue
        # the figure's extent: with the weak foreground connected to it (legs, hair tips)
        ext = _trimmed_extent(
            grow_into(comp, weak, float(cfg.get("fg_max_grow", 0.0))),
            float(cfg.get("trim_share", 0.04)),
        )
        if ext is None:
            continue
        # a figure stands on / is cut by the bottom of the frame, or is tall
        reaches_bottom = ext[3] >= (1.0 - float(cfg.get("fg_bottom_margin", 0.1))) * mh
        if not reaches_bottom and ext[3] - ext[1] < float(cfg.get("fg_tall_height", 0.5)) * mh:
            continue
        box = fg.to_image(ext)
        fill = area / float(bw * bh)
        out.append((box, mean_p * min(1.0, fill / 0.5)))
    return out


def head_box(box: BoxXYXY, width_faces: float) -> BoxXYXY:
    """A stand-in face (XYXY) for a face-less character box: centred at its top, one
    ``width_faces``-th of its width wide (the inverse of the prior box's width)."""
    cx, fw = (box[0] + box[2]) / 2, (box[2] - box[0]) / width_faces
    return (cx - fw / 2, box[1], cx + fw / 2, box[1] + fw)


def explained_box(ch: Character, core_faces: float) -> BoxXYXY:
    """The part of a character's box (XYXY) that surely belongs to it: for a face character
    with ``core_faces`` > 0 the band ``core_faces`` face widths either side of the face centre
    (its box may reach over a neighbour that has no face), else the whole box."""
    if ch.face_box is None or core_faces <= 0:
        return ch.box
    fx0, _, fx1, _ = ch.face_box
    cx, half = (fx0 + fx1) / 2, core_faces * (fx1 - fx0)
    return (max(ch.box[0], cx - half), ch.box[1], min(ch.box[2], cx + half), ch.box[3])


def below_a_face(box: BoxXYXY, chars: list[Character], max_top_faces: float, inside: float) -> bool:
    """True when ``box`` (XYXY) lies mostly (``inside`` share) in a face character's box but
    starts more than ``max_top_faces`` face heights below that face's top: then it is that
    character's own body, arm or prop (or background beside it) rather than a figure of its own,
    whose head would reach up there too."""
    for c in chars:
        if c.face_box is None or containment(box, c.box) < inside:
            continue
        fy0, fy1 = c.face_box[1], c.face_box[3]
        if box[1] > fy0 + max_top_faces * (fy1 - fy0):
            return True
    return False


def figure_support(box: BoxXYXY, figures: list[BoxXYXY], min_overlap: float) -> bool:
    """True when a figure box (XYXY) overlaps ``box`` by IoU or containment (either way) of at
    least ``min_overlap``: the candidate is a figure, not a patch of background."""
    return any(
        box_iou(box, f) >= min_overlap
        or containment(box, f) >= min_overlap
        or containment(f, box) >= min_overlap
        for f in figures
    )


def rejection(box: BoxXYXY, score: float, dets: list[str], reason: str) -> dict:
    """A rejected candidate as the results list it: box XYXY, score, source, reason."""
    return {
        "box": [round(float(v), 2) for v in box],
        "score": round(float(score), 4),
        "source": "+".join(dets),
        "reason": reason,
    }


def person_prior(box: BoxXYXY, fg: Foreground | None) -> float:
    """Mean of the permissive person map inside ``box`` (XYXY image px); 1.0 without a map."""
    if fg is None:
        return 1.0
    x0, y0, x1, y1 = fg.to_map(box)
    return float(fg.any_map[y0:y1, x0:x1].mean()) if x1 > x0 and y1 > y0 else 0.0


def settle_pending(
    chars: list[Character], pending: list[Character], cfg: dict, rejected: list[dict]
) -> list[Character]:
    """``chars`` without the pending face-less figures (see :func:`build_characters`) that
    neither a face (the re-check) nor ``figure_evidence.min_pose_points`` pose joints back;
    those go to ``rejected`` with the reason."""
    need = int((cfg.get("figure_evidence") or {}).get("min_pose_points", 1))
    out = []
    for ch in chars:
        joints = sum(1 for k in ch.keypoints if k.startswith("pose."))
        if any(ch is p for p in pending) and ch.face_box is None and joints < need:
            reason = (
                f"no figure evidence: figure box without person map, face or pose "
                f"({joints} pose joints < {need})"
            )
            rejected.append(rejection(ch.box, ch.score, ch.detectors, reason))
            continue
        out.append(ch)
    return out


def build_characters(
    fused: list[Fused],
    image_hw: tuple[int, int],
    cfg: dict,
    fg: Foreground | None = None,
    rejected: list[dict] | None = None,
    pending: list[Character] | None = None,
) -> list[Character]:
    """Characters, left to right, from fused detections and an optional foreground map.

    ``rejected`` (if given) receives one ``{"box", "score", "source", "reason"}`` dict per
    face-less candidate that was not made a character for want of figure evidence
    (``figure_evidence``: a foreground component no figure box supports). ``pending`` (if
    given) receives the face-less characters from figure boxes where the person map is weaker
    than ``figure_evidence.min_person_prior``: they stay characters only if a face or pose
    joints are found on them later (:func:`settle_pending`)."""
    h, w = image_hw
    min_face = float(cfg.get("min_face_fraction", 0.03)) * min(h, w)
    min_score = float(cfg.get("min_face_score", 0.3))
    faces = [
        f
        for f in fused
        if f.detection.label == "face"
        and f.detection.score >= min_score
        and min(f.detection.box[2] - f.detection.box[0], f.detection.box[3] - f.detection.box[1])
        >= min_face
    ]
    faces = [f for f in faces if plausible_face(f, fg, cfg)]
    kept = distinct_faces(faces, cfg)
    boxes = [f.detection.box for f in kept]
    chars = [
        face_character(f, [b for b in boxes if b is not f.detection.box], image_hw, fg, cfg)
        for f in kept
    ]
    # person boxes (e.g. YOLO) and foreground components that no face character covers
    cover = float(cfg.get("proposal_max_covered", 0.5))
    proposals: list[tuple[BoxXYXY, float, list[str]]] = []
    for f in fused:
        if f.detection.label == "person" and f.detection.score >= float(
            cfg.get("min_person_score", 0.3)
        ):
            proposals.append((f.detection.box, f.detection.score, f.detectors))
    core = float(cfg.get("proposal_core_faces", 0.0))
    explained = [explained_box(c, core) for c in chars]
    if fg is not None and cfg.get("foreground_proposals", True):
        free = Foreground(fg.any_map.copy(), fg.image_hw)
        for b in explained:  # foreground already explained by a face character
            x0, y0, x1, y1 = free.to_map(b)
            free.prob[y0:y1, x0:x1] = 0.0
        # a face-less figure beside face characters is about as wide as a body: narrower
        # leftovers are their hair, arms or skirts
        face_widths = [c.face_box[2] - c.face_box[0] for c in chars if c.face_box is not None]
        min_w = float(cfg.get("proposal_min_width_faces", 0.0)) * float(
            np.median(face_widths) if face_widths else 0.0
        )
        proposals += [
            (b, s, ["foreground"])
            for b, s in foreground_proposals(free, cfg)
            if b[2] - b[0] >= min_w
        ]
    factor = float(cfg.get("faceless_score_factor", 0.5))
    ecfg = cfg.get("figure_evidence") or {}
    evidence_from = set(ecfg.get("detectors", []))
    figures = [
        f.detection.box
        for f in fused
        if f.detection.label == "person" and evidence_from & set(f.detectors)
    ]
    for box, score, dets in sorted(proposals, key=lambda p: -p[1]):
        if any(containment(box, b) >= cover or containment(b, box) >= cover for b in explained):
            continue
        if below_a_face(box, chars, float(cfg.get("proposal_max_top_faces", 1e9)), cover):
            continue
        if (
            ecfg.get("enabled", False)
            and not evidence_from & set(dets)
            and not figure_support(box, figures, float(ecfg.get("min_overlap", 0.5)))
        ):
            if rejected is not None:
                reason = f"no figure evidence: no figure box ({', '.join(sorted(evidence_from))})"
                rejected.append(
                    rejection(box, factor * score, dets, reason + " on this foreground")
                )
            continue
        box = _snap_bottom(_clip(box, image_hw), image_hw, cfg)
        chars.append(
            Character(
                box=tuple(round(v, 2) for v in box),
                score=round(factor * score, 4),
                face_box=None,
                detectors=list(dets),
                scales=[],
            )
        )
        explained.append(chars[-1].box)
        if (
            pending is not None
            and ecfg.get("enabled", False)
            and person_prior(box, fg) < float(ecfg.get("min_person_prior", 0.0))
        ):
            pending.append(chars[-1])  # a figure box the person map does not see: needs a face
            # or pose joints (checked once those detectors ran: settle_pending)
    faceless = chars[len(kept) :]
    if faceless and cfg.get("refit_beside_faceless", False):
        # face-less figures are neighbours too: refit the face characters' territories
        width_faces = float(cfg.get("width_faces", 2.6))
        heads = [head_box(c.box, width_faces) for c in faceless]
        chars = [
            face_character(
                f, [b for b in boxes if b is not f.detection.box] + heads, image_hw, fg, cfg
            )
            for f in kept
        ] + faceless
    return sorted(chars, key=lambda c: (c.box[0] + c.box[2]) / 2)


def pose_leg_room(
    ch: Character, shin_thighs: float, min_confidence: float, image_h: int
) -> float | None:
    """The bottom (image px) that a character's box needs for the legs its pose implies, or
    None when that is not known or the box already has it.

    From the confident pose hips and knees (``pose.*`` >= ``min_confidence``) of each side: a
    knee without a confident ankle has a shin and a foot of ``shin_thighs`` x its thigh (hip to
    knee) below it; a confident ankle needs a foot (a quarter thigh) below it. The box never
    reaches past the image (``image_h`` rows). A box found from a face or a figure that ends
    at the knees (shins darker than the person map sees, or hidden from the figure net) would
    cut the legs off."""
    need = []
    for side in ("left", "right"):
        points = {}
        for joint in ("hip", "knee", "ankle"):
            point = ch.keypoints.get(f"pose.{side}_{joint}")
            if point is not None and confident(point, min_confidence):
                points[joint] = float(point[1])
        if "hip" not in points or "knee" not in points:
            continue
        thigh = points["knee"] - points["hip"]
        if thigh <= 0:
            continue
        if "ankle" in points:
            need.append(points["ankle"] + 0.25 * thigh)
        else:
            need.append(points["knee"] + shin_thighs * thigh)
    if not need:
        return None
    bottom = min(float(image_h), max(need))
    return bottom if bottom > ch.box[3] else None


def person_detections(chars: list[Character]) -> list[Detection]:
    """Character boxes as "person" detections (for overlays and the fused-detection list)."""
    return [
        Detection(c.box, c.score, "person", "+".join(c.detectors) or "characters") for c in chars
    ]
