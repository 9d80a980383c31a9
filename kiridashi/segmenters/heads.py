"""Heads are never lost: the face and the hair drawn around it, found from the line art.

A drawn head is a set of flat colour areas closed by dark line art: the face, and the hair whose
fringe falls over the top of the face. When the hair's colour is the background's (brown hair in
front of wooden panelling), colour and person priors cannot tell them apart and a cut loses the
whole head; the line art still can. Per character with a face box (XYXY, image px):

1. the *head zone*: an ellipse around the face box, ``zone_scale`` x its size, centred
   ``zone_lift`` x its height above the face centre (hair sits above and beside the face);
2. the *seed*: the face box's central ellipse and its top ``fringe`` share (the fringe);
3. the image's free space: pixels that are not dark line art (black-hat contrast of ``line_px``
   >= ``line_contrast``, closed by ``close_px``), split into 4-connected components;
4. the head: the face (an ellipse of ``face_keep`` x its box; with ``face_colour`` only its
   part whose colour is the seed's rather than the background's beside and above the head
   zone, connected to the face's core) and the part inside the head zone
   of every free-space component touching the seed, plus the line art along it (``close_px`` +
   1 px, so the outline stays on the cut-out). A
   component that leaves the head zone above the chin is background (or hair leaking into it
   through a gap in the outline) and is not taken: long hair and the body leave the zone only
   below the chin. Closed components next to the head across one
   line and of at least ``hop_min_area`` x the face box's area (a ponytail, twin tails, side
   locks; not the small cells of a textured background) join it too, ``hops`` times;
5. with ``hair_colour``, the hair that soft, painted outlines leave open to the background:
   head-zone pixels above the chin whose colour is the fringe's rather than the background's.

A character no face detector found but whose face MediaPipe Pose saw (``pose_face``: at least
``min_points`` head points - nose, eyes, ears, mouth - and both shoulders at ``min_confidence``)
gets the face box those points imply (:func:`pose_face_box`), so its head is repaired too.

Only a head the cut lost is given back: one whose face seed is more than ``repair_above`` outside
the cut (a head the cut holds keeps its finer outline). All of it runs on the crop around the
head zone, resized so that the face box is ``face_px`` wide (line art is then a few px wide
whatever the image's resolution), and comes back at the image's own resolution. The segmenter
adds the head to its foreground; the evaluation's ``face_outside`` check flags any cut-out
whose face is still outside its mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from scipy import ndimage

from kiridashi.faces import FACE_CORE, ellipse_mask, face_ellipse
from kiridashi.keypoints import pose_part
from kiridashi.segmenters.regions import ColourModel, close_gaps, line_contrast
from kiridashi.types import BoxXYXY, Character

COLOUR_BINS = 16  # per RGB channel: the head crop (the face ``face_px`` wide) has few pixels

DEFAULTS = {
    "enabled": True,
    "zone_scale": 2.4,
    "zone_lift": 0.2,
    "fringe": 0.3,
    "hops": 2,
    "hop_min_area": 0.1,
    "repair_above": 0.1,
    "face_keep": 0.9,
    "face_colour": True,
    "hair_colour": 1.0,
    "face_px": 64,
    "line_px": 7,
    "line_contrast": 25.0,
    "close_px": 1,
    "pose_face": {"enabled": True, "min_confidence": 0.9, "min_points": 3,
                  "width_shoulders": 1.0, "min_box_share": 0.25},
}  # fmt: skip
# where MediaPipe Pose's head points (kiridashi.keypoints.HEAD_PARTS) sit in an anime face box
# (y - box centre, in box heights):
# medians over dev's characters with a face box (dev2's within 0.04 of them)
POSE_FACE_Y = {"eye": -0.11, "ear": -0.03, "nose": 0.03, "mouth": 0.18}


def head_zone(face_box: BoxXYXY, zone_scale: float, zone_lift: float) -> tuple:
    """((cx, cy), (ax, ay)) of the head-zone ellipse of ``face_box`` (XYXY px), float px."""
    x0, y0, x1, y1 = face_box
    fw, fh = x1 - x0, y1 - y0
    centre = ((x0 + x1) / 2, (y0 + y1) / 2 - zone_lift * fh)
    return centre, (zone_scale * fw / 2, zone_scale * fh / 2)


def face_seed(hw: tuple[int, int], face_box: BoxXYXY, fringe: float) -> np.ndarray:
    """HxW bool: the face's core (:data:`~kiridashi.faces.FACE_CORE`) and its fringe (the top
    ``fringe`` share of the face box, without its outer tenths): where the face and the hair
    that falls over it must be. ``face_box`` in the px of ``hw``."""
    fx0, fy0, fx1, fy1 = face_box
    fw, fh = fx1 - fx0, fy1 - fy0
    seed = face_ellipse(hw, face_box, FACE_CORE)
    by0, by1 = max(0, int(fy0)), max(0, int(fy0 + fringe * fh))
    bx0, bx1 = max(0, int(fx0 + 0.1 * fw)), max(0, int(fx1 - 0.1 * fw))
    seed[by0:by1, bx0:bx1] = True
    return seed


def head_of(
    image: np.ndarray, face_box: BoxXYXY, cfg: dict
) -> tuple[tuple[slice, slice], np.ndarray]:
    """(window, hxw bool head mask inside it) for one face of ``image`` (HxWx3 uint8 RGB).

    ``window`` is the (rows, cols) slice of the head zone's bounding box, clipped to the image;
    the mask is empty when the face box is degenerate or off the image."""
    h, w = image.shape[:2]
    centre, axes = head_zone(face_box, float(cfg["zone_scale"]), float(cfg["zone_lift"]))
    pad = int(cfg["line_px"]) + 2
    X0 = max(0, int(np.floor(centre[0] - axes[0])) - pad)
    X1 = min(w, int(np.ceil(centre[0] + axes[0])) + pad)
    Y0 = max(0, int(np.floor(centre[1] - axes[1])) - pad)
    Y1 = min(h, int(np.ceil(centre[1] + axes[1])) + pad)
    window = (slice(Y0, max(Y0, Y1)), slice(X0, max(X0, X1)))
    if X1 - X0 < 4 or Y1 - Y0 < 4:
        return window, np.zeros((max(0, Y1 - Y0), max(0, X1 - X0)), bool)
    k = float(cfg["face_px"]) / max(1.0, face_box[2] - face_box[0])  # crop px per image px
    size = (max(4, round((X1 - X0) * k)), max(4, round((Y1 - Y0) * k)))
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    crop = cv2.resize(np.ascontiguousarray(image[window]), size, interpolation=interp)
    hw = crop.shape[:2]

    def at(v: float, o: int) -> float:  # image px -> crop px
        return (v - o) * k

    zone = ellipse_mask(hw, (at(centre[0], X0), at(centre[1], Y0)), (axes[0] * k, axes[1] * k))
    r = int(cfg["close_px"])
    barrier = close_gaps(line_contrast(crop, int(cfg["line_px"])) >= float(cfg["line_contrast"]), r)
    n, comp = cv2.connectedComponents((~barrier).astype(np.uint8), connectivity=4)
    face = (at(face_box[0], X0), at(face_box[1], Y0), at(face_box[2], X0), at(face_box[3], Y0))
    fx0, fy0, fx1, fy1 = face
    fw, fh = fx1 - fx0, fy1 - fy0
    seed = face_seed(hw, face, float(cfg["fringe"]))
    seeds = np.unique(comp[seed & ~barrier])
    seeds = seeds[seeds > 0]
    # the background around the head leaves the head zone above the chin; a component that
    # does is background, or hair leaking into it through a gap in the outline. Long hair and
    # the body leave the zone only below the chin.
    chin = max(1, min(hw[0], int(np.ceil(fy1))))
    escapes = ~zone
    escapes[chin:] = False
    open_ = np.zeros(n, bool)
    open_[np.unique(comp[escapes])] = True
    open_[np.unique(np.concatenate([comp[0], comp[:chin, 0], comp[:chin, -1]]))] = True
    area = np.bincount(comp.ravel(), minlength=n)
    keep = np.zeros(n, bool)
    keep[seeds[~open_[seeds]]] = True
    keep[0] = False
    grow = np.ones((2 * r + 3,) * 2, np.uint8)  # reaches into the line art along a component
    hop = np.ones((2 * r + int(cfg["line_px"]) + 2,) * 2, np.uint8)  # ... and across it
    big = area >= float(cfg["hop_min_area"]) * fw * fh  # not a cell of background texture
    for _ in range(int(cfg["hops"])):  # hair beyond a line: a ponytail, twin tails, side locks
        near = cv2.dilate(keep[comp].astype(np.uint8), hop) > 0
        more = np.unique(comp[near & zone])
        more = more[(more > 0) & ~open_[more] & ~keep[more] & big[more]]
        if more.size == 0:
            break
        keep[more] = True
    head = keep[comp] & zone
    if head.any():  # the outline along the head stays on the cut-out
        head |= (cv2.dilate(head.astype(np.uint8), grow) > 0) & barrier & zone
    # the face itself, whatever the line art does (dark hair is all "line" at this scale)
    face_mask = face_ellipse(hw, face, float(cfg["face_keep"]))
    core = face_ellipse(hw, face, FACE_CORE)
    if cfg.get("face_colour"):
        face_mask = _face_by_colour(crop, face_mask, core, seed, escapes, barrier, grow)
    head |= face_mask
    if cfg.get("hair_colour") is not None:
        fringe = seed & ~core
        threshold = float(cfg["hair_colour"])
        head |= _hair_by_colour(crop, zone, fringe, escapes, head, barrier, chin, threshold)
    full = cv2.resize(head.astype(np.uint8), (X1 - X0, Y1 - Y0), interpolation=cv2.INTER_NEAREST)
    return window, full > 0


def _face_by_colour(
    crop: np.ndarray,
    ellipse: np.ndarray,
    core: np.ndarray,
    seed: np.ndarray,
    outside: np.ndarray,
    barrier: np.ndarray,
    grow: np.ndarray,
) -> np.ndarray:
    """The part of the face ``ellipse`` (hxw bool) whose colour is the head's rather than the
    background's: colour histograms of the ``seed`` (the face's core and the fringe of hair
    over it) against ``outside`` (the window beside and above the head zone) classify each
    pixel; the face is the part connected to the ``core`` (the face's central ellipse), its
    holes (eyes, mouth) filled, with the line art along it - or the whole ellipse where that
    part covers less than half the core (colour cannot tell the face from the background). A
    square face box is wider than a face in three-quarter view: the whole ellipse would take
    in the background beside the cheeks. ``crop``: hxwx3 uint8 RGB; the masks hxw bool."""
    if not outside.any():
        return ellipse
    face = ellipse & (_log_ratio(crop, seed, outside) > 0)
    face = ndimage.binary_fill_holes(_touching(face, core)) & ellipse
    if (face & core).sum() < 0.5 * core.sum():  # colour cannot tell: the whole ellipse
        return ellipse
    face |= (cv2.dilate(face.astype(np.uint8), grow) > 0) & barrier & ellipse
    return face


def _hair_by_colour(
    crop: np.ndarray,
    zone: np.ndarray,
    fringe: np.ndarray,
    outside: np.ndarray,
    head: np.ndarray,
    barrier: np.ndarray,
    chin: int,
    threshold: float,
) -> np.ndarray:
    """hxw bool: the hair found by its colour, for art whose soft outlines leave the hair open
    to the background (the line-art components miss it): pixels of the head zone above the
    ``chin`` row whose colour is more the ``fringe``'s (the top of the face box, without the
    face's core) than the background's (``outside``, beside and above the zone) by more than
    ``threshold`` (log-odds), not line art (``barrier``) and connected to the ``head`` found
    so far. Hair of the background's own colour stays undecided (log-odds near 0) and is not
    taken."""
    if not outside.any() or not fringe.any():
        return np.zeros(zone.shape, bool)
    hair = zone & ~barrier & (_log_ratio(crop, fringe, outside) > threshold)
    hair[chin:] = False
    return hair & _touching(hair | head, head)


def _log_ratio(crop: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """hxw log P(colour | ``fg``) / P(colour | ``bg``) from coarse colour histograms of the
    head crop (hxwx3 uint8 RGB; ``fg`` / ``bg`` hxw bool samples)."""
    model = ColourModel(COLOUR_BINS, 1.0).fit(crop, fg.astype(np.float64), bg.astype(np.float64))
    return model.log_ratio(crop)


def _touching(mask: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """hxw bool: the 4-connected components of ``mask`` that touch ``anchor`` (hxw bool)."""
    _, comp = cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)
    touch = np.unique(comp[anchor & mask])
    return np.isin(comp, touch[touch > 0])


def pose_face_box(ch: Character, cfg: dict) -> BoxXYXY | None:
    """The face box (XYXY px, square) that ``ch``'s confident MediaPipe Pose head points imply,
    or None: at least ``min_points`` of them (nose, eyes, ears, mouth) and both shoulders at
    ``min_confidence``. Its side is ``width_shoulders`` x the shoulders' width (an anime face is
    about as wide as the shoulders: median 1.02 on dev, 0.92 on dev2); its centre is where each
    point puts it (:data:`POSE_FACE_Y`). None when that side is below ``min_box_share`` x the
    character box's width (a pose read into a background pattern draws a tiny figure)."""
    conf = float(cfg["min_confidence"])
    points = ch.keypoints or {}
    shoulders = [points.get(f"pose.{side}_shoulder") for side in ("left", "right")]
    if any(p is None or p[2] < conf for p in shoulders):
        return None
    side = float(cfg["width_shoulders"]) * abs(shoulders[0][0] - shoulders[1][0])
    if side < float(cfg["min_box_share"]) * (ch.box[2] - ch.box[0]):
        return None
    xs, ys = [], []
    for name, p in points.items():
        part = pose_part(name)
        if part in POSE_FACE_Y and p[2] >= conf:
            xs.append(p[0])
            ys.append(p[1] - POSE_FACE_Y[part] * side)
    if len(xs) < int(cfg["min_points"]):
        return None
    cx, cy = float(np.mean(xs)), float(np.mean(ys))
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def head_mask(
    image: np.ndarray,
    characters: Sequence[Character],
    cfg: dict | None = None,
    cut: np.ndarray | None = None,
) -> np.ndarray:
    """HxW bool: the heads (face + the hair closed around it by line art) of the characters
    with a face box (or one their pose implies), in ``image`` (HxWx3 uint8 RGB) px. See the
    module docstring.

    ``cut`` (HxW bool, the segmenter's foreground): only the heads it lost are given back - those
    whose face seed (:func:`face_seed`) is more than ``repair_above`` outside it; a head the cut
    already holds is left to the cut's own, finer outline."""
    c = {**DEFAULTS, **(cfg or {})}
    out = np.zeros(image.shape[:2], bool)
    if not c["enabled"]:
        return out
    pose_face = {**DEFAULTS["pose_face"], **(c.get("pose_face") or {})}
    for ch in characters:
        face_box = ch.face_box
        if face_box is None and pose_face["enabled"]:
            face_box = pose_face_box(ch, pose_face)
        if face_box is None:
            continue
        if cut is not None:
            seed = face_seed(cut.shape, face_box, float(c["fringe"]))
            lost = (seed & ~cut).sum() / max(1, seed.sum())
            if lost <= float(c["repair_above"]):
                continue
        window, head = head_of(image, face_box, c)
        if head.size:
            out[window] |= head
    return out
