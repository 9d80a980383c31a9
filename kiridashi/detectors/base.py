"""Detector protocol, the builder (``_target_`` strings), and multi-scale helpers.

A detector takes an HxWx3 uint8 RGB image and returns :class:`~kiridashi.types.Detection` objects
with XYXY boxes in that image's pixels. :func:`detect_at_scale` resizes the image by a scale,
runs a detector and maps the boxes and keypoints back to the unscaled image.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any, Protocol

import cv2
import numpy as np

from kiridashi.cache import params_digest
from kiridashi.types import Detection

log = logging.getLogger(__name__)

# keys of a detector's config section that are not constructor arguments
META_KEYS = ("_target_", "enabled", "weight")


class Detector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Detections in ``image`` (HxWx3 uint8 RGB), boxes XYXY in its pixels."""
        ...


class MissingModel(RuntimeError):
    """A detector's model file is absent: the detector is skipped with one warning."""


_INSTANCES: dict[str, Any] = {}
_WARNED: set[str] = set()


def import_target(target: str) -> type:
    module, _, attr = target.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def build(name: str, cfg: dict, **context: Any) -> Any | None:
    """The detector configured by ``cfg`` (``_target_`` + params), built once per process.

    ``context`` (e.g. ``models_dir``) is passed to constructors that accept it. Returns None (after
    one warning) when the detector's model file is missing.
    """
    params = {k: v for k, v in cfg.items() if k not in META_KEYS}
    key = f"{name}:{cfg['_target_']}:{params_digest(params)}:{params_digest(context)}"
    if key in _INSTANCES:
        return _INSTANCES[key]
    cls = import_target(cfg["_target_"])
    accepted = getattr(cls, "CONTEXT", ())
    try:
        inst = cls(name=name, **params, **{k: v for k, v in context.items() if k in accepted})
    except MissingModel as exc:
        if key not in _WARNED:
            log.warning("detector %s skipped: %s", name, exc)
            _WARNED.add(key)
        inst = None
    _INSTANCES[key] = inst
    return inst


def scale_image(image: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return image
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(
        image, (max(1, round(w * scale)), max(1, round(h * scale))), None, 0, 0, interp
    )


def rescale(det: Detection, factor: float, scale_tag: float) -> Detection:
    """``det`` with coordinates multiplied by ``factor`` and tagged with ``scale_tag``."""
    return Detection(
        box=tuple(float(v) * factor for v in det.box),
        score=det.score,
        label=det.label,
        detector=det.detector,
        scale=scale_tag,
        keypoints={k: (v[0] * factor, v[1] * factor, v[2]) for k, v in det.keypoints.items()},
    )


def detect_at_scale(detector: Detector, image: np.ndarray, scale: float) -> list[Detection]:
    """Run ``detector`` on ``image`` resized by ``scale``; results in ``image``'s pixels."""
    scaled = scale_image(image, scale)
    factor = image.shape[1] / float(scaled.shape[1])
    return [rescale(d, factor, scale) for d in detector.detect(scaled)]
