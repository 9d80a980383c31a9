"""Merging per-character soft masks into clean final masks and RGBA crops.

Masks are HxW arrays; soft masks are float32 in [0, 1]; final masks are bool. Boxes are XYXY
pixels with exclusive max. Each pixel belongs to at most one character.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from kiridashi.edges import decontaminate, edge_alpha
from kiridashi.io import encode_png
from kiridashi.metrics import mask_window


@dataclass
class CharacterCut:
    """A final character: mask (HxW bool, full input size), alpha (HxW uint8), crop box XYXY."""

    index: int
    mask: np.ndarray
    alpha: np.ndarray
    box: tuple[int, int, int, int]
    area_fraction: float


def combine_soft_masks(groups: list[list[np.ndarray]], weights: list[float]) -> list[np.ndarray]:
    """Confidence-weighted mean of several sources' soft masks, per character.

    groups[s][k] is source s's HxW soft mask of character k; weights[s] its confidence.
    """
    if len(groups) == 1:
        return [np.asarray(m, np.float32) for m in groups[0]]
    total = float(sum(weights)) or 1.0
    out = []
    for k in range(len(groups[0])):
        acc = sum(w * np.asarray(g[k], np.float32) for g, w in zip(groups, weights, strict=True))
        out.append(acc / total)
    return out


def assign_pixels(soft: list[np.ndarray], threshold: float) -> list[np.ndarray]:
    """Binary masks where each pixel goes to the most probable character above ``threshold``."""
    if not soft:
        return []
    stack = np.stack([np.asarray(m, np.float32) for m in soft])
    best = stack.argmax(axis=0)
    above = stack.max(axis=0) >= threshold
    return [(best == k) & above for k in range(len(soft))]


def remove_specks(mask: np.ndarray, min_fraction: float) -> np.ndarray:
    """Drop connected components smaller than ``min_fraction`` of the largest one."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.zeros(n, bool)
    keep[1:] = areas >= max(1.0, min_fraction * areas.max())
    return keep[labels]


def fill_holes(
    mask: np.ndarray, max_fraction: float, image: np.ndarray | None = None
) -> np.ndarray:
    """Fill enclosed holes smaller than ``max_fraction`` of the mask area.

    Larger enclosed regions (the background seen between an arm and the body) are kept open.
    """
    inv = (~mask).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    if n <= 1:
        return mask
    h, w = mask.shape
    touches = np.zeros(n, bool)
    for edge in (labels[0, :], labels[-1, :], labels[:, 0], labels[:, -1]):
        touches[np.unique(edge)] = True
    limit = max_fraction * max(1, int(mask.sum()))
    small = (stats[:, cv2.CC_STAT_AREA] <= limit) & ~touches
    small[0] = False if inv[labels == 0].any() else small[0]
    out = mask.copy()
    out[small[labels] & (inv > 0)] = True
    return out


def clean_mask(mask: np.ndarray, cfg: dict) -> np.ndarray:
    """Holes filled, specks removed, optional light morphological smoothing (HxW bool)."""
    out = remove_specks(mask, float(cfg.get("min_speck_fraction", 0.02)))
    out = fill_holes(out, float(cfg.get("max_hole_fraction", 0.01)))
    radius = int(cfg.get("smooth_radius", 0))
    if radius > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        out = cv2.morphologyEx(out.astype(np.uint8), cv2.MORPH_OPEN, k).astype(bool) | (
            out & _thin_structures(out, radius)
        )
    return out


def _thin_structures(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels an opening of ``radius`` would remove (hair strands): kept to preserve thin detail."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, k).astype(bool)
    return mask & ~opened


def upscale_soft(soft: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize an HxW soft mask to ``shape`` (H, W) with bilinear interpolation."""
    if soft.shape == shape:
        return soft
    return cv2.resize(soft.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def crop_box(mask: np.ndarray, padding: float, min_side: int) -> tuple[int, int, int, int]:
    """XYXY crop around the mask, padded by ``padding`` x its size, at least ``min_side`` px."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    pad = int(round(padding * max(x1 - x0, y1 - y0)))
    x0, y0, x1, y1 = x0 - pad, y0 - pad, x1 + pad, y1 + pad
    if x1 - x0 < min_side:
        grow = min_side - (x1 - x0)
        x0, x1 = x0 - grow // 2, x1 + grow - grow // 2
    if y1 - y0 < min_side:
        grow = min_side - (y1 - y0)
        y0, y1 = y0 - grow // 2, y1 + grow - grow // 2
    return max(0, x0), max(0, y0), min(w, x1), min(h, y1)


def rgba_crop(
    rgb: np.ndarray, alpha: np.ndarray, box: tuple[int, int, int, int], edges: dict | None = None
) -> np.ndarray:
    """HxWx4 RGBA cut-out; fully transparent pixels get black RGB (no hidden background).

    With ``edges.decontaminate`` the colours of partly transparent pixels are decontaminated
    (:func:`decontaminate`).
    """
    x0, y0, x1, y1 = box
    rgb_c = rgb[y0:y1, x0:x1]
    a = alpha[y0:y1, x0:x1]
    edges = edges or {}
    if edges.get("mode", "hard") != "hard" and edges.get("decontaminate", False):
        rgb_c = decontaminate(rgb_c, a, int(edges.get("decontaminate_box_px", 3)))
    out = np.dstack([rgb_c, a]).astype(np.uint8)
    out[a == 0, :3] = 0
    return out


def merge_characters(
    soft_masks: list[np.ndarray], full_shape: tuple[int, int], cfg: dict
) -> list[CharacterCut]:
    """Final characters from per-character soft masks (work resolution) for a full-size image.

    Steps: upscale to full size, one owner per pixel, clean-up, drop characters below
    ``min_area_fraction`` of the image, alpha with the configured edge mode.
    """
    h, w = full_shape
    soft = [upscale_soft(np.asarray(m, np.float32), full_shape) for m in soft_masks]
    threshold = float(cfg.get("threshold", 0.5))
    # assignment and clean-up in the window of the pixels some mask puts at the threshold: same
    # masks as on the whole frame (nothing outside is foreground, and the window's background
    # ring links every background region reaching its edge to the outside, as the frame does)
    above = np.maximum.reduce(soft) >= threshold if soft else np.zeros(full_shape, bool)
    window = mask_window(above, 2 + max(0, int(cfg.get("smooth_radius", 0))))
    roi = window if window is not None else (slice(None), slice(None))
    masks = assign_pixels([m[roi] for m in soft], threshold)
    cuts: list[CharacterCut] = []
    min_area = float(cfg.get("min_area_fraction", 0.002)) * h * w
    edges = cfg.get("edges", {})
    for k, part in enumerate(masks):
        mask = np.zeros(full_shape, bool)
        mask[roi] = clean_mask(part, cfg)
        area = int(mask.sum())
        if area < min_area:
            continue
        box = crop_box(mask, float(cfg.get("crop_padding", 0.05)), int(cfg.get("min_crop_px", 64)))
        cuts.append(
            CharacterCut(
                index=k,
                mask=mask,
                alpha=edge_alpha(mask, soft[k], edges),
                box=box,
                area_fraction=area / float(h * w),
            )
        )
    return cuts


def _scale_point(p, s):
    return [float(v) * s for v in p[:2]] + [float(v) for v in p[2:]]


def build_merge_result(full_rgb: np.ndarray, pre: dict, seg: dict, cfg: dict) -> dict:
    """Merge soft masks into final characters on the full-size image; encode mask and crops."""
    full_hw = tuple(full_rgb.shape[:2])
    work_h = pre["image"].shape[0]
    s = full_hw[0] / float(work_h)
    soft = [m.astype(np.float32) / 255.0 for m in seg["masks"]]
    cuts = merge_characters(soft, full_hw, cfg)
    union = np.zeros(full_hw, np.uint8)
    alpha_union = np.zeros(full_hw, np.uint8)
    characters = []
    for n, cut in enumerate(cuts):
        union[cut.mask] = 255
        alpha_union = np.maximum(alpha_union, cut.alpha)
        ch = seg["characters"][cut.index]
        characters.append(
            {
                "index": n,
                "box": [int(v) for v in cut.box],
                "character_box": [round(float(v) * s, 1) for v in ch["box"]],
                "face_box": [round(float(v) * s, 1) for v in ch["face_box"]]
                if ch.get("face_box")
                else None,
                "score": round(float(ch["score"]), 4),
                "detectors": ch.get("detectors", []),
                "scales": ch.get("scales", []),
                "keypoints": {k: _scale_point(v, s) for k, v in ch.get("keypoints", {}).items()},
                "area_fraction": round(cut.area_fraction, 5),
                "crop_png": encode_png(rgba_crop(full_rgb, cut.alpha, cut.box, cfg.get("edges"))),
            }
        )
    return {
        "size": [full_hw[1], full_hw[0]],
        "notes": list(pre.get("notes", [])),
        "mask_png": encode_png(union),
        "characters": characters,
        "rejected": [
            {**r, "box": [round(float(v) * s, 1) for v in r["box"]]}
            for r in seg.get("rejected", [])
        ],
    }
