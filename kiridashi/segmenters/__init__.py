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
    image: np.ndarray, characters: list[Character], cfg: dict, models_dir: Path, memo: Any
) -> list[np.ndarray]:
    """Soft masks for ``characters`` (boxes XYXY in ``image`` pixels) of an HxWx3 RGB image."""
    if not characters:
        return []
    return build(cfg, models_dir).segment(image, characters, memo)
