"""nagadomi's LBP cascade for anime faces (``lbpcascade_animeface.xml``, MIT) via OpenCV.

The cascade ships inside the package (``kiridashi/detectors/data/``, licence in its ``NOTICE``),
so the default detector works with an empty models folder; a copy in ``models_dir`` (e.g. from
``kiridashi models fetch lbpcascade_animeface``) takes precedence (:func:`resolve_cascade`).

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
from kiridashi.models import BUNDLED_DIR, fetch_name_for, find_model_file
from kiridashi.types import Detection


def bundled_cascades() -> list[str]:
    """File names of the cascades shipped in the package (e.g. ``lbpcascade_animeface.xml``)."""
    return sorted(p.name for p in BUNDLED_DIR.glob("*.xml"))


def resolve_cascade(model_file: str | Path, models_dir: str | Path | None, name: str) -> Path:
    """The cascade file for ``model_file``: an absolute (or ``~``) path as given; else
    ``models_dir/model_file`` when that file exists; else the bundled copy in
    :data:`BUNDLED_DIR` when ``model_file`` is the name of a bundled file. Raises MissingModel
    otherwise (the message names the config key ``detect.detectors.<name>.model_file``)."""
    found = find_model_file(model_file, models_dir)
    if found is not None:
        return found
    path = Path(model_file).expanduser()
    looked = path if path.is_absolute() else Path(models_dir or "models") / path
    bundled = ", ".join(bundled_cascades()) or "none installed"
    if path.is_absolute():
        fix = (
            f"check the path; a bare file name is looked up in models_dir, then bundled: {bundled}"
        )
    elif fetch := fetch_name_for(path.name):  # a registered file missing from the package too
        fix = f"reinstall kiridashi or run `kiridashi models fetch {fetch}`"
    else:
        fix = f"put the file there, give an absolute path, or use a bundled cascade: {bundled}"
    raise MissingModel(
        f"model file not found: {looked} (config key detect.detectors.{name}.model_file); {fix}"
    )


class LbpCascade:
    """Anime face boxes (label "face") from an OpenCV LBP cascade file.

    ``model_file``: an absolute path, or a file name looked up in ``models_dir`` and then among
    the cascades bundled with the package (see :func:`resolve_cascade`).
    """

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
        path = resolve_cascade(model_file, models_dir, name)
        self.name = name
        self.path = path
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
