"""The quality gate: which crops stay out of the training set, each with its reasons.

A crop is left out when the quality report flags it (no-reference checks, except the ones in
``export.ignore_flags``), when its detection score is below ``export.min_score``, when its image
has ground truth and the image's mask IoU is below ``export.min_iou``, or when its longest side
is below ``export.min_side_px``.
"""

from __future__ import annotations

from kiridashi.export.inputs import Crop
from kiridashi.export.settings import ExportSettings


def reasons(crop: Crop, settings: ExportSettings) -> list[tuple[str, str]]:
    """``(rule, reason)`` pairs saying why ``crop`` is left out (empty: it passes).

    Rules: ``flag:<check>``, ``min_score``, ``min_iou``, ``min_side_px``.
    """
    out = [
        (f"flag:{f['check']}", f"flag {f['check']}: {f.get('reason', '')}")
        for f in crop.flags
        if f.get("check") not in settings.ignore_flags
    ]
    if crop.score is not None and crop.score < settings.min_score:
        out.append(("min_score", f"detection score {crop.score:.3f} < export.min_score "
                    f"{settings.min_score}"))  # fmt: skip
    if crop.iou is not None and crop.iou < settings.min_iou:
        out.append(("min_iou", f"image IoU {crop.iou:.3f} < export.min_iou {settings.min_iou}"))
    w, h = crop.size
    if max(w, h) < settings.min_side_px:
        out.append(("min_side_px", f"crop is {w}x{h} px: longest side < export.min_side_px "
                    f"{settings.min_side_px}"))  # fmt: skip
    return out


def dropped_entry(crop: Crop, why: list[tuple[str, str]]) -> dict:
    """A left-out crop as ``export_report.json`` lists it."""
    return {
        "crop": crop.crop,
        "source": crop.source,
        "character": crop.character,
        "rules": [rule for rule, _ in why],
        "reasons": [text for _, text in why],
    }


def split(crops: list[Crop], settings: ExportSettings) -> tuple[list[Crop], list[dict]]:
    """(crops that pass, :func:`dropped_entry` of the others)."""
    kept, dropped = [], []
    for crop in crops:
        if why := reasons(crop, settings):
            dropped.append(dropped_entry(crop, why))
        else:
            kept.append(crop)
    return kept, dropped
