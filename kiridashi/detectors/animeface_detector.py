"""PyPI ``animeface`` (nagadomi's imager port; its model ships inside the wheel).

Returns anime faces with a likelihood and face points, kept as keypoints ``face.left_eye``,
``face.right_eye``, ``face.nose``, ``face.mouth``, ``face.chin`` (x, y, likelihood). Eye and mouth
points are the centres of the library's part boxes. It takes a PIL image; it is the slowest
detector here (~0.17 s at 512x288), so the work size matters.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from kiridashi.types import Detection

_BOX_PARTS = ("left_eye", "right_eye", "mouth")
_POINT_PARTS = ("nose", "chin")


class AnimeFace:
    """Face boxes (label "face") with face-point keypoints."""

    def __init__(self, name: str, min_likelihood: float = 0.5):
        import animeface  # imported lazily: loading its model takes a moment

        self._detect = animeface.detect
        self.name = name
        self.min_likelihood = float(min_likelihood)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in ``image`` (HxWx3 uint8 RGB); boxes XYXY in its pixels."""
        out = []
        for face in self._detect(Image.fromarray(np.ascontiguousarray(image))):
            score = float(face.likelihood)
            if score < self.min_likelihood:
                continue
            b = face.face.pos
            kp: dict[str, tuple[float, float, float]] = {}
            for part in _BOX_PARTS:
                p = getattr(face, part).pos
                kp[f"face.{part}"] = (p.x + p.width / 2.0, p.y + p.height / 2.0, score)
            for part in _POINT_PARTS:
                p = getattr(face, part).pos
                kp[f"face.{part}"] = (float(p.x), float(p.y), score)
            box = (float(b.x), float(b.y), float(b.x + b.width), float(b.y + b.height))
            out.append(Detection(box, score, "face", self.name, keypoints=kp))
        return out
