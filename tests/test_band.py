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
