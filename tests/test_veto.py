"""How the cut uses the mask net beside the selfie model: the veto (kiridashi/segmenters/veto.py;
the net's background evidence counts only for characters where it agrees with the selfie model)
and the holes of the net's figure for a character the selfie model is blind to."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from kiridashi.metrics import iou
from kiridashi.segmenters import segment_image
from kiridashi.segmenters.anime import AnimeRegionCut
from kiridashi.segmenters.base import META_KEYS
from kiridashi.segmenters.veto import agreement, veto_map
from kiridashi.types import Character
from tests.conftest import DictMemo, detected_set_image


def _box(y0: int, y1: int, x0: int, x1: int) -> tuple[slice, slice]:
    return slice(y0, y1), slice(x0, x1)


def _maps() -> tuple[np.ndarray, np.ndarray]:
    """(net, selfie) 40x80 maps: two figures; the net and the selfie model agree on the left
    one (cols 10-20), the net misses most of the right one (cols 50-70) that the selfie sees."""
    fig = np.full((40, 80), 0.01, np.float32)
    selfie = np.full((40, 80), 0.05, np.float32)
    fig[5:35, 10:20] = 0.99
    selfie[5:35, 9:22] = 0.9  # a little wider: the selfie map is blurry
    fig[5:12, 50:70] = 0.99  # the net sees the head only
    selfie[5:35, 50:70] = 0.9
    return fig, selfie


def test_agreement_is_the_iou_of_the_two_foregrounds():
    fig, selfie = _maps()
    assert agreement(fig[:, :40], selfie[:, :40]) == pytest.approx(300 / 390)
    assert agreement(fig[:, 40:], selfie[:, 40:]) == pytest.approx(140 / 600)
    assert agreement(np.zeros((4, 4)), np.zeros((4, 4))) == 0.0


def test_the_veto_is_the_nets_clipped_background_log_odds_where_it_is_trusted():
    fig, selfie = _maps()
    left = (_box(5, 35, 8, 22), _box(0, 40, 0, 30), True)
    right = (_box(5, 35, 48, 72), _box(0, 40, 40, 80), True)
    out = veto_map(fig, selfie, [left, right], agree=0.5, clip=3.0)
    assert out.dtype == np.float32 and out.shape == fig.shape
    assert out.max() <= 0.0
    assert out[20, 2] == pytest.approx(-3.0)  # p 0.01: logit -4.6, clipped
    assert out[20, 15] == 0.0  # the net's figure: no veto (the veto only says "background")
    assert np.all(out[:, 40:] == 0.0)  # the net misses the right figure's body: not trusted
    assert np.all(out[:, 30:40] == 0.0)  # outside every area


def test_an_untrusted_character_keeps_its_area_free_of_a_trusted_neighbours_veto():
    fig, selfie = _maps()
    left = (_box(5, 35, 8, 22), _box(0, 40, 0, 60), True)  # its area reaches into the right one
    right = (_box(5, 35, 48, 72), _box(0, 40, 40, 80), True)
    out = veto_map(fig, selfie, [left, right], agree=0.5, clip=3.0)
    assert np.all(out[:, 40:] == 0.0)
    assert out[20, 35] == pytest.approx(-3.0)


def test_a_character_the_net_did_not_see_gets_no_veto():
    fig, selfie = _maps()
    left = (_box(5, 35, 8, 22), _box(0, 40, 0, 30), False)
    assert np.all(veto_map(fig, selfie, [left], agree=0.5, clip=3.0) == 0.0)


def test_the_veto_leaves_furniture_beside_a_figure_out_of_its_cut(cfg, models_dir):
    """dev's godotvn_tachie_shame__bg_lecturehall: red lecture-hall seats touch the figure; the
    blend of the net and the selfie model let them into the cut (IoU 0.85). With one colour
    reading the veto is what leaves them out; the layout-seeded second reading
    (``colour.consensus_layout``) leaves them out too, and the default has both."""
    name = "godotvn_tachie_shame__bg_lecturehall"
    rgb, gt, chars = detected_set_image("dev", name, cfg, models_dir)
    veto = cfg["segment"]["figure"]["veto"]
    consensus = cfg["segment"]["colour"]["consensus_sigma"]
    scores = {}
    for v, c in [(None, None), (veto, None), (None, consensus), (veto, consensus)]:
        seg = copy.deepcopy(cfg["segment"])
        seg["figure"]["veto"] = v
        seg["colour"]["consensus_sigma"] = c
        masks = segment_image(rgb, chars, seg, models_dir, DictMemo())
        scores[(v, c)] = iou(np.max(masks, axis=0) >= 0.5, gt)
    assert scores[(None, None)] < 0.9, scores  # one reading, no veto: the seats come in
    assert scores[(veto, None)] >= 0.95, scores
    assert scores[(None, consensus)] >= 0.95, scores
    assert scores[(veto, consensus)] >= 0.95, scores  # the default


def test_holes_in_the_nets_figure_are_neutral_only_where_the_selfie_model_is_blind(cfg):
    """A 60x80 work-size map with two characters whose net figure has a hole (a white shirt the
    net missed). The selfie model sees the right one only: the left one's hole goes to
    ``blind_fill``, the right one's stays (there the selfie model has its say)."""
    seg = AnimeRegionCut(**{k: v for k, v in cfg["segment"].items() if k not in META_KEYS})
    assert seg.figure["blind_fill"] == 0.5
    fig = np.zeros((60, 80), np.float32)
    selfie = np.zeros((60, 80), np.float32)
    for x0 in (5, 45):
        fig[10:50, x0 : x0 + 20] = 0.95
        fig[20:30, x0 + 5 : x0 + 15] = 0.05  # the hole
    selfie[10:50, 45:65] = 0.9
    chars = [Character(box=(5, 10, 25, 50), score=1.0), Character(box=(45, 10, 65, 50), score=1.0)]
    out = seg._fill_blind_holes(selfie, fig, chars, 1.0)
    assert np.all(out[20:30, 10:20] == 0.5)  # blind: the hole is neutral
    assert np.all(out[20:30, 50:60] == np.float32(0.05))  # seen by the selfie model: unchanged
    assert np.array_equal(out[fig >= 0.5], fig[fig >= 0.5])  # the figure itself is unchanged
    assert np.all(out[0:5] == 0.0)  # the background around is unchanged
    assert fig[25, 15] == np.float32(0.05)  # the input is not modified
    seg.figure["blind_fill"] = None
    assert seg._fill_blind_holes(selfie, fig, chars, 1.0) is fig
