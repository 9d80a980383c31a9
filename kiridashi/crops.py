"""Per-character masks read back from the RGBA crops an extraction wrote (evaluation, overlays).

One module below both :mod:`kiridashi.evaluate` and :mod:`kiridashi.overlay`, so neither imports
the other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kiridashi import io as kio


def character_masks(record: dict, out_dir: Path, union: np.ndarray) -> list[np.ndarray]:
    """Per-character HxW bool masks in the image frame, from the crops' alpha at their XYXY box.

    ``record``: one image's entry of ``extraction_results.json`` (its ``characters`` with ``box``
    and ``crop``, relative to ``out_dir``); ``union``: the image's HxW bool mask. A character
    whose crop cannot be read falls back to the union mask inside its box.
    """
    h, w = union.shape
    masks = []
    for ch in record.get("characters", []):
        x0, y0, x1, y1 = (int(v) for v in ch["box"])
        mask = np.zeros((h, w), bool)
        try:
            alpha = kio.load_image(out_dir / ch["crop"]).alpha
            part = np.ones((y1 - y0, x1 - x0), bool) if alpha is None else alpha >= 128
            if part.shape != (y1 - y0, x1 - x0):
                raise kio.BadInput(f"crop {part.shape[::-1]} does not fit its box")
            mask[y0:y1, x0:x1] = part
        except (kio.BadInput, FileNotFoundError, KeyError):
            mask[y0:y1, x0:x1] = union[y0:y1, x0:x1]
        masks.append(mask)
    return masks
