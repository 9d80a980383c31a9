"""Enclosed pockets: the line art's closed areas of one crop, and which of them hold background.

The region cut (:class:`kiridashi.segmenters.anime.AnimeRegionCut`) counts an area the
outside cannot reach without crossing dark line art as inside the figure - except a pocket
whose colour is the background's (the gap between an arm and the body). That test runs in every
graph cut <-> colour model round, at the enclosure's resolution (the work size or a multiple
of it); :class:`Pockets` keeps what does not change between rounds (the enclosed pixels,
their components, the work pixel each one samples) so a round costs only the enclosed pixels,
and answers a round whose background-like pockets are those of an earlier round from memory.
"""

from __future__ import annotations

import cv2
import numpy as np

from kiridashi.segmenters.regions import RegionGraph


def share_at(mask: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """HxW float64 share of ``mask`` (bool, any size) at the size of ``labels`` (HxW)."""
    if mask.shape == labels.shape:
        return mask.astype(np.float64)
    size = labels.shape[1::-1]
    return cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA).astype(
        np.float64
    )


class Pockets:
    """The enclosed components of one crop and their per-region shares.

    ``inside`` (h'xw' bool) and ``comp`` (h'xw' int32, 0 = line art) come from the enclosure
    traced at h'xw' (a multiple of the work size HxW of ``labels``); ``threshold``: a pocket
    whose mean colour log-ratio is below ``-threshold`` is background-like."""

    def __init__(
        self,
        inside: np.ndarray,
        comp: np.ndarray,
        labels: np.ndarray,
        graph: RegionGraph,
        threshold: float,
    ):
        self.inside, self.comp = inside, comp
        self.labels, self.graph = labels, graph
        self.threshold = float(threshold)
        flat = comp.ravel()
        self.n = int(flat.max()) + 1
        self.count = np.maximum(np.bincount(flat, minlength=self.n), 1)
        # the enclosed pixels that are not line art: a component is enclosed as a whole
        self.pixels = np.flatnonzero(inside.ravel() & (flat > 0))
        self.pixel_comp = flat[self.pixels]
        self.enclosed = np.unique(self.pixel_comp)
        if comp.shape == labels.shape:
            self.pixel_work = self.pixels
        else:  # the work pixel each one samples, as cv2.resize(INTER_NEAREST) picks it
            h, w = labels.shape
            grid = np.arange(h * w, dtype=np.int32).reshape(h, w)
            up = cv2.resize(grid, comp.shape[1::-1], interpolation=cv2.INTER_NEAREST)
            self.pixel_work = up.ravel()[self.pixels]
        self._memo: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    def background_like(self, ratio: np.ndarray) -> np.ndarray:
        """(n components,) bool: the enclosed components whose mean of ``ratio`` (HxW colour
        log-ratio at the work size) is below ``-threshold``."""
        sums = np.bincount(
            self.pixel_comp, weights=ratio.ravel()[self.pixel_work], minlength=self.n
        )
        out = np.zeros(self.n, bool)
        out[self.enclosed] = sums[self.enclosed] / self.count[self.enclosed] < -self.threshold
        return out

    def shares(self, ratio: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Per region: (share held inside - enclosed and not a background-like pocket, share in
        a background-like pocket) for the colour log-ratio ``ratio`` (HxW; None: every
        enclosed area is held)."""
        bg_like = np.zeros(self.n, bool) if ratio is None else self.background_like(ratio)
        key = np.packbits(bg_like[self.enclosed]).tobytes()
        if key not in self._memo:
            pocket = self.inside & bg_like[self.comp]
            held = self.inside & ~pocket
            self._memo[key] = (
                self.graph.mean(self.labels, share_at(held, self.labels)),
                self.graph.mean(self.labels, share_at(pocket, self.labels)),
            )
        return self._memo[key]
