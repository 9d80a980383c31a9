"""The learned prior's veto: where two models agree on a character, the net's "background" counts.

The cut blends the figure probability of its learned prior (``segment.figure.net``, kiridashi's
mask net by default) into the selfie model's person prior (``segment.figure.blend``). A blend
cannot say "no": where the net is sure a lamp, a poster or a chair beside the figure is
background (probability near 0) and the selfie model takes it for part of the person, the
blend is about even, and the colour model, re-learned from the cut, then keeps the object. The
veto adds the net's own background log-odds to the cut as a separate term.

The net is trusted only for a character where it and the selfie model, two models trained on
different data, agree on the figure: the IoU of their foregrounds (each >= 0.5) in the
character's box is at least ``agree``. On art it never saw, the net can leave whole shirts or
trousers out; the selfie model then disagrees and that character gets no veto.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from kiridashi.segmenters.regions import clipped_logit

Slices = tuple[slice, slice]


def agreement(fig: np.ndarray, selfie: np.ndarray) -> float:
    """IoU of ``fig >= 0.5`` and ``selfie >= 0.5`` (two HxW probability maps); 0 when both are
    empty."""
    f, q = fig >= 0.5, selfie >= 0.5
    union = int((f | q).sum())
    return float((f & q).sum()) / union if union else 0.0


def veto_map(
    fig: np.ndarray,
    selfie: np.ndarray,
    characters: Iterable[tuple[Slices, Slices, bool]],
    agree: float,
    clip: float,
) -> np.ndarray:
    """HxW float32 log-odds <= 0: the net's background evidence where it is trusted, else 0.

    ``fig``, ``selfie``: HxW float probability maps (the mask net's, the selfie model's).
    ``characters``: per character ``(box, area, has_net)``; ``box`` is its (rows, cols) box,
    where the agreement is measured; ``area`` the (rows, cols) area its cut may take (the box
    grown), where the veto applies; ``has_net``: the net was run on it. In ``area``:
    ``min(0, clip(logit(fig), -clip, clip))``. An untrusted character's area gets no veto even
    where a trusted neighbour's area overlaps it."""
    out = np.zeros(fig.shape, np.float32)
    logit = np.minimum(clipped_logit(fig, clip), 0.0).astype(np.float32)
    chars: Sequence[tuple[Slices, Slices, bool]] = list(characters)
    trusted = [has_net and agreement(fig[box], selfie[box]) >= agree for box, _, has_net in chars]
    for (_, area, _), ok in zip(chars, trusted, strict=True):
        if ok:
            out[area] = logit[area]
    for (_, area, _), ok in zip(chars, trusted, strict=True):
        if not ok:
            out[area] = 0.0
    return out
