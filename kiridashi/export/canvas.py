"""One training image from one RGBA cut-out: scaled, centred on its canvas, on its background.

Scaling and padding work on premultiplied colour, so the black RGB that fully transparent crop
pixels carry never bleeds into the edge (no dark halo), and partly transparent edge pixels are
composited with their matte alpha: ``out = colour * alpha + background * (1 - alpha)``.

Arrays: crops are HxWx4 uint8 straight RGBA; the result is HxWx4 uint8 RGBA (transparent
background) or HxWx3 uint8 RGB (any other background).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CANVASES = ("square", "longest")
NAMED_COLOURS = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
    "grey": (128, 128, 128),
}


def parse_background(value: object) -> tuple[int, int, int] | None:
    """``transparent`` -> None; ``white`` / ``gray`` / ``black``, ``#rrggbb``, ``r,g,b`` or a
    list of three 0-255 numbers -> an RGB triple. Raises ValueError with a one-line reason."""
    if isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        text = str(value).strip().lower()
        if text == "transparent":
            return None
        if text in NAMED_COLOURS:
            return NAMED_COLOURS[text]
        if text.startswith("#") and len(text) == 7:
            try:
                return tuple(int(text[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
            except ValueError:
                parts = []
        else:
            parts = text.split(",")
    try:
        rgb = tuple(int(float(p)) for p in parts)
    except (TypeError, ValueError):
        rgb = ()
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise ValueError(
            f"background {value!r}: use transparent, white, gray, black, '#rrggbb' or 'r,g,b'"
        )
    return rgb  # type: ignore[return-value]


@dataclass(frozen=True)
class Layout:
    """Where a ``width`` x ``height`` crop goes: scale, scaled size, canvas size, top-left."""

    scale: float
    scaled: tuple[int, int]  # (w, h)
    canvas: tuple[int, int]  # (w, h)
    offset: tuple[int, int]  # (x, y)


def layout(width: int, height: int, side: int, canvas: str, max_upscale: float) -> Layout:
    """The crop's longest side goes to ``side`` px, but never past ``max_upscale`` times its own
    size. ``square``: on a ``side`` x ``side`` canvas, centred; ``longest``: no padding."""
    if canvas not in CANVASES:
        raise ValueError(f"canvas {canvas!r}: use {' or '.join(CANVASES)}")
    scale = min(side / float(max(width, height)), float(max_upscale))
    w = max(1, min(side, round(width * scale)))
    h = max(1, min(side, round(height * scale)))
    if canvas == "longest":
        return Layout(scale, (w, h), (w, h), (0, 0))
    return Layout(scale, (w, h), (side, side), ((side - w) // 2, (side - h) // 2))


def premultiplied(rgba: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HxWx4 uint8 straight RGBA -> float32 premultiplied RGBA in [0, 1] resized to ``size``
    (w, h): area averaging down, bilinear up (no overshoot past the alpha)."""
    f = rgba.astype(np.float32) / 255.0
    f[..., :3] *= f[..., 3:4]
    if (f.shape[1], f.shape[0]) == tuple(size):
        return f
    down = size[0] * size[1] < f.shape[0] * f.shape[1]
    interp = cv2.INTER_AREA if down else cv2.INTER_LINEAR
    return np.clip(cv2.resize(f, tuple(size), interpolation=interp), 0.0, 1.0)


def render(
    rgba: np.ndarray,
    side: int,
    canvas: str = "square",
    max_upscale: float = 2.0,
    background: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """The training image of one crop (see the module docstring for the arrays)."""
    h0, w0 = rgba.shape[:2]
    lay = layout(w0, h0, side, canvas, max_upscale)
    (w, h), (cw, ch), (x, y) = lay.scaled, lay.canvas, lay.offset
    premult = np.zeros((ch, cw, 4), np.float32)
    premult[y : y + h, x : x + w] = premultiplied(rgba, (w, h))
    alpha = premult[..., 3:4]
    colour = np.minimum(premult[..., :3], alpha)  # premultiplied colour never exceeds alpha
    if background is None:
        straight = np.where(alpha > 0, colour / np.maximum(alpha, 1e-6), 0.0)
        out = np.concatenate([straight, alpha], axis=2)
    else:
        out = colour + np.asarray(background, np.float32) / 255.0 * (1.0 - alpha)
    return (np.clip(out, 0.0, 1.0) * 255.0).round().astype(np.uint8)
