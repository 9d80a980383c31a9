"""Synthetic scenes for the figure detector: sprites composited on backgrounds, with targets.

Each scene holds 0-3 characters (RGBA sprites: the demo's Ren'Py art and procedurally drawn
full figures) on a background (Ren'Py backgrounds and procedural ones), placed the ways game CGs
place them: bottom-anchored waist-up sprites, small full figures standing on the floor, figures
cut by the side edges, overlapping neighbours. Colour is augmented per sprite (hue, saturation,
value, sometimes grey) so the net learns figure shape and line art rather than three palettes,
and *clutter* is pasted in: background patches cut in random shapes, with or without an
outline, which are never characters (furniture, props). The scene is composited at twice the
output size and area-downscaled (as inference downscales large images), optionally JPEG-coded.

Numpy / OpenCV only: the training script (:mod:`kiridashi.figures.train`) adds torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from kiridashi.demo import (
    composite,
    crop_to_alpha,
    draw_background,
    draw_character,
    premultiplied_layer,
)

BoxXYXY = tuple[float, float, float, float]


@dataclass
class Scene:
    """rgb: HxWx3 uint8; alpha: HxW float32 union alpha of the characters in [0, 1];
    boxes: XYXY (this image's px) of each character's visible part, left to right."""

    rgb: np.ndarray
    alpha: np.ndarray
    boxes: list[BoxXYXY]


@dataclass(frozen=True)
class SynthConfig:
    """Probabilities and ranges of the scene generator (shares of the canvas height / width)."""

    p_chars: tuple[float, ...] = (0.15, 0.45, 0.25, 0.15)  # P(0, 1, 2, 3 characters)
    p_procedural_sprite: float = 0.3
    p_procedural_background: float = 0.25
    min_height: float = 0.2  # visible figure height, share of the canvas height
    max_height: float = 1.15
    max_side_cut: float = 0.45  # share of the figure width cut by a side edge
    p_side_cut: float = 0.2
    p_bust: float = 0.3  # a full figure cropped to its upper part (bottom at the canvas bottom)
    p_stretch: float = 0.4  # sprite width scaled by 0.75-1.25 (body proportions)
    p_hue: float = 0.6
    p_grey: float = 0.05
    p_clutter: float = 0.6
    max_clutter: int = 4
    p_jpeg: float = 0.7
    p_blur: float = 0.15
    # the mask net's training also repaints whole colour regions of a sprite (a shirt, the hair)
    # white, grey or in a colour of the background behind it, so that it learns a figure from
    # its outline and line art, not from the colours of a few artists (0: the figure net's recipe)
    p_regions: float = 0.0
    max_regions: int = 3


def _shrink(img: np.ndarray, max_height: int) -> np.ndarray:
    """``img`` area-downscaled to at most ``max_height`` rows (pools are stored small)."""
    h, w = img.shape[:2]
    if h <= max_height:
        return img
    size = (max(1, round(w * max_height / h)), max_height)
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def _cut_bottom(rgba: np.ndarray) -> bool:
    return bool((rgba[-1, :, 3] >= 128).mean() > 0.05)


def _recolour(rgb: np.ndarray, rng: np.random.Generator, cfg: SynthConfig) -> np.ndarray:
    """HxWx3 uint8 with hue rotated / saturation and value scaled / sometimes greyed."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32)
    if rng.random() < cfg.p_hue:
        hsv[..., 0] = (hsv[..., 0] + float(rng.uniform(0, 180))) % 180
    hsv[..., 1] *= float(rng.uniform(0.6, 1.3))
    hsv[..., 2] *= float(rng.uniform(0.75, 1.15) if rng.random() < 0.8 else rng.uniform(0.45, 0.8))
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
    if rng.random() < cfg.p_grey:
        out = np.repeat(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    return out


def colour_regions(rgba: np.ndarray, k: int = 8, seed: int = 0) -> np.ndarray:
    """HxW int32 colour cluster (k-means in Lab over the opaque pixels) of each pixel of a
    straight-alpha sprite, -1 where it is transparent; cluster 0 is the darkest (line art)."""
    opaque = rgba[..., 3] >= 128
    labels = np.full(opaque.shape, -1, np.int32)
    lab = cv2.cvtColor(np.ascontiguousarray(rgba[..., :3]), cv2.COLOR_RGB2LAB).astype(np.float32)
    pix = lab[opaque]
    if len(pix) < 4 * k:
        return labels
    sample = pix[np.random.default_rng(seed).permutation(len(pix))[:20000]]
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    cv2.setRNGSeed(seed)
    _, _, centres = cv2.kmeans(sample, k, None, crit, 2, cv2.KMEANS_PP_CENTERS)
    centres = centres[np.argsort(centres[:, 0])]  # darkest first
    d = ((pix[:, None, :] - centres[None]) ** 2).sum(axis=2)
    labels[opaque] = d.argmin(axis=1).astype(np.int32)
    return labels


def repaint_regions(
    rgb: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    colours: np.ndarray,
    n: int,
) -> np.ndarray:
    """``rgb`` (HxWx3 uint8) with ``n`` random colour clusters of ``labels`` (not 0, the line
    art) moved to a new colour - white, a grey, or one of ``colours`` (Kx3, e.g. sampled from
    the background) - keeping each pixel's shading (its offset from the cluster's mean)."""
    out = rgb.astype(np.float32)
    present = [c for c in np.unique(labels) if c > 0]
    for c in rng.permutation(present)[:n]:
        m = labels == c
        r = rng.random()
        if r < 0.35:
            target = np.full(3, rng.uniform(215, 255))
        elif r < 0.55:
            target = np.full(3, rng.uniform(60, 200))
        else:
            target = colours[int(rng.integers(len(colours)))].astype(np.float32)
        out[m] += target - out[m].mean(axis=0)
    return np.clip(out, 0, 255).astype(np.uint8)


def _fit(bg: np.ndarray, rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A random window of ``bg`` zoomed 1-1.6x to cover (w, h), maybe mirrored."""
    bh, bw = bg.shape[:2]
    scale = max(w / bw, h / bh) * float(rng.uniform(1.0, 1.6))
    nw, nh = max(w, round(bw * scale)), max(h, round(bh * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    big = cv2.resize(bg, (nw, nh), interpolation=interp)
    x0, y0 = int(rng.integers(0, nw - w + 1)), int(rng.integers(0, nh - h + 1))
    out = big[y0 : y0 + h, x0 : x0 + w]
    return np.ascontiguousarray(out[:, ::-1] if rng.random() < 0.5 else out)


class SceneSynth:
    """Random scenes from sprite and background pools (see the module docstring).

    sprites: HxWx4 uint8 straight-alpha RGBA cut-outs; backgrounds: HxWx3 uint8 RGB, any size.
    ``n_procedural`` figures and backgrounds are drawn once at construction (``rng``).
    """

    def __init__(
        self,
        sprites: Sequence[np.ndarray],
        backgrounds: Sequence[np.ndarray],
        rng: np.random.Generator,
        cfg: SynthConfig | None = None,
        n_procedural: int = 48,
    ):
        self.cfg = cfg or SynthConfig()
        self._regions: dict[int, np.ndarray] = {}
        self.sprites = [_shrink(np.ascontiguousarray(crop_to_alpha(s)), 520) for s in sprites]
        self.backgrounds = [_shrink(b, 400) for b in backgrounds]
        self.proc_sprites = [
            _shrink(np.ascontiguousarray(crop_to_alpha(draw_character(rng, height=600))), 520)
            for _ in range(n_procedural)
        ]
        kinds = ("outdoor", "room", "bokeh", "noise")
        self.proc_backgrounds = [
            draw_background(rng, kinds[i % len(kinds)], (640, 360))
            for i in range(max(4, n_procedural // 4))
        ]

    def _background(self, rng: np.random.Generator, w: int, h: int) -> np.ndarray:
        pool = self.backgrounds
        if not pool or rng.random() < self.cfg.p_procedural_background:
            pool = self.proc_backgrounds
        bg = _fit(pool[int(rng.integers(len(pool)))], rng, w, h)
        return _recolour(bg, rng, SynthConfig(p_hue=0.15, p_grey=0.02))

    def _sprite(self, rng: np.random.Generator) -> np.ndarray:
        pool = self.sprites
        if not pool or rng.random() < self.cfg.p_procedural_sprite:
            pool = self.proc_sprites
        return pool[int(rng.integers(len(pool)))]

    def _clutter(self, rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, int, int]:
        """A premultiplied background patch in a random polygon shape (furniture, props)."""
        pw = int(w * rng.uniform(0.08, 0.4))
        ph = int(h * rng.uniform(0.1, 0.7))
        src = self.backgrounds or self.proc_backgrounds
        patch = _fit(src[int(rng.integers(len(src)))], rng, pw, ph)
        patch = _recolour(patch, rng, SynthConfig(p_hue=0.5))
        mask = np.zeros((ph, pw), np.uint8)
        if rng.random() < 0.5:
            k = int(rng.integers(3, 8))
            pts = np.stack([rng.uniform(0, pw, k), rng.uniform(0, ph, k)], 1).astype(np.int32)
            cv2.fillPoly(mask, [cv2.convexHull(pts)], 255)
        else:
            mask[:] = 255
        if rng.random() < 0.5:  # line-art outline
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            col = tuple(int(v) for v in rng.integers(0, 80, 3))
            cv2.drawContours(patch, contours, -1, col, int(rng.integers(1, 4)))
        a = mask.astype(np.float32)[..., None] / 255.0
        layer = np.dstack([patch.astype(np.float32) / 255.0 * a, a])
        return layer, int(rng.integers(-pw // 3, w - pw // 2)), int(rng.integers(0, h - ph // 2))

    def _labels(self, rgba: np.ndarray) -> np.ndarray | None:
        """The colour clusters of a pool sprite (:func:`colour_regions`), computed once."""
        if self.cfg.p_regions <= 0:
            return None
        key = id(rgba)
        if key not in self._regions:
            self._regions[key] = colour_regions(rgba)
        return self._regions[key]

    def _place(
        self,
        rng: np.random.Generator,
        rgba: np.ndarray,
        w: int,
        h: int,
        colours: np.ndarray | None = None,
    ) -> tuple[np.ndarray, int, int]:
        """(premultiplied layer, x, y) of one character on a w x h canvas; ``colours`` (Kx3)
        are the background's, for :func:`repaint_regions`."""
        cfg = self.cfg
        labels = self._labels(rgba) if colours is not None else None
        cut = _cut_bottom(rgba)
        if not cut and rng.random() < cfg.p_bust:  # a full figure shown from the waist up
            keep = float(rng.uniform(0.35, 0.7))
            rgba = rgba[: max(8, int(rgba.shape[0] * keep))]
            cut = True
        visible = float(np.exp(rng.uniform(np.log(cfg.min_height), np.log(cfg.max_height))))
        if cut:  # the straight bottom edge of the art must lie below the canvas
            height = visible * h * float(rng.uniform(1.02, 1.2))
            y = h - visible * h
        else:
            height = min(visible, 0.98) * h
            floor = float(rng.uniform(0.7, 1.05)) if rng.random() < 0.8 else rng.uniform(0.3, 1.0)
            y = min(floor * h - height, h - 0.6 * height)
            y = max(y, -0.05 * height)
        rgb = _recolour(np.ascontiguousarray(rgba[..., :3]), rng, cfg)
        if labels is not None and rng.random() < cfg.p_regions:
            n = int(rng.integers(1, cfg.max_regions + 1))
            rgb = repaint_regions(rgb, labels[: rgb.shape[0]], rng, colours, n)
        rgba = np.dstack([rgb, rgba[..., 3]])
        layer = premultiplied_layer(rgba, max(4, round(height)), bool(rng.random() < 0.5))
        if rng.random() < cfg.p_stretch:  # other body proportions: slimmer / broader figures
            lw = max(2, round(layer.shape[1] * float(rng.uniform(0.75, 1.25))))
            layer = cv2.resize(layer, (lw, layer.shape[0]), interpolation=cv2.INTER_AREA)
        lw = layer.shape[1]
        if rng.random() < cfg.p_side_cut:
            off = float(rng.uniform(0.05, cfg.max_side_cut)) * lw
            x = -off if rng.random() < 0.5 else w - lw + off
        else:
            x = float(rng.uniform(0, max(1.0, w - lw)))
        return layer, int(round(x)), int(round(y))

    def sample(self, rng: np.random.Generator, size: tuple[int, int]) -> Scene:
        """One scene of ``size`` = (W, H) px (composited at 2x, area-downscaled)."""
        w, h = size
        W, H = 2 * w, 2 * h
        canvas = self._background(rng, W, H)
        colours = None  # 16 x 3 background colours for repainted regions (drawn only then)
        if self.cfg.p_regions > 0:
            colours = canvas[rng.integers(0, H, 16), rng.integers(0, W, 16)]
        layers: list[tuple[np.ndarray, int, int, bool]] = []
        if rng.random() < self.cfg.p_clutter:
            for _ in range(int(rng.integers(1, self.cfg.max_clutter + 1))):
                layers.append((*self._clutter(rng, W, H), False))
        n = int(rng.choice(len(self.cfg.p_chars), p=np.asarray(self.cfg.p_chars)))
        for _ in range(n):
            layers.append((*self._place(rng, self._sprite(rng), W, H, colours), True))
        # clutter mostly stands behind the characters; in front it hides part of them
        behind = [c for c in layers if not c[3] and rng.random() < 0.75]
        rest = [c for c in layers if not any(c is b for b in behind)]
        ordered = behind + [rest[i] for i in rng.permutation(len(rest))]
        rgb, _ = composite(canvas, [(c[0], c[1], c[2]) for c in ordered])
        alpha = np.zeros((H, W), np.float32)
        visible: list[np.ndarray] = []  # each character's visible alpha, paint order
        for layer, x, y, is_char in ordered:
            lh, lw = layer.shape[:2]
            x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + lw), min(H, y + lh)
            a = np.zeros((H, W), np.float32)
            if x0 < x1 and y0 < y1:
                a[y0:y1, x0:x1] = layer[y0 - y : y1 - y, x0 - x : x1 - x, 3]
            for v in visible:
                v *= 1 - a
            alpha *= 1 - a
            if is_char:
                alpha += a
                visible.append(a)
        boxes = []
        for v in visible:
            ys, xs = np.nonzero(v >= 0.5)
            if len(xs) and (ys.max() - ys.min()) >= 0.06 * H:
                boxes.append(
                    (xs.min() / 2.0, ys.min() / 2.0, (xs.max() + 1) / 2.0, (ys.max() + 1) / 2.0)
                )
        if rng.random() < self.cfg.p_blur:
            rgb = cv2.GaussianBlur(rgb, (0, 0), float(rng.uniform(0.5, 1.5)))
        if rng.random() < self.cfg.p_jpeg:
            q = int(rng.integers(55, 96))
            ok, enc = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
            if ok:
                rgb = cv2.imdecode(enc, cv2.IMREAD_COLOR)[..., ::-1]
        small = cv2.resize(np.ascontiguousarray(rgb), (w, h), interpolation=cv2.INTER_AREA)
        small_alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_AREA)
        return Scene(small, small_alpha, sorted(boxes, key=lambda b: b[0] + b[2]))
