"""Background plates: the clean background behind a figure, read from other images of the folder.

Game CG folders hold many screenshots over the same background, each with other characters in
other places. Where another image (a *partner*) shows the background at a pixel - the pixel is
outside all of its character boxes - the image's own pixel is compared with it: equal (within
JPEG noise) is background, different is something in front of it. This holds where colour models
fail: dark hair in a dark room, a grey skirt on grey pavement, a poster touching a sleeve.

Two steps, both deterministic:

1. :func:`view` - a small per-image summary (work size, a thumbnail, the character boxes), and
   :func:`pick_partners` - for each image, the other images of the same work size whose
   thumbnails agree outside the boxes of both (the same background, aligned), at most
   ``max_partners``, those that show most of its boxes' area as background first.
2. :func:`plate_evidence` / :func:`evidence` - per pixel, the partners' median colour where at
   least one partner shows the background there (and two or more agree within
   ``max_spread``), and the image's distance from it mapped to [-1, 1]: -1 at or below ``low``
   (background), +1 at or above ``high``; compared at a long side of at most ``side``, around
   the image's own characters only. The segmenter adds it x ``weight`` to its coarse cut and
   x ``band_weight`` to its full-resolution band cut.

Coordinates: boxes are XYXY in work-image pixels; images are HxWx3 uint8 RGB at work size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

PLATES = {"enabled": False, "weight": 4.0, "band_weight": 0.0, "low": 4.0, "high": 20.0,
          "grow": 0.15, "max_partners": 3, "side": 1280, "reach": 0.5, "thumb_side": 96,
          "tolerance": 16.0, "agree": 0.8, "min_shared": 0.05, "max_spread": 20.0,
          "blur": 1.0, "chunk": 5000}  # fmt: skip


def settings(cfg: dict | None) -> dict:
    """The plates section of a segment config with defaults filled in ({} and None: off)."""
    return {**PLATES, **(cfg or {})}


@dataclass(frozen=True)
class View:
    """What pairing needs of one image: work size (H, W), an h x w x 3 uint8 RGB thumbnail and
    the character boxes (XYXY, work pixels)."""

    hw: tuple[int, int]
    thumb: np.ndarray
    boxes: tuple[tuple[float, float, float, float], ...]

    def to_dict(self) -> dict:
        return {"hw": list(self.hw), "thumb": self.thumb, "boxes": [list(b) for b in self.boxes]}

    @classmethod
    def from_dict(cls, d: dict) -> View:
        return cls(tuple(d["hw"]), np.asarray(d["thumb"]), tuple(tuple(b) for b in d["boxes"]))


def outside_boxes(
    hw: tuple[int, int], boxes: Sequence[Sequence[float]], grow: float, scale: float = 1.0
) -> np.ndarray:
    """HxW bool: pixels outside every box (XYXY at ``scale`` x these pixels) grown by ``grow``
    x its width / height on each side."""
    h, w = hw
    out = np.ones((h, w), bool)
    for x0, y0, x1, y1 in boxes:
        gx, gy = grow * (x1 - x0), grow * (y1 - y0)
        ya, yb = max(0, int((y0 - gy) * scale)), max(0, int(np.ceil((y1 + gy) * scale)) + 1)
        xa, xb = max(0, int((x0 - gx) * scale)), max(0, int(np.ceil((x1 + gx) * scale)) + 1)
        out[ya:yb, xa:xb] = False
    return out


def _smaller(image: np.ndarray, side: float) -> tuple[np.ndarray, float]:
    """(``image`` with its long side at most ``side``, the scale applied)."""
    h, w = image.shape[:2]
    s = min(1.0, float(side) / max(h, w))
    if s >= 1.0:
        return image, 1.0
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), size[0] / w


def view(image: np.ndarray, boxes: Sequence[Sequence[float]], cfg: dict) -> View:
    """The pairing summary of one work image (HxWx3 uint8 RGB) and its character boxes."""
    thumb, _ = _smaller(image, cfg["thumb_side"])
    return View(image.shape[:2], np.ascontiguousarray(thumb, np.uint8),
                tuple(tuple(float(v) for v in b) for b in boxes))  # fmt: skip


SMALL_GROUP = 256  # size groups up to this compare every pair; larger ones use a block index


class _BlockIndex:
    """Which images of a size group share block colours: per (block, colour quantised to 32
    levels per channel) key, the images whose block there is outside their boxes, in order.
    ``coarse``: n x bh x bw x 3 float block means; ``shown``: n x bh x bw bool."""

    REACH = 32  # neighbours taken on either side of an image in each key's list
    TOP = 64  # candidates kept per image (most shared keys first)

    def __init__(self, coarse: np.ndarray, shown: np.ndarray):
        n, bh, bw = shown.shape
        q = np.clip(coarse // 32, 0, 7).astype(np.int64)
        code = (np.arange(bh * bw).reshape(bh, bw) * 512)[None] + q[..., 0] * 64 + q[..., 1] * 8
        code = code + q[..., 2]
        self.keys = [code[k][shown[k]] for k in range(n)]
        owner = np.repeat(np.arange(n), [k.size for k in self.keys])
        flat = np.concatenate(self.keys) if n else np.zeros(0, np.int64)
        order = np.lexsort((owner, flat))
        self.flat, self.owner = flat[order], owner[order]

    def candidates(self, a: int) -> np.ndarray:
        """Indices of up to ``TOP`` images sharing the most block keys with image ``a``."""
        keys = self.keys[a]
        if keys.size == 0:
            return np.zeros(0, np.int64)
        lo = np.searchsorted(self.flat, keys, "left")
        hi = np.searchsorted(self.flat, keys, "right")
        picks = []
        for start, stop in zip(lo, hi, strict=True):
            here = start + np.searchsorted(self.owner[start:stop], a)
            picks.append(
                self.owner[max(start, here - self.REACH) : min(stop, here + self.REACH + 1)]
            )
        votes = np.bincount(np.concatenate(picks))
        votes[a] = 0
        ranked = np.argsort(-votes, kind="stable")[: self.TOP]
        return ranked[votes[ranked] >= max(2, keys.size // 4)]


def pick_partners(views: Sequence[View | None], cfg: dict) -> list[list[int]]:
    """For each view, the indices of up to ``max_partners`` others with the same aligned
    background, those that show most of its boxes' area as background first (then by index).
    A None view (an image that failed) has and is no partner.

    Two views share an aligned background when they have the same work size and, on the
    pixels outside the grown boxes of both (at least ``min_shared`` of the thumbnail), their
    thumbnails differ by at most ``tolerance`` on more than ``agree`` of them. Views are
    compared a size group at a time. Candidates come first from 6 x 6 blocks of the
    thumbnails: in a group of up to 256, every pair whose blocks agree on more than ``agree`` -
    0.2 of those outside both boxes; in a larger one, the images that share the most block
    colours (block, colour quantised to 32 levels) with it among the nearest 32 on either side
    of it in each block colour's list - linear in the group (only a few good partners are
    needed, not all). Callers pair a big folder in runs (``chunk``) to bound memory.
    """
    out: list[list[int]] = [[] for _ in views]
    groups: dict[tuple, list[int]] = {}
    for i, v in enumerate(views):
        if v is not None:
            groups.setdefault((tuple(v.hw), v.thumb.shape), []).append(i)
    tol, agree, grow = float(cfg["tolerance"]), float(cfg["agree"]), float(cfg["grow"])
    keep = int(cfg["max_partners"])
    for members in groups.values():
        if len(members) < 2 or keep <= 0:
            continue
        thumbs = np.stack([views[i].thumb for i in members])  # n x h x w x 3 uint8
        th, tw = thumbs.shape[1:3]
        s = tw / views[members[0]].hw[1]
        shown = np.stack([outside_boxes((th, tw), views[i].boxes, grow, s) for i in members])
        f = 6  # blocks of the first look
        bh, bw = th // f, tw // f
        blocks = thumbs[:, : bh * f, : bw * f].reshape(-1, bh, f, bw, f, 3)
        coarse = blocks.mean((2, 4), dtype=np.float32)
        coarse_shown = shown[:, : bh * f, : bw * f].reshape(-1, bh, f, bw, f).all((2, 4))
        index = _BlockIndex(coarse, coarse_shown) if len(members) > SMALL_GROUP else None
        for a, i in enumerate(members):
            if index is None:
                both = coarse_shown & coarse_shown[a]
                n_both = both.sum((1, 2))
                close = (np.abs(coarse - coarse[a]).max(-1) <= tol) & both
                rough = close.sum((1, 2)) / np.maximum(n_both, 1)
                cand = np.flatnonzero((n_both < 4) | (rough > agree - 0.2))
            else:
                cand = index.candidates(a)
            cand = cand[cand != a]
            if cand.size == 0:
                continue
            both = shown[cand] & shown[a]
            n_both = both.sum((1, 2))
            diff = np.abs(thumbs[cand].astype(np.int16) - thumbs[a].astype(np.int16))
            close = (diff.max(-1) <= tol) & both
            same = (n_both >= float(cfg["min_shared"]) * th * tw) & (
                close.sum((1, 2)) > agree * n_both
            )
            covered = ~shown[a]
            n_cov = covered.sum()
            shows = (covered & shown[cand]).sum((1, 2)) / n_cov if n_cov else np.ones(cand.size)
            found = sorted((-float(shows[k]), members[cand[k]]) for k in np.flatnonzero(same))
            out[i] = [j for _, j in found[:keep]]
    return out


def plate_evidence(
    image: np.ndarray,
    boxes: Sequence[Sequence[float]],
    partners: Sequence[tuple[np.ndarray, Sequence[Sequence[float]]]],
    cfg: dict,
) -> np.ndarray | None:
    """:func:`evidence` for a work image (HxWx3 uint8 RGB) with character ``boxes`` from its
    partners' (work image, boxes), compared with long sides of at most ``side``: h' x w'
    float32, or None. Only around the image's own characters - their boxes grown by ``reach``
    x their size per side, which holds the cut's area and its colour ring - is anything
    compared (0 elsewhere)."""
    if not boxes:
        return None
    small, s = _smaller(image, cfg["side"])
    h, w = small.shape[:2]
    box = np.array(boxes, np.float64) * s
    reach = float(cfg["reach"])
    gw, gh = (box[:, 2] - box[:, 0]) * reach, (box[:, 3] - box[:, 1]) * reach
    y0, y1 = int(max(0, (box[:, 1] - gh).min())), int(min(h, np.ceil((box[:, 3] + gh).max())))
    x0, x1 = int(max(0, (box[:, 0] - gw).min())), int(min(w, np.ceil((box[:, 2] + gw).max())))
    others = []
    for p, b in partners:
        if p.shape != image.shape:
            continue
        p_small, ps = _smaller(p, cfg["side"])
        others.append((p_small, [tuple(v * ps for v in bb) for bb in b]))
    return evidence(small, others, cfg, (slice(y0, y1), slice(x0, x1)))


def _ascending(values: np.ndarray) -> np.ndarray:
    """``values`` (N x ...) sorted along the first axis; N <= 3 by a sorting network (the
    default: a few elementwise passes instead of a general sort)."""
    if len(values) == 2:
        return np.stack([np.minimum(values[0], values[1]), np.maximum(values[0], values[1])])
    if len(values) == 3:
        a, b, c = values
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        mid, top = np.minimum(hi, c), np.maximum(hi, c)
        return np.stack([np.minimum(lo, mid), np.maximum(lo, mid), top])
    return np.sort(values, axis=0)


def evidence(
    image: np.ndarray,
    partners: Sequence[tuple[np.ndarray, Sequence[Sequence[float]]]],
    cfg: dict,
    window: tuple[slice, slice] | None = None,
) -> np.ndarray | None:
    """HxW float32 in [-1, 1] (0: no plate there): is each pixel of ``image`` (HxWx3 uint8 RGB)
    the background that ``partners`` ((HxWx3 uint8 RGB, boxes XYXY) of the same size) show?

    A partner counts at a pixel outside its boxes grown by ``grow``. With one partner there its
    colour is the plate; with more, their median, if they agree within ``max_spread`` (else no
    plate there). Images are blurred by ``blur`` (Gaussian sigma, px) against JPEG noise. None
    when no partner has the image's size. ``window`` (rows, columns): compare only there."""
    usable = [(p, b) for p, b in partners if p.shape == image.shape]
    if not usable:
        return None
    full = np.zeros(image.shape[:2], np.float32)
    win = window or (slice(0, image.shape[0]), slice(0, image.shape[1]))
    image = image[win]
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        return full
    sigma = float(cfg["blur"])

    def soft(a: np.ndarray) -> np.ndarray:
        a = a.astype(np.float32)
        return cv2.GaussianBlur(a, (0, 0), sigma) if sigma > 0 else a

    grow = float(cfg["grow"])
    stack = np.stack([soft(p[win]) for p, _ in usable])  # N x h x w x 3
    shown = np.stack([outside_boxes(full.shape, b, grow)[win] for _, b in usable])  # N x h x w
    n = shown.sum(0)
    if len(usable) == 1:
        plate, spread = stack[0], np.zeros((h, w), np.float32)
    else:  # the median of the partners that show the background, per pixel and channel
        shown3 = shown[..., None]
        ranked = _ascending(np.where(shown3, stack, np.inf))  # hidden ones last
        n3 = n[..., None]
        plate = np.zeros((h, w, 3), np.float32)
        for k in range(1, len(usable) + 1):  # k partners show the background there
            mid = (ranked[(k - 1) // 2] + ranked[k // 2]) / 2
            plate = np.where(n3 == k, mid, plate)
        top = np.where(shown3, stack, -np.inf).max(0)
        spread = np.where(n >= 2, (top - ranked[0]).max(2), 0.0)
    ok = (n >= 1) & ~((n >= 2) & (spread > float(cfg["max_spread"])))
    dist = np.abs(soft(image) - plate).max(2)
    low, high = float(cfg["low"]), float(cfg["high"])
    out = np.clip((dist - (low + high) / 2) / max((high - low) / 2, 1e-6), -1.0, 1.0)
    out[~ok] = 0.0
    full[win] = out
    return full
