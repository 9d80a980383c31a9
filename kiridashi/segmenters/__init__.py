"""Segmentation backends: the anime-aware default (no downloads), SAM, isnetis.

:func:`segment_image` returns one float32 HxW soft mask in [0, 1] per character.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kiridashi.segmenters.base import build
from kiridashi.types import Character


def segment_image(
    image: np.ndarray,
    characters: list[Character],
    cfg: dict,
    models_dir: Path,
    memo: Any,
    plate: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Soft masks for ``characters`` (boxes XYXY in ``image`` pixels) of an HxWx3 RGB image.

    ``plate``: HxW float32 background-plate evidence in [-1, 1]
    (:mod:`kiridashi.segmenters.plates`), given only to a backend whose config has ``plates``.
    """
    if not characters:
        return []
    segmenter = build(cfg, models_dir)
    if plate is not None:
        return segmenter.segment(image, characters, memo, plate=plate)
    return segmenter.segment(image, characters, memo)
