"""Segmenter protocol and builder (``_target_`` strings, one instance per process).

A segmenter returns one float32 HxW soft mask in [0, 1] per character, in the order given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from kiridashi.cache import params_digest
from kiridashi.config import import_target
from kiridashi.types import Character

# not constructor arguments: ``input`` (which image the segmenter sees) is read by the runner
META_KEYS = ("_target_", "backend", "input")
_INSTANCES: dict[str, Any] = {}


class Segmenter(Protocol):
    def segment(
        self, image: np.ndarray, characters: list[Character], memo: Any
    ) -> list[np.ndarray]:
        """Soft masks (HxW float32 in [0, 1]) for ``characters`` in ``image`` (HxWx3 RGB).

        A backend that reads background plates (a ``plates`` config section) also takes
        ``plate=``: HxW float32 evidence in [-1, 1] (:mod:`kiridashi.segmenters.plates`)."""
        ...


def build(cfg: dict, models_dir: Path) -> Segmenter:
    """The segmenter of a ``segment`` config section, built once per process."""
    params = {k: v for k, v in cfg.items() if k not in META_KEYS}
    key = f"{cfg['_target_']}:{params_digest(params)}:{models_dir}"
    if key not in _INSTANCES:
        cls = import_target(cfg["_target_"])
        accepts_models = "models_dir" in getattr(cls, "CONTEXT", ())
        extra = {"models_dir": Path(models_dir)} if accepts_models else {}
        _INSTANCES[key] = cls(**params, **extra)
    return _INSTANCES[key]
