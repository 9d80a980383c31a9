"""MediaPipe face detection (``mp.solutions.face_detection``, model bundled in the wheel).

Photo-trained: on anime it finds few faces, so it is a low-weight hint in fusion and never the
gate for a character.
"""

from __future__ import annotations

import numpy as np

from kiridashi.quiet import build_quietly, import_mediapipe
from kiridashi.types import Detection


class MediaPipeFace:
    """Face boxes (label "face"); ``model_selection=1`` is the full-range model."""

    def __init__(self, name: str, model_selection: int = 1, min_confidence: float = 0.5):
        mp = import_mediapipe()
        self.name = name
        self._fd = build_quietly(
            lambda: mp.solutions.face_detection.FaceDetection(
                model_selection=int(model_selection), min_detection_confidence=float(min_confidence)
            )
        )

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in ``image`` (HxWx3 uint8 RGB); boxes XYXY in its pixels, clipped to it."""
        h, w = image.shape[:2]
        result = self._fd.process(np.ascontiguousarray(image))
        out = []
        for det in result.detections or []:
            bb = det.location_data.relative_bounding_box
            x0, y0 = bb.xmin * w, bb.ymin * h
            x1, y1 = x0 + bb.width * w, y0 + bb.height * h
            box = (max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1))
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                continue
            out.append(Detection(box, float(det.score[0]), "face", self.name))
        return out
