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
   ``max_partners``, those whose boxes overlap the image's boxes least first.
2. :func:`evidence` - per pixel, the partners' median colour where at least one partner shows
   the background there (and two or more agree within ``max_spread``), and the image's distance
   from it mapped to [-1, 1]: -1 at or below ``low`` (background), +1 at or above ``high``.

Coordinates: boxes are XYXY in work-image pixels; images are HxWx3 uint8 RGB at work size.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

PLATES = {"enabled": False, "weight": 4.0, "low": 4.0, "high": 20.0, "grow": 0.15,
          "max_partners": 6, "thumb_side": 96, "tolerance": 16.0, "agree": 0.8,
          "min_shared": 0.05, "max_spread": 20.0, "blur": 1.0}  # fmt: skip


def settings(cfg: dict | None) -> dict:
    """The plates section of a segment config with defaults filled in ({} and None: off)."""
    return {**PLATES, **(cfg or {})}


@dataclass(frozen=True)
class View:
    """What grouping needs of one image: work size (H, W), an h x w x 3 float32 thumbnail and
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


def view(image: np.ndarray, boxes: Sequence[Sequence[float]], cfg: dict) -> View:
    """The grouping summary of one work image (HxWx3 uint8 RGB) and its character boxes."""
    h, w = image.shape[:2]
    s = min(1.0, float(cfg["thumb_side"]) / max(h, w))
    size = (max(1, round(w * s)), max(1, round(h * s)))
    thumb = cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    return View((h, w), thumb, tuple(tuple(float(v) for v in b) for b in boxes))


def _shared_background(a: View, b: View, cfg: dict) -> tuple[bool, float]:
    """(same aligned background, share of a's box area that b shows as background)."""
    if a.hw != b.hw or a.thumb.shape != b.thumb.shape:
        return False, 0.0
    th, tw = a.thumb.shape[:2]
    s = tw / a.hw[1]
    grow = float(cfg["grow"])
    out_a = outside_boxes((th, tw), a.boxes, grow, s)
    out_b = outside_boxes((th, tw), b.boxes, grow, s)
    both = out_a & out_b
    if both.mean() < float(cfg["min_shared"]):
        return False, 0.0
    diff = np.abs(a.thumb - b.thumb).max(2)[both]
    same = float((diff <= float(cfg["tolerance"])).mean()) > float(cfg["agree"])
    covered = (~out_a).sum()
    return same, float((~out_a & out_b).sum() / covered) if covered else 1.0


def pick_partners(views: Sequence[View | None], cfg: dict) -> list[list[int]]:
    """For each view, the indices of up to ``max_partners`` others with the same aligned
    background, those that show most of its boxes' area as background first (then by index).
    A None view (an image that failed) has and is no partner."""
    out: list[list[int]] = []
    for i, a in enumerate(views):
        found = []
        for j, b in enumerate(views):
            if j == i or a is None or b is None:
                continue
            same, shows = _shared_background(a, b, cfg)
            if same:
                found.append((-shows, j))
        out.append([j for _, j in sorted(found)[: int(cfg["max_partners"])]])
    return out


def evidence(
    image: np.ndarray,
    partners: Sequence[tuple[np.ndarray, Sequence[Sequence[float]]]],
    cfg: dict,
) -> np.ndarray | None:
    """HxW float32 in [-1, 1] (0: no plate there): is each pixel of ``image`` (HxWx3 uint8 RGB)
    the background that ``partners`` ((HxWx3 uint8 RGB, boxes XYXY) of the same size) show?

    A partner counts at a pixel outside its boxes grown by ``grow``. With one partner there its
    colour is the plate; with more, their median, if they agree within ``max_spread`` (else no
    plate there). Images are blurred by ``blur`` (Gaussian sigma, px) against JPEG noise. None
    when no partner has the image's size."""
    usable = [(p, b) for p, b in partners if p.shape == image.shape]
    if not usable:
        return None
    h, w = image.shape[:2]
    sigma = float(cfg["blur"])

    def soft(a: np.ndarray) -> np.ndarray:
        a = a.astype(np.float32)
        return cv2.GaussianBlur(a, (0, 0), sigma) if sigma > 0 else a

    grow = float(cfg["grow"])
    stack = np.stack([soft(p) for p, _ in usable])  # N x H x W x 3
    shown = np.stack([outside_boxes((h, w), b, grow) for _, b in usable])  # N x H x W
    n = shown.sum(0)
    if len(usable) == 1:
        plate, spread = stack[0], np.zeros((h, w), np.float32)
    else:
        values = np.where(shown[..., None], stack, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: no plate
            plate = np.nan_to_num(np.nanmedian(values, 0))
            spread = np.nan_to_num((np.nanmax(values, 0) - np.nanmin(values, 0)).max(2))
    ok = (n >= 1) & ~((n >= 2) & (spread > float(cfg["max_spread"])))
    dist = np.abs(soft(image) - plate).max(2)
    low, high = float(cfg["low"]), float(cfg["high"])
    out = np.clip((dist - (low + high) / 2) / max((high - low) / 2, 1e-6), -1.0, 1.0)
    out[~ok] = 0.0
    return out.astype(np.float32)
