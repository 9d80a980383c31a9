"""Detector protocol, the registry (``_target_`` strings -> instances) and multi-scale helpers.

A *scene detector* takes an HxWx3 uint8 RGB image and returns :class:`~kiridashi.types.Detection`
objects whose boxes are XYXY pixels of that image. A *character detector* (``per_character =
True``, e.g. MediaPipe Pose) instead looks at one character box at a time. Instances are built
from the ``_target_`` dotted path of their config entry and kept for the life of the process
(one per distinct set of params), so models load once, not per image.

A detector whose model file is missing raises :class:`MissingModel` and is skipped with one
warning line. :func:`check_model_files` builds the detectors that read a model file at start-up,
so the line comes once per run before any image (and before the progress bar); worker processes
of a parallel run log it at DEBUG only (:func:`set_missing_model_level`), their parent has said it.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from kiridashi.cache import params_digest
from kiridashi.config import import_target
from kiridashi.types import BoxXYXY, Detection

log = logging.getLogger(__name__)

# keys of a detector's config entry that are not constructor arguments (left out of the memo key:
# `enabled` / `weight` do not change its raw output; `within_foreground` puts the searched region
# into the key instead; `views` picks which runs happen, each keyed by its view)
META_KEYS = frozenset({"_target_", "enabled", "weight", "within_foreground", "views"})


@runtime_checkable
class Detector(Protocol):
    """Scene detector: ``detect(HxWx3 uint8 RGB) -> [Detection]`` (XYXY boxes, that image's px)."""

    name: str

    def detect(self, image: np.ndarray) -> list[Detection]: ...


@runtime_checkable
class CharacterDetector(Protocol):
    """Per-character detector: keypoints of the character inside ``box`` (XYXY, image px)."""

    name: str
    per_character: bool

    def detect_in_box(self, image: np.ndarray, box: BoxXYXY) -> list[Detection]: ...


class MissingModel(RuntimeError):
    """A detector's model file is absent: the detector is skipped with one warning line."""


_INSTANCES: dict[str, Any] = {}
_WARNED: set[str] = set()
_missing_level = logging.WARNING  # level of the "detector skipped" line in this process


def set_missing_model_level(level: int) -> None:
    """Log "detector X skipped: <missing model>" at ``level`` in this process (worker
    processes: DEBUG, as the parent reported it at start-up)."""
    global _missing_level
    _missing_level = int(level)


def constructor_params(cfg: dict) -> dict:
    """The entry's params without the meta keys (``_target_``, ``enabled``, ``weight``)."""
    return {k: v for k, v in cfg.items() if k not in META_KEYS}


def build(name: str, cfg: dict, **context: Any) -> Any | None:
    """The detector configured by ``cfg`` (``_target_`` + params), built once per process.

    ``context`` (e.g. ``models_dir``) goes to constructors that list the key in their ``CONTEXT``
    class attribute. Returns None, after ONE warning line per process (see
    :func:`set_missing_model_level`), when the model file is missing.
    """
    if "_target_" not in cfg:
        raise ValueError(f"detect.detectors.{name} has no _target_")
    cls = import_target(cfg["_target_"])
    accepted = {k: str(v) for k, v in context.items() if k in getattr(cls, "CONTEXT", ())}
    params = constructor_params(cfg)
    key = f"{name}:{cfg['_target_']}:{params_digest(params)}:{params_digest(accepted)}"
    if key in _INSTANCES:
        return _INSTANCES[key]
    try:
        inst = cls(name=name, **params, **accepted)
    except MissingModel as exc:
        if key not in _WARNED:
            log.log(_missing_level, "detector %s skipped: %s", name, exc)
            _WARNED.add(key)
        inst = None
    _INSTANCES[key] = inst
    return inst


def build_enabled(detectors_cfg: dict, **context: Any) -> dict[str, Any]:
    """name -> instance for every enabled entry of ``detect.detectors`` (missing models skipped)."""
    out = {}
    for name, dcfg in detectors_cfg.items():
        if not dcfg or not dcfg.get("enabled", True):
            continue
        inst = build(name, dcfg, **context)
        if inst is not None:
            out[name] = inst
    return out


def check_model_files(detectors_cfg: dict, **context: Any) -> None:
    """Build now the enabled detectors that read a model file (their class takes ``models_dir``
    from ``context``), so that a missing file is reported at start-up, before any image: a
    :class:`MissingModel` as its one warning line (the detector is then skipped), a
    :class:`~kiridashi.models.ModelError` (e.g. YOLO weights) raised. The instances are kept
    for the run. Entries whose ``_target_`` does not import are left for :func:`build` to report.
    """
    for name, dcfg in (detectors_cfg or {}).items():
        if not dcfg or not dcfg.get("enabled", True):
            continue
        try:
            cls = import_target(str(dcfg.get("_target_", "")))
        except (ImportError, AttributeError, ValueError):
            continue
        if "models_dir" in getattr(cls, "CONTEXT", ()):
            build(name, dcfg, **context)


def scale_image(image: np.ndarray, factor: float) -> np.ndarray:
    """``image`` (HxWxC) resized by ``factor`` (area interpolation when shrinking)."""
    if abs(factor - 1.0) < 1e-9:
        return image
    h, w = image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interp)


def rescale(
    det: Detection,
    fx: float,
    fy: float,
    scale_tag: float,
    origin: tuple[float, float] = (0.0, 0.0),
) -> Detection:
    """``det`` with x multiplied by ``fx``, y by ``fy``, then shifted by ``origin`` (x, y: where
    a crop starts), tagged with ``scale_tag``."""
    x0, y0, x1, y1 = det.box
    ox, oy = float(origin[0]), float(origin[1])
    return Detection(
        box=(float(x0) * fx + ox, float(y0) * fy + oy, float(x1) * fx + ox, float(y1) * fy + oy),
        score=float(det.score),
        label=det.label,
        detector=det.detector,
        scale=float(scale_tag),
        keypoints={
            k: (v[0] * fx + ox, v[1] * fy + oy, float(v[2])) for k, v in det.keypoints.items()
        },
    )


def detect_at_scale(
    detector: Detector,
    image: np.ndarray,
    factor: float,
    scale_tag: float,
    region: tuple[int, int, int, int] | None = None,
) -> list[Detection]:
    """Run ``detector`` on ``image`` (or its XYXY ``region``) resized by ``factor``; boxes in
    ``image``'s pixels."""
    x0, y0 = (region[0], region[1]) if region else (0, 0)
    part = image[region[1] : region[3], region[0] : region[2]] if region else image
    scaled = np.ascontiguousarray(scale_image(part, factor))
    fx = part.shape[1] / float(scaled.shape[1])
    fy = part.shape[0] / float(scaled.shape[0])
    return [rescale(d, fx, fy, scale_tag, (x0, y0)) for d in detector.detect(scaled)]
