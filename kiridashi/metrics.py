"""Objective mask metrics against ground truth.

All functions take HxW masks (bool, or uint8 where >= 128 counts as foreground) of the SAME shape;
different shapes raise ValueError. Conventions for empty masks: when both prediction and GT are
empty every score is 1.0 (a perfect "nothing here"); when exactly one is empty IoU, Dice and the
boundary scores are 0.0, precision of an empty prediction is 0.0 and recall against an empty GT
is 1.0 (nothing was missed).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass
class MaskScores:
    iou: float
    dice: float
    precision: float
    recall: float
    boundary_f: float
    boundary_precision: float
    boundary_recall: float

    def to_dict(self) -> dict:
        return asdict(self)


def _as_bool(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be HxW, got shape {mask.shape}")
    return mask if mask.dtype == bool else mask >= 128 if mask.dtype == np.uint8 else mask > 0.5


def _check(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, g = _as_bool(pred), _as_bool(gt)
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape[::-1]} and GT {g.shape[::-1]} differ in size (WxH)")
    return p, g


def _ratio(num: float, den: float, both_empty: float = 1.0) -> float:
    return float(num / den) if den > 0 else both_empty


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    p, g = _check(pred, gt)
    return _ratio(np.logical_and(p, g).sum(), np.logical_or(p, g).sum())


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    p, g = _check(pred, gt)
    return _ratio(2.0 * np.logical_and(p, g).sum(), float(p.sum() + g.sum()))


def boundary_tolerance(shape: tuple[int, int]) -> float:
    """max(2 px, 0.4 % of the image diagonal) for an (H, W) shape."""
    h, w = shape[:2]
    return max(2.0, 0.004 * math.hypot(h, w))


def boundary(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels: the mask minus its 3x3 erosion (HxW bool). Image borders do not count."""
    m = _as_bool(mask).astype(np.uint8)
    eroded = cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    return (m > 0) & (eroded == 0)


def boundary_scores(pred: np.ndarray, gt: np.ndarray, tol: float | None = None) -> tuple:
    """(F, precision, recall) of boundary pixels matched within ``tol`` px (Euclidean)."""
    p, g = _check(pred, gt)
    tol = boundary_tolerance(p.shape) if tol is None else tol
    bp, bg = boundary(p), boundary(g)
    n_p, n_g = int(bp.sum()), int(bg.sum())
    if n_p == 0 and n_g == 0:
        return 1.0, 1.0, 1.0
    if n_p == 0 or n_g == 0:
        return 0.0, 0.0, 0.0
    # exact Euclidean distance from every pixel to the nearest boundary pixel of the other mask
    dist_to_g = cv2.distanceTransform((~bg).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    dist_to_p = cv2.distanceTransform((~bp).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    precision = float((dist_to_g[bp] <= tol).mean())
    recall = float((dist_to_p[bg] <= tol).mean())
    f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return f, precision, recall


def score_masks(pred: np.ndarray, gt: np.ndarray) -> MaskScores:
    """Every metric for one prediction/GT pair of the same HxW shape."""
    p, g = _check(pred, gt)
    inter = float(np.logical_and(p, g).sum())
    union = float(np.logical_or(p, g).sum())
    ps, gs = float(p.sum()), float(g.sum())
    bf, bp, br = boundary_scores(p, g)
    return MaskScores(
        iou=_ratio(inter, union),
        dice=_ratio(2 * inter, ps + gs),
        precision=_ratio(inter, ps, both_empty=1.0 if gs == 0 else 0.0),
        recall=_ratio(inter, gs, both_empty=1.0 if ps == 0 else 1.0),
        boundary_f=bf,
        boundary_precision=bp,
        boundary_recall=br,
    )


def box_iou(a, b) -> float:
    """IoU of two XYXY boxes."""
    ix0, iy0 = max(a[0], b[0]), max(a[1], b[1])
    ix1, iy1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, ix1 - ix0) * max(0.0, iy1 - iy0)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / area) if area > 0 else 0.0


def containment(inner, outer) -> float:
    """Share of the XYXY box ``inner``'s area that lies inside the XYXY box ``outer``."""
    ix = max(0.0, min(inner[2], outer[2]) - max(inner[0], outer[0]))
    iy = max(0.0, min(inner[3], outer[3]) - max(inner[1], outer[1]))
    area = max(1e-6, (inner[2] - inner[0]) * (inner[3] - inner[1]))
    return ix * iy / area


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """XYXY bounding box (exclusive max) of a mask, or None when empty."""
    m = _as_bool(mask)
    rows = np.flatnonzero(m.any(axis=1))  # row and column projections: no pixel list
    if rows.size == 0:
        return None
    cols = np.flatnonzero(m.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def mask_window(mask: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """(rows, cols) slices of a mask's bounding box grown by ``margin`` px on every side and
    clipped to the frame, or None when the mask is empty. Work limited to the window around a
    figure costs what the figure's size costs, not the image's."""
    box = mask_box(mask)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    h, w = mask.shape
    return (
        slice(max(0, y0 - margin), min(h, y1 + margin)),
        slice(max(0, x0 - margin), min(w, x1 + margin)),
    )


def match_boxes(pred: list, gt: list, thr: float = 0.5) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching by box IoU >= thr; returns (pred index, gt index, iou)."""
    pairs = sorted(
        ((box_iou(p, g), i, j) for i, p in enumerate(pred) for j, g in enumerate(gt)),
        reverse=True,
    )
    used_p, used_g, out = set(), set(), []
    for v, i, j in pairs:
        if v < thr:
            break
        if i in used_p or j in used_g:
            continue
        used_p.add(i)
        used_g.add(j)
        out.append((i, j, v))
    return out
