"""Optional ultralytics YOLO person / character boxes (extra ``.[yolo]``; off by default).

``weights`` is a file in the models folder (or an absolute path); a missing file is an error
naming ``detect.detectors.<name>.weights``, and so is a missing ``ultralytics`` package when the
detector is enabled. A ``*.yaml`` model definition (e.g. ``yolov8n.yaml``) builds an untrained
network without downloading anything (used by the tests; useless for real detection).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kiridashi.models import ModelError, ModelFileMissing
from kiridashi.types import Detection


class YoloPerson:
    """Boxes of ``classes`` (default 0 = COCO person) with label ``label``."""

    CONTEXT = ("models_dir",)

    def __init__(
        self,
        name: str,
        weights: str,
        confidence: float = 0.25,
        classes: list[int] | None = None,
        image_px: int = 640,
        label: str = "person",
        models_dir: str | Path | None = None,
    ):
        path = Path(weights)
        if path.suffix not in (".yaml", ".yml"):
            path = path if path.is_absolute() else Path(models_dir or "models") / path
            if not path.is_file():
                raise ModelFileMissing(
                    f"YOLO weights not found: {path} (config key detect.detectors.{name}.weights; "
                    f"or set detect.detectors.{name}.enabled=false)"
                )
        try:
            from ultralytics import YOLO  # optional extra, imported only when enabled
        except ImportError as exc:
            raise ModelError(
                f"detect.detectors.{name} is enabled but ultralytics is not installed "
                "(pip install -e '.[yolo]', or set "
                f"detect.detectors.{name}.enabled=false)"
            ) from exc
        self.name = name
        self.model = YOLO(str(path))
        self.confidence = float(confidence)
        self.classes = [int(c) for c in classes] if classes is not None else [0]
        self.image_px = int(image_px)
        self.label = label

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Boxes in ``image`` (HxWx3 uint8 RGB), XYXY in its pixels."""
        results = self.model.predict(
            np.ascontiguousarray(image[:, :, ::-1]),  # ultralytics takes BGR numpy arrays
            conf=self.confidence,
            classes=self.classes,
            imgsz=self.image_px,
            verbose=False,
            device="cpu",
        )
        out = []
        for r in results:
            for box, score in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), strict=True):
                out.append(Detection(tuple(map(float, box)), float(score), self.label, self.name))
        return out
