"""Preprocessing: long-side limit, light denoise, CLAHE.

Input and output are HxWx3 uint8 RGB arrays. The work resolution is the oriented input scaled so
its long side is at most ``max_side`` (never upscaled); everything downstream runs at that size and
the merge step maps masks back to the input's full size.
"""

from __future__ import annotations

import cv2
import numpy as np


def work_scale(height: int, width: int, max_side: int) -> float:
    """Factor (<= 1) that brings the long side of an HxW image down to ``max_side``."""
    long_side = max(height, width)
    return 1.0 if max_side <= 0 or long_side <= max_side else max_side / long_side


def resize_to_work(rgb: np.ndarray, max_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = work_scale(h, w, max_side)
    if s == 1.0:
        return rgb
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def denoise(rgb: np.ndarray, diameter: int, sigma_color: float, sigma_space: float) -> np.ndarray:
    """Edge-preserving bilateral filter: removes JPEG noise, keeps line art."""
    return cv2.bilateralFilter(rgb, diameter, sigma_color, sigma_space)


def clahe(rgb: np.ndarray, clip_limit: float, tile_grid: int) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation on the L channel of Lab."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    op = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(tile_grid, tile_grid))
    lab[:, :, 0] = op.apply(lab[:, :, 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def preprocess_image(rgb: np.ndarray, cfg: dict) -> np.ndarray:
    """Apply the ``preprocess`` config section to an oriented RGB image (HxWx3 uint8)."""
    out = resize_to_work(rgb, int(cfg.get("max_side", 0)))
    dn = cfg.get("denoise", {})
    if dn.get("enabled", False):
        out = denoise(out, int(dn["diameter"]), float(dn["sigma_color"]), float(dn["sigma_space"]))
    cl = cfg.get("clahe", {})
    if cl.get("enabled", False):
        out = clahe(out, float(cl["clip_limit"]), int(cl["tile_grid"]))
    return np.ascontiguousarray(out)
