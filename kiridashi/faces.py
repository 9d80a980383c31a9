"""Where a face is in a face box: filled ellipses about the box's centre.

A face detector's box (XYXY px) is square and fits the face loosely - in three-quarter view it
takes in background beside the cheek - so the face's *core*, the ellipse of ``FACE_CORE`` x the
box, is where the face must be whatever the box's fit. The head repair
(:mod:`kiridashi.segmenters.heads`) seeds from it; the ``face_outside`` check
(:mod:`kiridashi.checks`) measures it.
"""

from __future__ import annotations

import cv2
import numpy as np

from kiridashi.types import BoxXYXY

FACE_CORE = 0.6  # share of the face box


def ellipse_mask(hw: tuple[int, int], centre, axes) -> np.ndarray:
    """HxW bool filled ellipse (centre (x, y) / half axes in px, rounded; axes at least 1)."""
    out = np.zeros(hw, np.uint8)
    c = (int(round(centre[0])), int(round(centre[1])))
    a = (max(1, int(round(axes[0]))), max(1, int(round(axes[1]))))
    cv2.ellipse(out, c, a, 0, 0, 360, 1, -1)
    return out > 0


def face_ellipse(hw: tuple[int, int], face_box: BoxXYXY, share: float) -> np.ndarray:
    """HxW bool: the ellipse of ``share`` x the face box (XYXY, in the px of ``hw``) about its
    centre (:data:`FACE_CORE`: the face's core; 1: the ellipse inscribed in the box)."""
    fx0, fy0, fx1, fy1 = face_box
    centre = ((fx0 + fx1) / 2, (fy0 + fy1) / 2)
    return ellipse_mask(hw, centre, (share * (fx1 - fx0) / 2, share * (fy1 - fy0) / 2))
