"""MediaPipe face detection (photo-trained: on anime it is a weak hint, never the gate)."""

from __future__ import annotations

import numpy as np

from kiridashi.types import Detection


class MediaPipeFace:
    def __init__(self, name: str, model_selection: int = 1, min_confidence: float = 0.5):
        import mediapipe as mp

        self.name = name
        self._fd = mp.solutions.face_detection.FaceDetection(
            model_selection=int(model_selection), min_detection_confidence=float(min_confidence)
        )

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        result = self._fd.process(np.ascontiguousarray(image))
        out = []
        for det in result.detections or []:
            bb = det.location_data.relative_bounding_box
            x0, y0 = bb.xmin * w, bb.ymin * h
            box = (
                max(0.0, x0),
                max(0.0, y0),
                min(w, x0 + bb.width * w),
                min(h, y0 + bb.height * h),
            )
            out.append(Detection(box, float(det.score[0]), "face", self.name))
        return out
