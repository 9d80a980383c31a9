"""The region cut's consensus of two colour smoothings (``segment.colour.consensus_sigma``), the
vote of a third reading where the selfie model is blind to a character (``colour.blind_vote``),
and the enclosed pockets it re-reads in every round (:mod:`kiridashi.segmenters.pockets`)."""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest

from kiridashi.metrics import iou
from kiridashi.segmenters import segment_image
from kiridashi.segmenters.anime import AnimeRegionCut
from kiridashi.segmenters.pockets import Pockets, share_at
from kiridashi.segmenters.regions import region_graph, superpixels
from kiridashi.types import Character
from tests.conftest import DictMemo, detected_set_image, shared_path
from tests.test_segment import drawn_figure


def _direct_shares(inside, comp, labels, graph, ratio, threshold):
    """The pocket test as the cut ran it before :class:`Pockets`: the ratio map resized to the
    enclosure's resolution and summed over every component."""
    n = int(comp.max()) + 1
    fine = cv2.resize(ratio, comp.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    sums = np.bincount(comp.ravel(), weights=fine.ravel(), minlength=n)
    count = np.maximum(np.bincount(comp.ravel(), minlength=n), 1)
    bg_like = sums / count < -threshold
    bg_like[0] = False
    held = inside & ~bg_like[comp]
    pocket = inside & bg_like[comp]
    return (
        graph.mean(labels, share_at(held, labels)),
        graph.mean(labels, share_at(pocket, labels)),
    )


@pytest.mark.parametrize("scale", [1, 3])
def test_pockets_give_the_shares_the_full_resolution_sums_give(scale):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    labels = superpixels(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), 6)
    graph = region_graph(labels, cv2.cvtColor(image, cv2.COLOR_RGB2Lab).astype(np.float32))
    # line art: a grid of closed cells, the outer ones reached from the outside
    h, w = 60 * scale, 80 * scale
    barrier = np.zeros((h, w), np.uint8)
    barrier[:: 10 * scale] = 1
    barrier[:, :: 10 * scale] = 1
    _, comp = cv2.connectedComponents(1 - barrier, connectivity=4)
    comp[barrier > 0] = 0
    reached = np.unique(np.concatenate([comp[1], comp[-1], comp[:, 1], comp[:, -1]]))
    inside = ~np.isin(comp, reached[reached > 0])
    pockets = Pockets(inside, comp, labels, graph, 0.0)
    for round_ in range(4):
        # background-coloured cells on the left, figure-coloured ones on the right
        slope = np.linspace(-1.0, 1.0, labels.shape[1])[None, :] * (round_ + 1)
        ratio = rng.normal(0.0, 1.0, labels.shape) + slope
        held, pocket = pockets.shares(ratio)
        want = _direct_shares(inside, comp, labels, graph, ratio, 0.0)
        assert np.array_equal(held, want[0]) and np.array_equal(pocket, want[1])
        assert pocket.max() > 0 and held.max() > 0  # both kinds of pocket occur
    held, pocket = pockets.shares(None)  # no colour model: every enclosed area is held
    assert np.array_equal(held, graph.mean(labels, share_at(inside, labels)))
    assert not pocket.any()


def _cut(segment_cfg, image, character, consensus):
    params = dict(segment_cfg, selfie=dict(segment_cfg["selfie"], enabled=False))
    params["colour"] = dict(segment_cfg["colour"], consensus_sigma=consensus)
    seg = AnimeRegionCut(**params)
    return seg.union_mask(image, [character], 1.0)


def test_the_consensus_cut_keeps_only_what_both_colour_readings_keep(segment_cfg):
    image, gt, character = drawn_figure(seed=1)
    sigma = segment_cfg["colour"]["sigma"]
    one = _cut(segment_cfg, image, character, None)
    same = _cut(segment_cfg, image, character, sigma)
    assert np.array_equal(one, same)  # a second reading at the same smoothing changes nothing
    both = _cut(segment_cfg, image, character, 0.5 * sigma)
    assert not (both & ~one).any()  # the second reading can only take regions out
    assert (both & gt).sum() >= 0.97 * (one & gt).sum()  # ... and the figure stays


POSTER = (60, 170, 90)  # RGB: green, a colour the background also has


def _poster_scene(seed: int):
    """(image, GT figure, character, person prior, poster): the drawn figure with a green
    poster touching its side, green patches in the background far from it, and a person prior
    that takes the poster in (0.8) as a blurry prior takes in an object beside a figure."""
    image, gt, character = drawn_figure(seed)
    h, w = gt.shape
    rng = np.random.default_rng(seed)
    for x, y in [(20, 30), (400, 40), (30, 250), (420, 260)]:
        image[y : y + 60, x : x + 50] = np.clip(POSTER + rng.normal(0, 6, (60, 50, 3)), 0, 255)
    poster = np.zeros((h, w), bool)
    poster[170:300, 300:345] = True
    poster &= ~gt
    image[poster] = np.clip(POSTER + rng.normal(0, 6, (int(poster.sum()), 3)), 0, 255)
    prior = cv2.GaussianBlur(gt.astype(np.float32), (0, 0), 4)
    return image, gt, character, np.maximum(prior, 0.8 * poster), poster


@pytest.mark.parametrize("seed", [0, 1])
def test_a_layout_seeded_reading_leaves_out_what_only_the_prior_took_in(segment_cfg, seed):
    image, gt, character, prior, poster = _poster_scene(seed)
    hw = gt.shape
    kept = {}
    for name, consensus, layout in [("one", None, False), ("prior", 0.5, False),
                                    ("layout", 0.5, True)]:  # fmt: skip
        colour = dict(segment_cfg["colour"], consensus_sigma=consensus, consensus_layout=layout)
        seg = AnimeRegionCut(**dict(segment_cfg, colour=colour))
        allowed = seg._grown_boxes(hw, [character], 1.0, seg.box_margin)
        sure = seg.sure_foreground(hw, [character], 1.0) & allowed
        fg = seg._cut(image, allowed, sure, prior, seg.body_prior(hw, [character], 1.0))
        kept[name] = ((fg & poster).sum() / poster.sum(), (fg & gt).sum() / gt.sum())
    # the prior-weighted first samples teach every reading the poster's green as figure ...
    assert kept["one"][0] > 0.9 and kept["prior"][0] > 0.9
    # ... the reading that learns its first figure colours from the layout (face, torso) does
    # not, and the intersection leaves the poster out and keeps the figure
    assert kept["layout"][0] < 0.1
    assert kept["layout"][1] >= kept["one"][1] - 0.01 and kept["layout"][1] > 0.95


def test_the_blind_area_is_the_box_of_each_character_the_selfie_model_does_not_see(segment_cfg):
    """60x80 work-size maps: the net sees two figures, the selfie model only the right one."""
    seg = AnimeRegionCut(**segment_cfg)
    fig = np.zeros((60, 80), np.float32)
    selfie = np.zeros((60, 80), np.float32)
    fig[10:50, 5:25] = fig[10:50, 45:65] = 0.95
    selfie[10:50, 45:65] = 0.9
    chars = [Character(box=(5, 10, 25, 50), score=1.0), Character(box=(45, 10, 65, 50), score=1.0)]
    want = np.zeros((60, 80), bool)
    want[10:50, 5:25] = True
    assert np.array_equal(seg._blind_area(selfie, fig, chars, 1.0), want)
    # the blend raises the net's share exactly there
    share = seg._blend_map(selfie, fig, chars, 1.0)
    assert np.all(share[want] == np.float32(seg.figure["blend_blind"]))
    assert np.all(share[~want] == np.float32(seg.figure["blend"]))


def test_a_third_reading_votes_for_a_bag_the_consensus_lost_where_the_selfie_is_blind(
    cfg, models_dir
):
    """dev's multi03: the selfie model is blind to the chibi on the left, so the person prior
    there is the net's, weakened, and the prior-seeded reading loses the black bag she carries
    over the dark cave floor (the layout-seeded one keeps it). With ``colour.blind_vote`` a
    third reading, seeded by the net's figure alone, votes in her box, and two of the three
    readings keep the bag. Outside her box the consensus of two stays."""
    name = "multi03__godotvn_tachie_wonderful2-renpy_eileen_concerned-renpy_sylvie_blue_surprised__bg_cave"
    rgb, gt, chars = detected_set_image("dev", name, cfg, models_dir)
    chibi = shared_path("datasets", "dev", "alpha", f"{name}_gt_0.png")
    chibi = cv2.imread(str(chibi), cv2.IMREAD_GRAYSCALE) >= 128
    scores = {}
    for vote in (False, True):
        seg = copy.deepcopy(cfg["segment"])
        seg["colour"]["blind_vote"] = vote
        masks = segment_image(rgb, chars, seg, models_dir, DictMemo())
        union = np.max(masks, axis=0) >= 0.5
        scores[vote] = (iou(union, gt), max(iou(m >= 0.5, chibi) for m in masks))
    assert cfg["segment"]["colour"]["blind_vote"] is True  # the default
    assert scores[True][1] >= scores[False][1] + 0.05, scores  # measured 0.807 -> 0.880
    assert scores[True][0] >= 0.97, scores  # measured 0.953 -> 0.974
