"""Region-level graph cut: watershed superpixels, colour histograms and an s-t min cut.

Building blocks of the default anime segmenter (:mod:`kiridashi.segmenters.anime`):

- :func:`superpixels`: compact watershed regions seeded on a grid (HxW int32 labels 0..n-1);
  their borders follow colour edges, so they hug the line art of a drawn figure;
- :func:`region_graph`: per-region mean colour / area and the region adjacency with the shared
  border length;
- :class:`ColourModel`: smoothed 3D colour histograms of foreground and background pixels, giving
  a per-pixel log-likelihood ratio;
- :func:`min_cut`: binary labelling of a graph with unary log-odds and pairwise weights, solved
  with the Boykov-Kolmogorov max-flow of PyMaxflow (``maxflow``; 2-3x faster than scipy's Dinic
  on these graphs, same labels).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import maxflow
import numpy as np
from scipy import ndimage

FLOW_SCALE = 1000.0  # float capacities -> integers for the max-flow
HARD = 1e6  # capacity of a hard constraint (in log-odds units)


def superpixels(image: np.ndarray, step: int) -> np.ndarray:
    """Watershed superpixels of an HxWx3 uint8 image, seeded on a ``step``-px grid.

    Returns HxW int32 labels 0..n-1; watershed ridge pixels join their largest neighbour label.
    """
    h, w = image.shape[:2]
    markers = np.zeros((h, w), np.int32)
    ys, xs = np.mgrid[step // 2 : h : step, step // 2 : w : step]
    markers[ys, xs] = np.arange(1, ys.size + 1).reshape(ys.shape)
    labels = cv2.watershed(np.ascontiguousarray(image), markers)
    ridge = labels <= 0
    grown = cv2.dilate(np.where(ridge, 0, labels).astype(np.float32), np.ones((3, 3), np.uint8))
    labels = np.where(ridge, grown.astype(np.int32), labels)
    if (labels <= 0).any():  # isolated ridge blobs (rare): nearest labelled pixel
        idx = ndimage.distance_transform_edt(
            labels <= 0, return_distances=False, return_indices=True
        )
        labels = labels[idx[0], idx[1]]
    _, labels = np.unique(labels, return_inverse=True)
    return labels.reshape(h, w).astype(np.int32)


@dataclass
class RegionGraph:
    """Regions of a label image: ``n`` regions, mean colour (n x 3), area (n,), and adjacency
    pairs ``edges`` (m x 2, i < j) with shared border length ``border`` (m,)."""

    n: int
    colour: np.ndarray
    area: np.ndarray
    edges: np.ndarray
    border: np.ndarray

    def mean(self, labels: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Per-region mean of an HxW map."""
        sums = np.bincount(labels.ravel(), weights=values.ravel(), minlength=self.n)
        return sums / np.maximum(self.area, 1)


def region_graph(labels: np.ndarray, colour: np.ndarray) -> RegionGraph:
    """Region statistics of HxW ``labels`` over an HxWx3 float ``colour`` image."""
    n = int(labels.max()) + 1
    flat = labels.ravel()
    area = np.bincount(flat, minlength=n).astype(np.float64)
    means = (
        np.stack(
            [np.bincount(flat, weights=colour[..., c].ravel(), minlength=n) for c in range(3)], 1
        )
        / np.maximum(area, 1)[:, None]
    )
    pairs = []
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        diff = a != b
        lo, hi = np.minimum(a[diff], b[diff]), np.maximum(a[diff], b[diff])
        pairs.append(lo.astype(np.int64) * n + hi)
    codes, counts = np.unique(np.concatenate(pairs), return_counts=True)
    edges = np.stack([codes // n, codes % n], 1)
    return RegionGraph(n, means, area, edges, counts.astype(np.float64))


class ColourModel:
    """Foreground/background colour histograms (``bins``^3 over 0..255 per channel).

    Counts are Gaussian-smoothed (``sigma`` bins) and mixed with a uniform share so unseen
    colours stay undecided.
    """

    def __init__(self, bins: int = 16, sigma: float = 1.0):
        self.bins, self.sigma = int(bins), float(sigma)
        self.log_ratio_table = np.zeros((self.bins,) * 3, np.float32)

    def index(self, image: np.ndarray) -> np.ndarray:
        """HxW int32 histogram bin of each pixel of an HxWx3 uint8 image (the same for every
        model with these ``bins``: compute it once for several fits of one image)."""
        q = (image.astype(np.int32) * self.bins) // 256
        return (q[..., 0] * self.bins + q[..., 1]) * self.bins + q[..., 2]

    def _density(self, index: np.ndarray, weights: np.ndarray) -> np.ndarray:
        hist = np.bincount(index, weights=weights, minlength=self.bins**3).reshape((self.bins,) * 3)
        hist = ndimage.gaussian_filter(hist, self.sigma, mode="constant")
        total = hist.sum()
        uniform = 1.0 / hist.size
        return 0.95 * hist / max(total, 1e-9) + 0.05 * uniform

    def fit(
        self, image: np.ndarray, fg: np.ndarray, bg: np.ndarray, index: np.ndarray | None = None
    ) -> ColourModel:
        """Fit from HxWx3 uint8 ``image`` and HxW float weights of foreground / background;
        ``index``: its :meth:`index`, when already computed."""
        index = (self.index(image) if index is None else index).ravel()
        f = self._density(index, fg.ravel().astype(np.float64))
        b = self._density(index, bg.ravel().astype(np.float64))
        self.log_ratio_table = np.log(f / b).astype(np.float32)
        return self

    def log_ratio(self, image: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
        """HxW log P(colour | fg) / P(colour | bg); ``index``: :meth:`index` of ``image``."""
        return self.log_ratio_table.ravel()[self.index(image) if index is None else index]


def clipped_logit(prob: np.ndarray, clip: float) -> np.ndarray:
    """Log-odds (float64, same shape) of a probability map, the map first kept within
    [1e-4, 1 - 1e-4] and the result within [-clip, clip]."""
    p = np.clip(prob.astype(np.float64), 1e-4, 1 - 1e-4)
    return np.clip(np.log(p / (1 - p)), -clip, clip)


def line_contrast(image: np.ndarray, line_px: int) -> np.ndarray:
    """HxW uint8: how much darker each pixel of ``image`` (HxWx3 RGB) is than its surroundings
    at the scale of ``line_px`` (grey black-hat with an ellipse): high on dark line art."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (line_px, line_px))
    return cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, kernel)


def close_gaps(barrier: np.ndarray, px: int) -> np.ndarray:
    """HxW bool ``barrier`` (line art, edges) dilated by ``px`` (a square of side 2 px + 1), so
    gaps of up to about 2 ``px`` in an outline are closed; unchanged for ``px`` <= 0."""
    if px <= 0:
        return barrier
    return cv2.dilate(barrier.astype(np.uint8), np.ones((2 * px + 1,) * 2, np.uint8)) > 0


def min_cut(unary: np.ndarray, edges: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Minimise sum of unary costs + cut pairwise weights; returns a bool foreground label per node.

    unary: (n,) log-odds of foreground (positive prefers foreground; +-HARD for constraints);
    edges: (m, 2) node pairs; weights: (m,) non-negative cost of labelling a pair differently.
    Labelling a node against its sign costs ``|unary|``; the source side is foreground.
    """
    n = unary.size
    limit = np.iinfo(np.int32).max // 4
    cap_u = np.minimum(np.round(np.minimum(np.abs(unary), HARD) * FLOW_SCALE), limit)
    cap_e = np.minimum(np.round(np.asarray(weights, np.float64) * FLOW_SCALE), limit)
    graph = maxflow.Graph[int](n, max(1, len(edges)))
    nodes = graph.add_nodes(n)
    pos = unary > 0
    graph.add_grid_tedges(nodes, np.where(pos, cap_u, 0), np.where(pos, 0, cap_u))
    if len(edges):
        i, j = edges[:, 0].astype(np.int64), edges[:, 1].astype(np.int64)
        graph.add_edges(i, j, cap_e, cap_e)
    graph.maxflow()
    return ~graph.get_grid_segments(nodes)


def refine_band(
    image: np.ndarray,
    fg: np.ndarray,
    allowed: np.ndarray,
    band_px: int,
    pairwise_weight: float,
    colour: ColourModel,
    clip: float,
    extra: np.ndarray | None = None,
    band_samples: float = 1.0,
    bins: np.ndarray | None = None,
    lab: np.ndarray | None = None,
) -> np.ndarray:
    """Pixel-level graph cut in a ``band_px`` band around the boundary of ``fg`` (HxW bool).

    Colour models are learned locally (from the foreground / background within twice the band)
    so the dark background next to a dark outline is told from the outline; pixels outside the
    band keep their label and ``allowed`` (HxW bool) stays a hard limit. ``extra`` (HxW float,
    optional) is added to the band's foreground log-odds. ``band_samples`` is the weight of the
    band's own pixels among the colour samples (the sure parts outside the band weigh 1): below 1
    an outline the coarse cut left outside teaches the background model less of its colour, and
    above 0 a part thinner than the band (a fringe of hair, a small figure's leg) still gives
    the foreground model its colour. ``bins`` (``colour.index(image)``) and ``lab`` (``image``
    in float32 Lab), when the caller has them already. Returns HxW bool.
    """
    k = np.ones((3, 3), np.uint8)
    fg8 = fg.astype(np.uint8)
    band = (cv2.dilate(fg8, k, iterations=band_px) > 0) & (
        cv2.erode(fg8, k, iterations=band_px) == 0
    )
    band &= allowed
    if not band.any():
        return fg
    wide = (cv2.dilate(band.astype(np.uint8), k, iterations=band_px) > 0).astype(np.float64)
    wide[band] = float(band_samples)
    if bins is None:
        bins = colour.index(image)
    colour.fit(image, fg * wide, ~fg * wide, bins)
    nodes = cv2.dilate(band.astype(np.uint8), k) > 0  # band plus a fixed ring
    index = np.full(fg.shape, -1, np.int64)
    index[nodes] = np.arange(int(nodes.sum()))
    ratio = np.clip(colour.log_ratio(image, bins[nodes]), -clip, clip).astype(np.float64)
    if extra is not None:
        ratio = ratio + extra[nodes]
    unary = np.where(band[nodes], ratio, np.where(fg[nodes], HARD, -HARD))
    if lab is None:
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2Lab).astype(np.float32)
    pairs, d2s = [], []
    for sl_a, sl_b in (
        ((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
        ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
    ):
        both = nodes[sl_a] & nodes[sl_b]
        pairs.append(np.stack([index[sl_a][both], index[sl_b][both]], 1))
        d2s.append(((lab[sl_a][both] - lab[sl_b][both]) ** 2).sum(1))
    edges, d2 = np.concatenate(pairs), np.concatenate(d2s).astype(np.float64)
    beta = 1.0 / (2.0 * max(float(d2.mean()) if d2.size else 1.0, 1e-6))
    labels = min_cut(unary, edges, pairwise_weight * np.exp(-beta * d2))
    out = fg.copy()
    out[nodes] = labels
    return out & allowed
