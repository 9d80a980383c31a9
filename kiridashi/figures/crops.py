"""Training crops for the mask net: one character's box, grown and jittered, cut from a scene.

At run time the cut hands the mask net each character's box grown by a margin
(``segment.figure.margin``), resized so its long side is the net's input side. The box comes
from detection, so it is never exact: it may end at the knees, clip a hand, or sit off centre.
The crops here imitate that: the true visible box of a character of a
:class:`kiridashi.figures.synth.SceneSynth` scene, each side moved by a random share of the box
(mostly outwards, sometimes inwards), then widened to the aspect of the batch's input size.
Targets are the union alpha of every character in the crop (a neighbour is figure too).

Numpy / OpenCV only.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from kiridashi.figures.synth import Scene, SceneSynth
from kiridashi.types import BoxXYXY


@dataclass(frozen=True)
class CropConfig:
    """Box jitter (shares of the box's width / height) and the scene canvas the crops come from."""

    scene: tuple[int, int] = (640, 360)  # (W, H): the cut's work size for a 1280 x 720 image
    grow: tuple[float, float] = (0.05, 0.3)  # each side moved out by U(grow) ...
    p_inward: float = 0.2  # ... or, with this probability per side, in by U(0, inward)
    inward: float = 0.15
    min_box_px: int = 48  # characters smaller than this (box height, scene px) are skipped


def jitter_box(box: BoxXYXY, rng: np.random.Generator, cfg: CropConfig) -> BoxXYXY:
    """``box`` (XYXY) with each side moved as a detected, grown box would be."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    d = []
    for _ in range(4):
        if rng.random() < cfg.p_inward:
            d.append(-float(rng.uniform(0.0, cfg.inward)))
        else:
            d.append(float(rng.uniform(*cfg.grow)))
    return (x0 - d[0] * bw, y0 - d[1] * bh, x1 + d[2] * bw, y1 + d[3] * bh)


def to_aspect(box: BoxXYXY, aspect: float) -> BoxXYXY:
    """``box`` widened (or heightened) about its centre to width / height = ``aspect``."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if bw / bh < aspect:
        bw = bh * aspect
    else:
        bh = bw / aspect
    return (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)


def cut(image: np.ndarray, box: BoxXYXY, size: tuple[int, int]) -> np.ndarray:
    """The ``box`` (XYXY, inside the image) of ``image`` (H x W [x C]) resized to ``size`` =
    (W, H) with an affine warp (blurred first when it shrinks, as INTER_AREA would)."""
    x0, y0, x1, y1 = box
    w, h = size
    sx, sy = w / (x1 - x0), h / (y1 - y0)
    src = image
    if sx < 1 and sy < 1:  # blur before shrinking, as INTER_AREA would
        k = 1.0 / min(sx, sy)
        src = cv2.GaussianBlur(image, (0, 0), 0.45 * k) if k > 1.5 else image
    m = np.array([[sx, 0, -x0 * sx], [0, sy, -y0 * sy]], np.float32)
    return cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crops_of(
    scene: Scene, rng: np.random.Generator, size: tuple[int, int], cfg: CropConfig
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(H x W x 3 uint8 crop, H x W float32 alpha) of each large enough character in ``scene``,
    at ``size`` = (W, H). As at run time, the crop stays inside the scene: a box that leaves it
    is clipped, and the clipped box is stretched to ``size``."""
    w, h = size
    H, W = scene.alpha.shape
    out = []
    for box in scene.boxes:
        if box[3] - box[1] < cfg.min_box_px:
            continue
        x0, y0, x1, y1 = to_aspect(jitter_box(box, rng, cfg), w / h)
        b = (max(0.0, x0), max(0.0, y0), min(float(W), x1), min(float(H), y1))
        if b[2] - b[0] < 16 or b[3] - b[1] < 16:
            continue
        out.append((cut(scene.rgb, b, size), cut(scene.alpha, b, size)))
    return out


def sample_batch(
    synth: SceneSynth,
    rng: np.random.Generator,
    batch: int,
    size: tuple[int, int],
    cfg: CropConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """(N x 3 x H x W float32 images, N x H x W float32 alpha) of ``batch`` crops at ``size``."""
    images, alphas = [], []
    while len(images) < batch:
        for rgb, alpha in crops_of(synth.sample(rng, cfg.scene), rng, size, cfg):
            if len(images) < batch:
                images.append(rgb.transpose(2, 0, 1).astype(np.float32))
                alphas.append(alpha.astype(np.float32))
    return np.stack(images), np.stack(alphas)
