"""The pixel graph cut in a band around a coarse cut (kiridashi.segmenters.regions.refine_band)."""

from __future__ import annotations

import numpy as np
import pytest

from kiridashi.segmenters.regions import ColourModel, refine_band


def _fringe_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(HxWx3 RGB, HxW bool figure, HxW bool fringe): a dark jacket under a 10-px fringe of
    auburn hair, in front of a beige wall with a brown door. The fringe is thinner than a
    12-px band, so none of its pixels is in the band's sure inside."""
    rng = np.random.default_rng(0)
    h, w = 200, 200
    image = np.empty((h, w, 3), np.uint8)
    image[:] = (205, 175, 150)
    image[:, :40] = (170, 100, 60)
    body = np.zeros((h, w), bool)
    body[70:, 70:150] = True
    image[body] = (40, 40, 45)
    fringe = np.zeros((h, w), bool)
    fringe[60:70, 70:150] = True
    image[fringe] = (180, 95, 50)
    noisy = image.astype(int) + rng.integers(-6, 7, image.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8), body | fringe, fringe


@pytest.mark.parametrize("band_samples, kept", [(0.0, False), (0.05, True)])
def test_a_fringe_thinner_than_the_band_needs_the_bands_own_colour_samples(band_samples, kept):
    image, figure, fringe = _fringe_scene()
    allowed = np.ones(figure.shape, bool)
    out = refine_band(
        image, figure, allowed, 12, 12.0, ColourModel(40, 1.0), 4.0, None, band_samples
    )
    # from the sure parts only, the fringe's colour is nearer the door's than the jacket's
    assert bool(out[fringe].mean() > 0.9) == kept
    assert not (out & ~figure).any()


def _close_shades_scene() -> tuple[np.ndarray, np.ndarray]:
    """(HxWx3 RGB, HxW bool figure): a navy figure 5 levels darker than the navy wall behind
    it, both with +-8 levels of noise (a dark blazer on dark tiles)."""
    rng = np.random.default_rng(0)
    image = np.empty((200, 200, 3), np.uint8)
    image[:] = (62, 66, 92)
    figure = np.zeros((200, 200), bool)
    figure[60:, 60:140] = True
    image[figure] = (57, 61, 87)
    noisy = image.astype(int) + rng.integers(-8, 9, image.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8), figure


def test_less_colour_smoothing_tells_close_shades_apart():
    image, figure = _close_shades_scene()
    coarse = np.zeros(figure.shape, bool)
    coarse[54:, 54:146] = True  # the coarse cut took 6 px of wall around the figure
    allowed = np.ones(figure.shape, bool)
    wrong = {}
    for sigma in (1.0, 0.5):  # colour.sigma; segment.fullres.sigma
        model = ColourModel(40, sigma)
        out = refine_band(image, coarse, allowed, 12, 12.0, model, 4.0, None, 0.05)
        wrong[sigma] = int((out != figure).sum())
    assert wrong[0.5] < 0.5 * wrong[1.0], wrong  # measured: 44 px against 119
