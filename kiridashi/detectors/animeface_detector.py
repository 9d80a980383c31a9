"""PyPI ``animeface`` (nya's imager; model inside the wheel): anime faces with face points.

Needs Pillow < 12 (with Pillow 12 it silently finds nothing).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from kiridashi.types import Detection


class AnimeFace:
    """Face boxes + ``face.left_eye/right_eye/nose/mouth/chin`` keypoints (conf = likelihood)."""

    def __init__(self, name: str, min_likelihood: float = 0.5):
        import animeface  # imported here: loading its model costs time

        self._detect = animeface.detect
        self.name = name
        self.min_likelihood = float(min_likelihood)

    def detect(self, image: np.ndarray) -> list[Detection]:
        out = []
        for face in self._detect(Image.fromarray(image)):
            score = float(face.likelihood)
            if score < self.min_likelihood:
                continue
            b = face.face.pos
            kp = {}
            for part in ("left_eye", "right_eye", "mouth"):
                p = getattr(face, part).pos
                kp[f"face.{part}"] = (p.x + p.width / 2.0, p.y + p.height / 2.0, score)
            for part in ("nose", "chin"):
                p = getattr(face, part).pos
                kp[f"face.{part}"] = (float(p.x), float(p.y), score)
            box = (float(b.x), float(b.y), float(b.x + b.width), float(b.y + b.height))
            out.append(Detection(box, score, "face", self.name, keypoints=kp))
        return out
