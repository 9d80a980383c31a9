"""Optional ultralytics YOLO person/character boxes (extra ``.[yolo]``; off by default).

``weights`` is a file in the models folder (or an absolute path). A ``*.yaml`` model definition
builds an untrained network (used by the tests; never useful for real detection).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kiridashi.types import Detection


class YoloPerson:
    CONTEXT = ("models_dir",)

    def __init__(
        self,
        name: str,
        weights: str,
        confidence: float = 0.25,
        classes: list[int] | None = None,
        image_px: int = 640,
        label: str = "person",
        models_dir: Path | None = None,
    ):
        try:
            from ultralytics import YOLO
        except ImportError as exc:
            raise RuntimeError(
                f"detect.detectors.{name} is enabled but ultralytics is not installed "
                "(pip install -e '.[yolo]')"
            ) from exc
        path = Path(weights)
        if path.suffix != ".yaml":
            path = path if path.is_absolute() else Path(models_dir or ".") / path
            if not path.is_file():
                raise FileNotFoundError(
                    f"YOLO weights not found: {path} (config key detect.detectors.{name}.weights)"
                )
        self.name = name
        self.model = YOLO(str(path))
        self.confidence = float(confidence)
        self.classes = list(classes) if classes is not None else [0]
        self.image_px = int(image_px)
        self.label = label

    def detect(self, image: np.ndarray) -> list[Detection]:
        results = self.model.predict(
            image[:, :, ::-1],  # ultralytics expects BGR numpy arrays
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
