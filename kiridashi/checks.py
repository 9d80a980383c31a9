"""No-reference quality checks: flag suspicious cut-outs without ground truth.

Every check measures one character's mask (HxW bool, full image frame) on its image (HxWx3 uint8
RGB) and returns a flag ``{"check", "character", "score", "reason"}`` when the measured score is
past its threshold (``evaluate.checks`` in the config). Scores are the measured quantity itself
(a count, a share, pixels), so the reason can quote it against the threshold.

Checks: ``pieces`` (mask split into many parts), ``holes`` (enclosed background inside the mask),
``jagged`` (stair-stepped or noisy outline), ``halo`` (a fringe of background colour along the
inside of the outline), ``cut_off`` (a straight mask edge across which the image continues
smoothly: the character was cut by a box), ``tiny`` / ``giant`` (area share of the image),
``small_crop`` (the cut-out's bounding box is below a minimum side), ``keypoints_outside``
(confident face/pose points fall outside the mask), ``face_outside`` (the face is not in its
character's mask: a headless crop; for a character without a face box, its confident pose head
points - nose, eyes, ears, mouth - stand in for the face).
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from kiridashi.faces import face_ellipse
from kiridashi.keypoints import is_head_point
from kiridashi.metrics import boundary_tolerance, mask_box

CHECKS = (
    "pieces", "holes", "jagged", "halo", "cut_off", "tiny", "giant", "small_crop",
    "keypoints_outside", "face_outside",
)  # fmt: skip
DEFAULTS: dict[str, Any] = {
    "max_pieces": 3,
    "min_piece_fraction": 0.01,
    "max_hole_fraction": 0.05,
    "min_hole_fraction": 0.001,
    "max_jaggedness": 1.3,
    "max_halo_share": 0.35,
    "halo_colour_tolerance": 12.0,
    "max_cut_share": 0.25,
    "min_cut_px": 24,
    "cut_colour_tolerance": 8.0,
    "min_area_fraction": 0.01,
    "max_area_fraction": 0.7,
    "min_crop_px": 64,
    "max_keypoints_outside": 0.25,
    "keypoint_confidence": 0.3,
    "max_face_outside": 0.2,
    "face_core": 0.6,
    "head_point_confidence": 0.9,
    "min_head_points": 3,
    "max_head_points_outside": 0.5,
}


def _flag(check: str, character: int | None, score: float, reason: str) -> dict[str, Any]:
    return {
        "check": check,
        "character": character,
        "score": round(float(score), 4),
        "reason": reason,
    }


def _scale_px(shape: tuple[int, int], share: float = 0.002, floor: float = 2.0) -> int:
    """A length in px that grows with the image diagonal (``share`` of it, at least ``floor``)."""
    return max(int(floor), round(share * math.hypot(*shape[:2])))


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def count_pieces(mask: np.ndarray, min_fraction: float) -> int:
    """Connected parts (8-connected) holding at least ``min_fraction`` of the mask's area."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    return int((areas >= min_fraction * max(1, areas.sum())).sum()) if n > 1 else 0


def hole_fraction(mask: np.ndarray, min_fraction: float) -> float:
    """Area of enclosed background (holes of at least ``min_fraction`` of the filled mask) / filled."""
    m = np.pad(mask.astype(np.uint8), 1)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(1 - m, connectivity=4)
    outside = labels[0, 0]
    filled_area = float(m.sum())
    holes = [
        stats[i, cv2.CC_STAT_AREA] for i in range(1, n) if i != outside
    ]  # components not reaching the padded border are enclosed
    filled_area += float(sum(holes))
    big = [a for a in holes if a >= min_fraction * filled_area]
    return float(sum(big)) / filled_area if filled_area else 0.0


def _perimeter(mask: np.ndarray) -> float:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    return float(sum(cv2.arcLength(c, True) for c in contours))


def jaggedness(mask: np.ndarray, sigma: float) -> float:
    """Outline length / outline length after a Gaussian smoothing of ``sigma`` px (>= 1 is rough)."""
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)
    smooth = _perimeter(soft >= 0.5)
    return _perimeter(mask) / smooth if smooth > 0 else 1.0


def _local_mean(lab: np.ndarray, region: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean Lab colour of ``region`` pixels in a ``window`` box around every pixel, and coverage."""
    w = region.astype(np.float32)
    cover = cv2.blur(w, (window, window))
    total = cv2.blur(lab * w[:, :, None], (window, window))
    return total / np.maximum(cover, 1e-6)[:, :, None], cover


def halo_share(lab: np.ndarray, mask: np.ndarray, ring: int, tolerance: float) -> float:
    """Share of the mask's inner edge ring whose colour matches the local outside, not the inside.

    lab: HxWx3 float32 CIELAB; ring: ring width in px. A cut-out that reaches a few px into the
    background carries that background colour in its inner ring (a "halo"); line art or the
    character's own colours do not match the outside.
    """
    inner_core = cv2.erode(mask.astype(np.uint8), _disc(ring)) > 0
    inner_ring = mask & ~inner_core
    deep = inner_core & ~(cv2.erode(mask.astype(np.uint8), _disc(3 * ring)) > 0)
    outer = (cv2.dilate(mask.astype(np.uint8), _disc(ring)) > 0) & ~mask
    window = 8 * ring + 1
    out_mean, out_cover = _local_mean(lab, outer, window)
    in_mean, in_cover = _local_mean(lab, deep, window)
    valid = inner_ring & (out_cover > 0.02) & (in_cover > 0.02)
    if valid.sum() == 0:
        return 0.0
    px = lab[valid]
    d_out = np.linalg.norm(px - out_mean[valid], axis=1)
    d_in = np.linalg.norm(px - in_mean[valid], axis=1)
    halo = (d_out < d_in) & (d_out < tolerance)
    return float(halo.mean())


def _runs(flags: np.ndarray) -> int:
    """Longest run of True along the last axis of a 2-D bool array (0 when none)."""
    if not flags.any():
        return 0
    padded = np.zeros((flags.shape[0], flags.shape[1] + 2), np.int8)
    padded[:, 1:-1] = flags
    step = np.diff(padded, axis=1)
    # runs start (+1) and end (-1) in the same row, in row-major order: they pair up
    starts, ends = np.nonzero(step == 1)[1], np.nonzero(step == -1)[1]
    return int((ends - starts).max())


def straight_cut(lab: np.ndarray, mask: np.ndarray, step: int, tolerance: float) -> tuple[int, str]:
    """Longest straight horizontal or vertical mask edge (px) across which the image continues.

    An edge pixel "continues" when the colours ``step`` px inside and ``step`` px outside it differ
    by less than ``tolerance`` (Lab): no image edge there, so the cut is not the character's
    outline. Edges on the image border never count. Returns (length, "row"/"column").
    """
    best, where = 0, "row"
    for axis, name in ((0, "row"), (1, "column")):
        m = mask if axis == 0 else mask.T
        c = lab if axis == 0 else lab.transpose(1, 0, 2)
        h = m.shape[0]
        if h <= 2 * step:
            continue
        for sign in (1, -1):  # mask above/left of the edge, then below/right
            inside = m[: h - 1] if sign == 1 else m[1:]
            outside = m[1:] if sign == 1 else m[: h - 1]
            edge = np.zeros_like(m)
            rows = slice(0, h - 1) if sign == 1 else slice(1, h)
            edge[rows] = inside & ~outside
            y_in = np.arange(h) - sign * (step - 1)
            y_out = np.arange(h) + sign * step
            ok = (y_in >= 0) & (y_in < h) & (y_out >= 0) & (y_out < h)
            edge[~ok] = False
            rows_e, cols_e = np.nonzero(edge)  # colours compared at the edge pixels only
            yy = np.clip(y_in, 0, h - 1)[rows_e]
            yo = np.clip(y_out, 0, h - 1)[rows_e]
            diff = np.linalg.norm(c[yy, cols_e] - c[yo, cols_e], axis=1)
            flat = np.zeros_like(edge)
            flat[rows_e, cols_e] = diff < tolerance
            run = _runs(flat)
            if run > best:
                best, where = run, name
    return best, where


def keypoint_names_outside(
    character: dict, mask: np.ndarray, min_conf: float, tolerance_px: int
) -> tuple[list[str], int]:
    """(names of confident keypoints outside ``mask`` grown by ``tolerance_px``, confident count)."""
    grown = cv2.dilate(mask.astype(np.uint8), _disc(tolerance_px)) > 0 if tolerance_px else mask
    h, w = mask.shape
    outside, total = [], 0
    for name, p in (character.get("keypoints") or {}).items():
        if len(p) > 2 and p[2] < min_conf:
            continue
        total += 1
        x, y = int(round(p[0])), int(round(p[1]))
        if not (0 <= x < w and 0 <= y < h) or not grown[y, x]:
            outside.append(name)
    return outside, total


def face_outside_share(
    face_box: list[float] | None, mask: np.ndarray, core: float = 1.0
) -> float | None:
    """Share of the face outside ``mask`` (HxW bool): of the ellipse inscribed in ``face_box``
    (XYXY px), shrunk to ``core`` x its size about its centre (a face detector's square box is
    wider than a face in three-quarter view: its whole ellipse takes in background beside the
    cheek; :mod:`kiridashi.faces`). None without a face box or when it lies outside the image."""
    if not face_box:
        return None
    face = face_ellipse(mask.shape, tuple(float(v) for v in face_box), core)
    area = int(face.sum())
    if area == 0:
        return None
    return float((face & ~mask).sum()) / area


def head_points_outside(
    keypoints: dict | None, mask: np.ndarray, min_conf: float, tolerance_px: int
) -> tuple[int, int]:
    """(confident pose head points - ``pose.`` nose, eyes, ears, mouth - outside ``mask`` (HxW
    bool) grown by ``tolerance_px``, their count). Where no face detector found the face, the
    pose model's face points say where the head is."""
    head = {name: p for name, p in (keypoints or {}).items() if is_head_point(name)}
    outside, total = keypoint_names_outside({"keypoints": head}, mask, min_conf, tolerance_px)
    return len(outside), total


def check_character(
    rgb: np.ndarray, mask: np.ndarray, character: dict, index: int, cfg: dict | None = None
) -> list[dict[str, Any]]:
    """Flags for one character. rgb: HxWx3 uint8 RGB; mask: HxW bool, same frame."""
    c = {**DEFAULTS, **(cfg or {})}
    flags: list[dict[str, Any]] = []
    h, w = mask.shape
    area = int(mask.sum())
    if area == 0:
        return [_flag("tiny", index, 0.0, "empty mask")]
    share = area / float(h * w)
    if share < c["min_area_fraction"]:
        flags.append(_flag("tiny", index, share, f"mask covers {share:.2%} of the image "
                           f"(< {c['min_area_fraction']:.2%})"))  # fmt: skip
    if share > c["max_area_fraction"]:
        flags.append(_flag("giant", index, share, f"mask covers {share:.2%} of the image "
                           f"(> {c['max_area_fraction']:.2%})"))  # fmt: skip
    x0, y0, x1, y1 = mask_box(mask)
    if min(x1 - x0, y1 - y0) < c["min_crop_px"]:
        flags.append(_flag("small_crop", index, min(x1 - x0, y1 - y0),
                           f"cut-out is {x1 - x0}x{y1 - y0} px (a side < {c['min_crop_px']} px)"))  # fmt: skip
    pieces = count_pieces(mask, c["min_piece_fraction"])
    if pieces > c["max_pieces"]:
        flags.append(_flag("pieces", index, pieces, f"mask split into {pieces} parts "
                           f"(> {c['max_pieces']}, parts >= {c['min_piece_fraction']:.0%} of it)"))  # fmt: skip
    # the remaining checks work on the mask's neighbourhood only
    ring = _scale_px((h, w))
    pad = 12 * ring
    box = (slice(max(0, y0 - pad), min(h, y1 + pad)), slice(max(0, x0 - pad), min(w, x1 + pad)))
    m = mask[box]
    holes = hole_fraction(m, c["min_hole_fraction"])
    if holes > c["max_hole_fraction"]:
        flags.append(_flag("holes", index, holes, f"enclosed holes are {holes:.1%} of the "
                           f"filled mask (> {c['max_hole_fraction']:.1%})"))  # fmt: skip
    jag = jaggedness(m, sigma=float(ring))
    if jag > c["max_jaggedness"]:
        flags.append(_flag("jagged", index, jag, f"outline {jag:.2f}x longer than its "
                           f"{ring}-px smoothing (> {c['max_jaggedness']})"))  # fmt: skip
    lab = cv2.cvtColor(rgb[box].astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    halo = halo_share(lab, m, ring, c["halo_colour_tolerance"])
    if halo > c["max_halo_share"]:
        flags.append(_flag("halo", index, halo, f"{halo:.0%} of the inner edge has the "
                           f"background's colour (> {c['max_halo_share']:.0%})"))  # fmt: skip
    cut, along = straight_cut(lab, m, 2 * ring, c["cut_colour_tolerance"])
    extent = (x1 - x0) if along == "row" else (y1 - y0)
    cut_share = cut / float(max(1, extent))
    if cut >= c["min_cut_px"] and cut_share > c["max_cut_share"]:
        flags.append(_flag("cut_off", index, cut_share, f"straight {along} edge of {cut} px "
                           f"({cut_share:.0%} of the cut-out) where the image continues across it "
                           f"(> {c['max_cut_share']:.0%})"))  # fmt: skip
    tolerance = round(boundary_tolerance((h, w)))  # as the boundary F and the report use
    outside, total = keypoint_names_outside(character, mask, c["keypoint_confidence"], tolerance)
    if total and len(outside) / total > c["max_keypoints_outside"]:
        names = ", ".join(n.split(".", 1)[-1] for n in outside[:6])
        more = f" +{len(outside) - 6}" if len(outside) > 6 else ""
        flags.append(_flag("keypoints_outside", index, len(outside) / total,
                           f"{len(outside)} of {total} face/pose points outside the mask: "
                           f"{names}{more}"))  # fmt: skip
    face_out = face_outside_share(character.get("face_box"), mask, float(c["face_core"]))
    if face_out is not None and face_out > c["max_face_outside"]:
        flags.append(_flag("face_outside", index, face_out, f"{face_out:.0%} of the face is "
                           f"outside the mask (> {c['max_face_outside']:.0%}): headless crop"))  # fmt: skip
    if face_out is None:  # no face box: the pose's face points, where it saw them
        keypoints = character.get("keypoints")
        out, seen = head_points_outside(keypoints, mask, c["head_point_confidence"], tolerance)
        if seen >= c["min_head_points"] and out / seen > c["max_head_points_outside"]:
            flags.append(_flag("face_outside", index, out / seen, f"{out} of {seen} pose head "
                               f"points outside the mask (> {c['max_head_points_outside']:.0%}): "
                               "headless crop"))  # fmt: skip
    return flags
