"""Edges of a cut-out: alpha at the mask boundary and colour decontamination.

Masks are HxW bool, soft masks HxW float32 in [0, 1], alpha HxW uint8, colours HxWx3 uint8 RGB.
"""

from __future__ import annotations

import cv2
import numpy as np

from kiridashi.metrics import mask_window


def soft_alpha(mask: np.ndarray, feather_px: float) -> np.ndarray:
    """uint8 alpha from a bool mask: a linear ramp ``feather_px`` wide centred on the edge.

    0 gives hard 0/255 edges. The ramp uses the signed distance to the mask boundary, so the
    interior stays opaque and the background stays fully transparent beyond half the ramp.
    """
    if feather_px <= 0:
        return mask.astype(np.uint8) * 255
    alpha = np.clip(0.5 + signed_distance(mask) / float(feather_px), 0.0, 1.0)
    return (alpha * 255).round().astype(np.uint8)


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """HxW float32: distance to the boundary of a bool mask, positive inside, negative outside."""
    m = mask.astype(np.uint8)
    inside = cv2.distanceTransform(m, cv2.DIST_L2, 3)
    outside = cv2.distanceTransform(1 - m, cv2.DIST_L2, 3)
    return np.where(mask, inside - 0.5, 0.5 - outside)


def matte_alpha(mask: np.ndarray, soft: np.ndarray, band_px: float) -> np.ndarray:
    """uint8 alpha: the segmenter's edge-aware soft mask (HxW float in [0, 1]) within
    ``band_px`` of the mask boundary, opaque inside and transparent outside the band.

    Inside the band the soft value is kept on its own side of 0.5 (so ``alpha >= 128`` is the
    mask), which gives anti-aliased, image-guided edges instead of a fixed ramp.
    """
    dist = signed_distance(mask)
    inner = np.clip(soft, 0.5, 1.0)
    outer = np.clip(soft, 0.0, 0.499)
    alpha = np.where(mask, inner, outer)
    alpha = np.where(dist >= band_px, 1.0, np.where(dist <= -band_px, 0.0, alpha))
    return (alpha * 255).round().astype(np.uint8)


def edge_alpha(mask: np.ndarray, soft: np.ndarray, edges: dict) -> np.ndarray:
    """uint8 alpha of one character by ``edges.mode``: ``hard`` (0/255), ``soft`` with
    ``edges.alpha`` = ``matte`` (:func:`matte_alpha`) or ``ramp`` (:func:`soft_alpha`).

    Soft alpha is computed in the mask's bounding box grown by the edge width (the rest is 0), so
    its cost follows the character's size, not the image's.
    """
    if edges.get("mode", "hard") == "hard":
        return mask.astype(np.uint8) * 255
    matte = edges.get("alpha", "ramp") == "matte"
    width = float(edges.get("band_px", 2.0)) if matte else float(edges.get("feather_px", 1.5))
    window = mask_window(mask, int(np.ceil(width)) + 2)
    if window is None:
        return mask.astype(np.uint8) * 255
    out = np.zeros(mask.shape, np.uint8)
    if matte:
        out[window] = matte_alpha(mask[window], soft[window], width)
    else:
        out[window] = soft_alpha(mask[window], width)
    return out


def decontaminate(rgb: np.ndarray, alpha: np.ndarray, max_side: int) -> np.ndarray:
    """Foreground colours (HxWx3 uint8) of partly transparent pixels without the background
    colour mixed in, by ``pymatting.estimate_foreground_ml`` on a copy of at most ``max_side``
    px; opaque and fully transparent pixels keep their colour.
    """
    from pymatting import estimate_foreground_ml

    edge = (alpha > 0) & (alpha < 255)
    if not edge.any():
        return rgb
    h, w = alpha.shape
    s = min(1.0, max_side / float(max(h, w)))
    size = (max(1, round(w * s)), max(1, round(h * s)))
    small_rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA).astype(np.float64) / 255.0
    small_a = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA).astype(np.float64) / 255.0
    fg = estimate_foreground_ml(small_rgb, small_a)
    fg = cv2.resize(np.asarray(fg, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    out = rgb.copy()
    out[edge] = np.clip(fg[edge] * 255.0, 0, 255).round().astype(np.uint8)
    return out
