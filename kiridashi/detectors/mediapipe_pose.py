"""MediaPipe Pose on each character's crop (model_complexity=1: the only one bundled offline).

The crop is the character box grown by ``margin``, resized so its height is ``crop_height`` px;
landmarks are mapped back to full-image pixels as ``pose.<landmark name>`` -> (x, y, visibility).
"""

from __future__ import annotations

import cv2
import numpy as np

from kiridashi.types import BoxXYXY


class MediaPipePose:
    def __init__(
        self,
        name: str,
        crop_height: int = 512,
        margin: float = 0.1,
        min_confidence: float = 0.5,
        model_complexity: int = 1,
    ):
        import mediapipe as mp

        if int(model_complexity) != 1:
            raise ValueError("detect.pose.model_complexity must be 1 (others need downloads)")
        self.name = name
        self.crop_height = int(crop_height)
        self.margin = float(margin)
        self._names = [lm.name.lower() for lm in mp.solutions.pose.PoseLandmark]
        self._pose = mp.solutions.pose.Pose(
            static_image_mode=True,
            model_complexity=1,
            enable_segmentation=False,
            min_detection_confidence=float(min_confidence),
        )

    def landmarks(self, image: np.ndarray, box: BoxXYXY) -> dict[str, tuple[float, float, float]]:
        """Pose landmarks of the person in ``box`` (XYXY) of ``image`` (HxWx3 RGB)."""
        h, w = image.shape[:2]
        x0, y0, x1, y1 = box
        mx, my = self.margin * (x1 - x0), self.margin * (y1 - y0)
        x0, y0 = int(max(0, x0 - mx)), int(max(0, y0 - my))
        x1, y1 = int(min(w, x1 + mx)), int(min(h, y1 + my))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return {}
        crop = image[y0:y1, x0:x1]
        s = self.crop_height / float(crop.shape[0])
        crop = cv2.resize(crop, (max(8, round(crop.shape[1] * s)), self.crop_height))
        result = self._pose.process(np.ascontiguousarray(crop))
        if result.pose_landmarks is None:
            return {}
        ch, cw = crop.shape[:2]
        out = {}
        for name, lm in zip(self._names, result.pose_landmarks.landmark, strict=False):
            out[f"pose.{name}"] = (x0 + lm.x * cw / s, y0 + lm.y * ch / s, float(lm.visibility))
        return out
