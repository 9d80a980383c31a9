"""Second look for the face of a character found without one.

A face-less character (foreground / person proposal) gets its head region - the top
``crop_top`` share of its box, grown by ``margin`` box widths - cropped and resized to each width of ``widths_px`` and searched
again with the configured face detectors. Small crops matter: big chibi heads that the detectors
miss in the whole scene are found when the head fills a ~160 px crop. The best face above
``min_score`` becomes the character's face box (coordinates mapped back to full-image pixels).
"""

from __future__ import annotations

import numpy as np

from kiridashi.detectors.base import Detector, rescale, scale_image
from kiridashi.types import BoxXYXY, Detection


def head_crop_box(box: BoxXYXY, crop_top: float, margin: float) -> tuple[int, int, int, int]:
    """Head region of a character box: its top ``crop_top`` share, grown by ``margin`` of the
    box width on the sides and above (the foreground often misses the top of the hair)."""
    x0, y0, x1, y1 = box
    m = margin * (x1 - x0)
    return (
        int(x0 - m),
        int(y0 - m),
        int(np.ceil(x1 + m)),
        int(np.ceil(y0 + crop_top * (y1 - y0))),
    )


def find_face(
    image: np.ndarray,
    box: BoxXYXY,
    detectors: dict[str, Detector],
    crop_top: float,
    widths_px: list[int],
    min_score: float,
    margin: float = 0.1,
) -> Detection | None:
    """Best face (full-image px) in the head region of ``box`` of ``image`` (HxWx3 RGB)."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = head_crop_box(box, crop_top, margin)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    crop = image[y0:y1, x0:x1]
    best: Detection | None = None
    for width in widths_px:
        factor = float(width) / crop.shape[1]
        scaled = np.ascontiguousarray(scale_image(crop, factor))
        fx, fy = crop.shape[1] / scaled.shape[1], crop.shape[0] / scaled.shape[0]
        for det in detectors.values():
            for d in det.detect(scaled):
                if d.label != "face" or d.score < min_score:
                    continue
                d = rescale(d, fx, fy, 1.0, (x0, y0))
                if best is None or d.score > best.score:
                    best = d
    return best
