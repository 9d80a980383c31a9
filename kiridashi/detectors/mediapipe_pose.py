"""MediaPipe Pose on one character at a time (``model_complexity=1``: the only model bundled).

Pose is photo-trained and sees a whole scene badly, so it runs on each character's crop: the
character box grown by ``margin`` and resized so its height is ``crop_height`` px. Landmarks come
back in full-image pixels as ``pose.<landmark>`` -> (x, y, visibility), e.g. ``pose.nose``,
``pose.left_shoulder``; only landmarks inside the crop are kept.
"""

from __future__ import annotations

import cv2
import numpy as np

from kiridashi.quiet import build_quietly, import_mediapipe, native_logs_filtered
from kiridashi.types import BoxXYXY, Detection


class MediaPipePose:
    """Per-character detector: ``detect_in_box`` -> [] or one "pose" Detection with keypoints."""

    per_character = True

    def __init__(
        self,
        name: str,
        crop_height: int = 512,
        margin: float = 0.1,
        min_confidence: float = 0.5,
        min_visibility: float = 0.0,
        model_complexity: int = 1,
    ):
        if int(model_complexity) != 1:
            raise ValueError(
                f"detect.detectors.{name}.model_complexity must be 1 "
                "(the other pose models are not bundled with mediapipe and need a download)"
            )
        mp = import_mediapipe()
        self.name = name
        self.crop_height = int(crop_height)
        self.margin = float(margin)
        self.min_visibility = float(min_visibility)
        self._names = [lm.name.lower() for lm in mp.solutions.pose.PoseLandmark]
        self._pose = build_quietly(
            lambda: mp.solutions.pose.Pose(
                static_image_mode=True,
                model_complexity=1,
                enable_segmentation=False,
                min_detection_confidence=float(min_confidence),
            )
        )

    def detect_in_box(self, image: np.ndarray, box: BoxXYXY) -> list[Detection]:
        """Pose of the character in ``box`` (XYXY px) of ``image`` (HxWx3 uint8 RGB)."""
        h, w = image.shape[:2]
        x0, y0, x1, y1 = box
        mx, my = self.margin * (x1 - x0), self.margin * (y1 - y0)
        cx0, cy0 = int(max(0, x0 - mx)), int(max(0, y0 - my))
        cx1, cy1 = int(min(w, x1 + mx)), int(min(h, y1 + my))
        if cx1 - cx0 < 8 or cy1 - cy0 < 8:
            return []
        crop = image[cy0:cy1, cx0:cx1]
        s = self.crop_height / float(crop.shape[0])
        size = (max(8, round(crop.shape[1] * s)), self.crop_height)
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        crop = cv2.resize(crop, size, interpolation=interp)
        with native_logs_filtered():  # the landmark graph notes its first pose (~0.1 ms)
            result = self._pose.process(np.ascontiguousarray(crop))
        if result.pose_landmarks is None:
            return []
        kp: dict[str, tuple[float, float, float]] = {}
        for name, lm in zip(self._names, result.pose_landmarks.landmark, strict=False):
            vis = float(lm.visibility)
            if not (0.0 <= lm.x <= 1.0 and 0.0 <= lm.y <= 1.0) or vis < self.min_visibility:
                continue
            kp[f"pose.{name}"] = (cx0 + lm.x * (cx1 - cx0), cy0 + lm.y * (cy1 - cy0), vis)
        if not kp:
            return []
        xs = [p[0] for p in kp.values()]
        ys = [p[1] for p in kp.values()]
        score = float(np.mean([p[2] for p in kp.values()]))
        return [
            Detection((min(xs), min(ys), max(xs), max(ys)), score, "pose", self.name, keypoints=kp)
        ]
