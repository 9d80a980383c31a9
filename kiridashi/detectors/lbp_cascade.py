"""nagadomi's LBP cascade for anime faces (``lbpcascade_animeface.xml``, MIT) via OpenCV."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from kiridashi.detectors.base import MissingModel
from kiridashi.types import Detection


class LbpCascade:
    """Anime face boxes; confidence from the cascade's last-stage level weight (logistic)."""

    CONTEXT = ("models_dir",)

    def __init__(
        self,
        name: str,
        model_file: str,
        scale_factor: float = 1.05,
        min_neighbors: int = 3,
        min_size_fraction: float = 0.04,
        weight_midpoint: float = 1.0,
        models_dir: Path | None = None,
    ):
        path = Path(models_dir or ".") / model_file
        if not path.is_file():
            raise MissingModel(
                f"{path} not found (config key detect.detectors.{name}.model_file; "
                "`kiridashi models fetch lbpcascade_animeface`)"
            )
        self.name = name
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise MissingModel(f"{path} is not a valid cascade file")
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_size_fraction = float(min_size_fraction)
        self.weight_midpoint = float(weight_midpoint)

    def detect(self, image: np.ndarray) -> list[Detection]:
        gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        side = max(16, int(self.min_size_fraction * min(gray.shape)))
        boxes, _levels, weights = self.cascade.detectMultiScale3(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(side, side),
            outputRejectLevels=True,
        )
        out = []
        for (x, y, w, h), wt in zip(boxes, np.ravel(weights), strict=False):
            score = float(1.0 / (1.0 + np.exp(-(float(wt) - self.weight_midpoint))))
            out.append(
                Detection(
                    (float(x), float(y), float(x + w), float(y + h)), score, "face", self.name
                )
            )
        return out
