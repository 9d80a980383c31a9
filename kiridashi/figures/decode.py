"""From the figure net's output maps to figure boxes (numpy; what run time needs).

The net (:mod:`kiridashi.figures.net`) answers ``4 x h x w`` maps at stride ``stride`` of its
input: ``mask`` and ``centre`` logits and ``log_w`` / ``log_h`` box sizes in output cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from kiridashi.metrics import box_iou, containment

OUTPUT_STRIDE = 4  # the output maps' cell, in input px
STRIDE_MULTIPLE = 32  # input sides must be multiples of this (the net's deepest stride)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50.0, 50.0)))


@dataclass
class Figure:
    """box: XYXY in the net input's px; score: centre peak probability; mask_mean: mean figure
    probability inside the box (how much of it the net calls figure)."""

    box: tuple[float, float, float, float]
    score: float
    mask_mean: float


def decode(
    maps: np.ndarray,
    stride: int,
    min_score: float = 0.3,
    nms_iou: float = 0.5,
    max_figures: int = 20,
    max_contained: float = 0.8,
) -> list[Figure]:
    """Figures of one image, best first. ``maps``: 4 x h x w (mask, centre, log_w, log_h).

    A figure is a local maximum (3x3) of the centre probability >= ``min_score``; its box is
    centred on the peak cell with the size read there; overlapping boxes (IoU > ``nms_iou``, or
    more than ``max_contained`` of the weaker box inside the better one: a second peak on the
    same figure's legs or hair) keep the better one."""
    if maps.ndim != 3 or maps.shape[0] < 4:
        raise ValueError(f"figure maps must be 4 x h x w, got {maps.shape}")
    mask = sigmoid(maps[0])
    heat = sigmoid(maps[1]).astype(np.float32)
    peaks = (heat >= cv2.dilate(heat, np.ones((3, 3), np.uint8))) & (heat >= min_score)
    ys, xs = np.nonzero(peaks)
    order = np.argsort(-heat[ys, xs])[: 4 * max_figures]
    h, w = heat.shape
    found: list[Figure] = []
    for i in order:
        y, x = int(ys[i]), int(xs[i])
        bw = float(np.exp(np.clip(maps[2, y, x], -5, 8))) * stride
        bh = float(np.exp(np.clip(maps[3, y, x], -5, 8))) * stride
        cx, cy = (x + 0.5) * stride, (y + 0.5) * stride
        box = (
            max(0.0, cx - bw / 2),
            max(0.0, cy - bh / 2),
            min(float(w * stride), cx + bw / 2),
            min(float(h * stride), cy + bh / 2),
        )
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            continue
        if any(
            box_iou(box, f.box) > nms_iou or containment(box, f.box) > max_contained for f in found
        ):
            continue
        x0, y0, x1, y1 = (int(round(v / stride)) for v in box)
        inside = mask[y0 : max(y0 + 1, y1), x0 : max(x0 + 1, x1)]
        found.append(Figure(box, float(heat[y, x]), float(inside.mean()) if inside.size else 0.0))
        if len(found) >= max_figures:
            break
    return found
