"""nagadomi's LBP cascade for anime faces (``lbpcascade_animeface.xml``, MIT) via OpenCV.

Confidence: ``detectMultiScale3(outputRejectLevels=True)`` gives each grouped box the summed
weight of the cascade's last stage; a logistic ``1 / (1 + exp(-slope * (w - midpoint)))`` maps it
to [0, 1] (true faces have weights around 2-4, chest/hand false positives around 0-1).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from kiridashi.detectors.base import MissingModel
from kiridashi.types import Detection


class LbpCascade:
    """Anime face boxes (label "face") from an OpenCV LBP cascade file in ``models_dir``."""

    CONTEXT = ("models_dir",)

    def __init__(
        self,
        name: str,
        model_file: str = "lbpcascade_animeface.xml",
        scale_factor: float = 1.05,
        min_neighbors: int = 3,
        min_size_px: int = 24,
        weight_midpoint: float = 1.0,
        weight_slope: float = 1.0,
        equalize: bool = True,
        models_dir: str | Path | None = None,
    ):
        path = Path(model_file)
        if not path.is_absolute():
            path = Path(models_dir or "models") / path
        if not path.is_file():
            raise MissingModel(
                f"model file {path.name} not found in {path.parent} "
                f"(config key detect.detectors.{name}.model_file; "
                "fetch it with `kiridashi models fetch lbpcascade_animeface`)"
            )
        self.name = name
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise MissingModel(f"{path} is not a valid OpenCV cascade file")
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_size_px = int(min_size_px)
        self.weight_midpoint = float(weight_midpoint)
        self.weight_slope = float(weight_slope)
        self.equalize = bool(equalize)

    def confidence(self, level_weight: float) -> float:
        z = self.weight_slope * (float(level_weight) - self.weight_midpoint)
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in ``image`` (HxWx3 uint8 RGB); boxes XYXY in its pixels."""
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if self.equalize:
            gray = cv2.equalizeHist(gray)
        side = self.min_size_px
        boxes, _levels, weights = self.cascade.detectMultiScale3(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(side, side),
            outputRejectLevels=True,
        )
        out = []
        for (x, y, w, h), wt in zip(
            np.asarray(boxes).reshape(-1, 4), np.ravel(weights), strict=False
        ):
            box = (float(x), float(y), float(x + w), float(y + h))
            out.append(Detection(box, self.confidence(wt), "face", self.name))
        return out
