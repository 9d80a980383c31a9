"""MediaPipe selfie segmentation as a face-independent person proposal.

Photo-trained, but on flat-shaded anime figures its person mask is a useful hint: each large
connected component becomes a "person" box, so a character whose face no detector finds (closed
eyes, chibi style, back view) can still be cut out.
"""

from __future__ import annotations

import cv2
import numpy as np

from kiridashi.types import Detection

_MODELS: dict[int, object] = {}


def selfie_mask(image: np.ndarray, model_selection: int = 0) -> np.ndarray:
    """Person probability (HxW float32 in [0, 1]) for an HxWx3 RGB image."""
    import mediapipe as mp

    if model_selection not in _MODELS:
        _MODELS[model_selection] = mp.solutions.selfie_segmentation.SelfieSegmentation(
            model_selection=model_selection
        )
    result = _MODELS[model_selection].process(np.ascontiguousarray(image))
    return np.asarray(result.segmentation_mask, np.float32)


class MediaPipeSelfie:
    def __init__(
        self,
        name: str,
        model_selection: int = 0,
        threshold: float = 0.5,
        min_area_fraction: float = 0.02,
    ):
        self.name = name
        self.model_selection = int(model_selection)
        self.threshold = float(threshold)
        self.min_area_fraction = float(min_area_fraction)

    def detect(self, image: np.ndarray) -> list[Detection]:
        prob = selfie_mask(image, self.model_selection)
        fg = (prob >= self.threshold).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        min_area = self.min_area_fraction * fg.size
        out = []
        for i in range(1, n):
            x, y, w, h, area = stats[i]
            if area < min_area:
                continue
            score = float(prob[labels == i].mean())
            out.append(Detection((float(x), float(y), float(x + w), float(y + h)), score,
                                 "person", self.name))  # fmt: skip
        return out
