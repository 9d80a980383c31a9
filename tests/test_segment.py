"""The default segmenter (region graph cut) and the merge edges on synthetic drawn figures.

The figure: a flat-coloured, dark-outlined body + head on a textured two-colour background; the
"detections" are a loose character box and the face box, as the detect stage would give them.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from kiridashi.edges import decontaminate
from kiridashi.merge import merge_characters, rgba_crop
from kiridashi.metrics import iou
from kiridashi.segmenters.anime import AnimeRegionCut
from kiridashi.segmenters.regions import ColourModel, min_cut, region_graph, superpixels
from kiridashi.types import Character

H, W = 360, 480
BACKGROUND = (40, 120, 200)  # blue-ish, textured
BODY = (230, 80, 60)  # red dress
HAIR = (250, 210, 90)  # blond
SKIN = (250, 220, 200)


def drawn_figure(seed: int = 0) -> tuple[np.ndarray, np.ndarray, Character]:
    """(HxWx3 uint8 RGB image, HxW bool GT mask, Character with XYXY boxes)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 18, (H, W, 3))
    stripes = (np.sin(np.arange(W) / 7.0)[None, :, None] * 25).repeat(H, 0)
    image = np.clip(np.array(BACKGROUND, float) + noise + stripes, 0, 255).astype(np.uint8)
    gt = np.zeros((H, W), np.uint8)
    body = np.array([[190, 150], [290, 150], [320, 360], [160, 360]], np.int32)
    cv2.fillPoly(gt, [body], 1)
    cv2.ellipse(gt, (240, 105), (55, 60), 0, 0, 360, 1, -1)
    figure = image.copy()
    cv2.fillPoly(figure, [body], BODY)
    cv2.ellipse(figure, (240, 95), (58, 55), 0, 180, 360, HAIR, -1)  # hair on top
    cv2.ellipse(figure, (240, 115), (40, 42), 0, 0, 360, SKIN, -1)  # face
    cv2.ellipse(figure, (240, 105), (55, 60), 0, 0, 360, HAIR, 12)  # hair around the face
    contours, _ = cv2.findContours(gt, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(figure, contours, -1, (20, 20, 30), 2)  # line art (inside the GT)
    image = np.where(gt[..., None] > 0, figure, image)
    character = Character(
        box=(140.0, 30.0, 345.0, 360.0),
        score=0.9,
        face_box=(205.0, 80.0, 275.0, 150.0),
        detectors=["test"],
        keypoints={"face.left_eye": (225.0, 110.0, 0.9), "face.right_eye": (255.0, 110.0, 0.9)},
    )
    return image, gt.astype(bool), character


def test_superpixels_and_graph_cover_the_image():
    image, _, _ = drawn_figure()
    labels = superpixels(image, 8)
    assert labels.shape == (H, W) and labels.min() == 0
    graph = region_graph(labels, image.astype(np.float32))
    assert graph.area.sum() == H * W and graph.n == labels.max() + 1
    assert (graph.edges[:, 0] < graph.edges[:, 1]).all() and (graph.border > 0).all()


def test_min_cut_respects_unaries_and_smoothness():
    # a chain 0-1-2-3: strong ends, weak undecided middle pulled along by the pairwise terms
    edges = np.array([[0, 1], [1, 2], [2, 3]])
    labels = min_cut(np.array([5.0, 0.1, -0.1, -5.0]), edges, np.array([1.0, 0.01, 1.0]))
    assert labels.tolist() == [True, True, False, False]
    assert min_cut(np.array([5.0, -0.5, -5.0]), edges[:2], np.array([2.0, 0.1]))[1]


def test_colour_model_separates_flat_colours():
    image = np.zeros((10, 20, 3), np.uint8)
    image[:, :10] = BODY
    image[:, 10:] = BACKGROUND
    fg = np.zeros((10, 20))
    fg[:, :10] = 1
    ratio = ColourModel(32, 1.0).fit(image, fg, 1 - fg).log_ratio(image)
    assert (ratio[:, :10] > 2).all() and (ratio[:, 10:] < -2).all()


@pytest.mark.parametrize("selfie", [False, True])
def test_segmenter_cuts_out_a_drawn_figure(segment_cfg, selfie):
    if selfie:
        pytest.importorskip("mediapipe")
    image, gt, character = drawn_figure()
    params = dict(segment_cfg, selfie=dict(segment_cfg["selfie"], enabled=selfie))
    soft = AnimeRegionCut(**params).segment(image, [character], memo=None)
    assert len(soft) == 1 and soft[0].shape == (H, W) and soft[0].dtype == np.float32
    assert iou(soft[0] >= 0.5, gt) >= 0.95


def test_segmenter_is_deterministic(segment_cfg):
    image, _, character = drawn_figure(seed=3)
    params = dict(segment_cfg, selfie=dict(segment_cfg["selfie"], enabled=False))
    a = AnimeRegionCut(**params).segment(image, [character], memo=None)[0]
    b = AnimeRegionCut(**params).segment(image, [character], memo=None)[0]
    assert np.array_equal(a, b)


def test_every_step_can_be_switched_off(segment_cfg):
    image, gt, character = drawn_figure()
    params = dict(segment_cfg)
    for step in ("selfie", "colour", "seeds", "pairwise", "open_boxes", "refine", "enclosure",
                 "shape", "band", "fullres", "figure", "head"):  # fmt: skip
        params[step] = dict(segment_cfg[step], enabled=False)
    params["enclosure"]["border"] = dict(segment_cfg["enclosure"]["border"], enabled=False)
    soft = AnimeRegionCut(**params).segment(image, [character], memo=None)[0]
    assert soft.shape == (H, W) and soft.min() >= 0.0 and soft.max() <= 1.0
    assert (soft[:, :100] < 0.5).all()  # outside the grown box stays background


def test_fullres_band_cut_moves_the_boundary_onto_the_outline():
    # a coarse cut 3 px inside a dark-outlined disc is pulled out to the outer side of the line
    image, gt, _ = drawn_figure()
    coarse = cv2.erode(gt.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    seg = AnimeRegionCut(fullres={"enabled": True, "px": 5})
    fine = seg.refine_full(image, coarse, np.ones((H, W), bool))
    assert fine.shape == (H, W) and fine.dtype == bool
    assert iou(fine, gt) > iou(coarse, gt) and iou(fine, gt) >= 0.98


def test_enclosed_components_label_the_free_space():
    # a closed dark ring: its inside is one enclosed component, the line itself is component 0
    image = np.full((60, 60, 3), 200, np.uint8)
    cv2.circle(image, (30, 30), 15, (20, 20, 20), 2)
    outside = np.zeros((60, 60), bool)
    outside[:3] = True
    inside, comp = AnimeRegionCut()._enclosed(image, outside)
    assert inside[30, 30] and not inside[2, 2] and comp[30, 30] != comp[2, 2]
    assert comp[30, 15] == 0 and inside[30, 15]  # the line art counts as inside


def test_enclosure_border_opens_the_image_border():
    # a figure outline (dark U) standing on the bottom edge: the pocket between its arms is closed
    # by the image border only; with ``enclosure.border`` background there is reachable
    image = np.full((60, 60, 3), 200, np.uint8)
    cv2.rectangle(image, (10, 10), (50, 70), (20, 20, 20), 1)
    outside = np.zeros((60, 60), bool)
    outside[:5] = True
    seg = AnimeRegionCut()
    assert seg.enclosed(image, outside)[55, 30]  # closed by the border: counts as inside
    edge = np.zeros((60, 60), bool)
    edge[-1] = True
    assert not seg.enclosed(image, outside | edge)[55, 30]


def _edges(cfg: dict, **changes) -> dict:
    return dict(cfg["merge"], edges=dict(cfg["merge"]["edges"], **changes))


def _soft_disc() -> np.ndarray:
    """HxW float soft mask of a disc with a blurred (anti-aliased) edge."""
    disc = np.zeros((H, W), np.float32)
    cv2.circle(disc, (240, 180), 100, 1.0, -1)
    return cv2.GaussianBlur(disc, (0, 0), 2.0)


def test_hard_edges_are_binary(cfg):
    cut = merge_characters([_soft_disc()], (H, W), _edges(cfg, mode="hard"))[0]
    assert set(np.unique(cut.alpha)) == {0, 255}


@pytest.mark.parametrize("alpha", ["matte", "ramp"])
def test_soft_edges_ramp_and_agree_with_the_mask(cfg, alpha):
    cut = merge_characters([_soft_disc()], (H, W), _edges(cfg, mode="soft", alpha=alpha))[0]
    a = cut.alpha
    assert ((a > 0) & (a < 255)).sum() > 100  # a ramp at the edge
    assert np.array_equal(a >= 128, cut.mask)  # alpha >= 128 is the final mask
    assert a[180, 240] == 255 and a[0, 0] == 0
    row = a[180, 240:360].astype(int)
    assert (np.diff(row) <= 0).all()  # monotone ramp from inside to outside


def test_decontamination_removes_the_background_colour():
    # a red figure over green; the edge pixels are a 50/50 mix
    alpha = np.zeros((60, 60), np.uint8)
    alpha[:, :30] = 255
    alpha[:, 30] = 128
    fg, bg = np.array([220, 30, 30], float), np.array([30, 200, 30], float)
    a = alpha[..., None] / 255.0
    rgb = (a * fg + (1 - a) * bg).round().astype(np.uint8)
    clean = decontaminate(rgb, alpha)
    edge = clean[:, 30].astype(float)
    # blur fusion in a 3 px box (the default) leaves a sixth of the background in a 1 px 50 %
    # edge between flat colours (on drawn sprites it beats pymatting's estimate_foreground_ml,
    # which this bound was first written for: bench/results/edge_colour*.json)
    assert np.abs(edge - fg).max(axis=1).mean() < np.abs(rgb[:, 30] - fg).max(axis=1).mean() / 2.5
    assert edge[:, 1].mean() < 80  # little green left
    assert np.array_equal(clean[:, :30], rgb[:, :30])  # opaque pixels keep their colour


def test_rgba_crop_decontaminates_only_in_soft_mode(cfg):
    image, gt, _ = drawn_figure()
    cut = merge_characters([_soft_disc()], (H, W), _edges(cfg, mode="soft"))[0]
    soft = rgba_crop(image, cut.alpha, cut.box, _edges(cfg, mode="soft")["edges"])
    plain = rgba_crop(image, cut.alpha, cut.box, _edges(cfg, decontaminate=False)["edges"])
    assert soft.shape == plain.shape and soft.shape[2] == 4
    assert np.array_equal(soft[..., 3], plain[..., 3])
    assert not np.array_equal(soft[..., :3], plain[..., :3])


def test_guided_filter_near_the_figure_equals_the_whole_image_filter():
    from kiridashi.segmenters.anime import guided_filter_near

    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 255, (120, 200, 3), np.uint8), (5, 5), 1)
    soft = np.zeros((120, 200), np.float32)
    cv2.ellipse(soft, (80, 60), (30, 40), 0, 0, 360, 1.0, -1)
    whole = cv2.ximgproc.guidedFilter(image.astype(np.float32) / 255.0, soft, 3, 0.01)
    np.testing.assert_allclose(guided_filter_near(image, soft, 3, 0.01), whole, atol=1e-6)


@pytest.mark.parametrize("smooth_radius", [0, 2])
def test_merge_in_the_figures_box_equals_the_whole_frame(cfg, smooth_radius):
    from kiridashi.merge import assign_pixels, clean_mask

    rng = np.random.default_rng(1)
    h, w = 90, 140
    soft = []
    for cx in (40, 95):
        m = np.zeros((h, w), np.float32)
        cv2.ellipse(m, (cx, 50), (22, 30), 0, 0, 360, 0.9, -1)
        cv2.circle(m, (cx, 45), 3, 0.1, -1)  # a small hole
        m[rng.integers(0, h, 6), rng.integers(0, w, 6)] = 0.8  # specks
        soft.append(m)
    soft[1][60:, 120:] = 0.7  # a piece touching the frame's corner
    merge_cfg = dict(cfg["merge"], smooth_radius=smooth_radius, min_area_fraction=0.0)
    cuts = merge_characters(soft, (h, w), merge_cfg)
    whole = [clean_mask(m, merge_cfg) for m in assign_pixels(soft, merge_cfg["threshold"])]
    assert [c.index for c in cuts] == [0, 1]
    for cut in cuts:
        np.testing.assert_array_equal(cut.mask, whole[cut.index])


def _scaled(character: Character, k: float) -> Character:
    return Character(
        box=tuple(v * k for v in character.box),
        score=character.score,
        face_box=tuple(v * k for v in character.face_box),
        detectors=list(character.detectors),
        keypoints={n: (x * k, y * k, c) for n, (x, y, c) in character.keypoints.items()},
    )


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_enclosure_is_traced_above_the_work_size(segment_cfg, monkeypatch, scale):
    # enclosure.scale > 1: the cut at the work size gets the same crop at up to the image's own
    # resolution (here 2x: the work copy is half size) for the line-art enclosure
    image, gt, character = drawn_figure()
    big = cv2.resize(image, (2 * W, 2 * H), interpolation=cv2.INTER_CUBIC)
    big_gt = cv2.resize(gt.astype(np.uint8), (2 * W, 2 * H), interpolation=cv2.INTER_NEAREST) > 0
    seen = []
    cut = AnimeRegionCut._cut

    def spy(self, crop, allowed, sure, prob, body, edge=None, fine=None, veto=None, vote=None):
        seen.append((crop.shape[:2], None if fine is None else fine.shape[:2]))
        return cut(self, crop, allowed, sure, prob, body, edge, fine, veto, vote)

    monkeypatch.setattr(AnimeRegionCut, "_cut", spy)
    params = dict(
        segment_cfg,
        work_side=W,
        selfie=dict(segment_cfg["selfie"], enabled=False),
        enclosure=dict(segment_cfg["enclosure"], scale=scale),
    )
    soft = AnimeRegionCut(**params).segment(big, [_scaled(character, 2.0)], memo=None)[0]
    ((crop_hw, fine_hw),) = seen
    if scale > 1:
        assert fine_hw == (2 * crop_hw[0], 2 * crop_hw[1])
    else:
        assert fine_hw is None
    assert iou(soft >= 0.5, big_gt) >= 0.95


def test_merge_fills_pinholes_but_keeps_gaps_between_arm_and_body(cfg):
    # the cut's own holes are background seen between arms, body and hair: only pinholes
    # (up to merge.max_hole_fraction of the mask) are filled
    soft = np.zeros((H, W), np.float32)
    soft[40:340, 140:340] = 1.0
    soft[100:103, 200:203] = 0.0  # a 3x3 pinhole
    soft[150:230, 300:320] = 0.0  # a 20x80 gap between an arm and the body
    cut = merge_characters([soft], (H, W), _edges(cfg, mode="hard"))[0]
    assert cut.mask[100:103, 200:203].all()
    assert not cut.mask[150:230, 300:320].any()


def test_figure_prior_holds_the_figure_and_never_vouches_for_its_own_box(segment_cfg):
    from tests.test_heads import brown_haired_scene

    rgb, figure, _ = brown_haired_scene(0)
    ys, xs = np.nonzero(figure)
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    seg = AnimeRegionCut(**dict(segment_cfg, figure=dict(segment_cfg["figure"], enabled=True)))
    found = Character(box=box, score=0.9, detectors=["lbp_cascade", "figure_net"])
    prob = seg.figure_probability(rgb, [found], 1.0, rgb.shape[:2])
    assert prob.shape == rgb.shape[:2] and prob.min() >= 0.0 and prob.max() <= 1.0
    near = cv2.dilate(figure.astype(np.uint8), np.ones((41, 41), np.uint8)) > 0
    assert prob[figure].mean() > 0.6 and prob[~near].mean() < 0.2
    alone = Character(box=box, score=0.5, detectors=["figure_net", "mediapipe_pose"])
    assert not seg.figure_probability(rgb, [alone], 1.0, rgb.shape[:2]).any()


def test_figure_weighs_more_where_the_selfie_model_is_blind(segment_cfg):
    figure = dict(segment_cfg["figure"], enabled=True, blend=0.3, blend_blind=0.6, blind_below=0.25)
    seg = AnimeRegionCut(**dict(segment_cfg, figure=figure))
    fig = np.zeros((100, 200), np.float32)
    fig[20:90, 20:60] = 0.9  # the net sees a figure in each box
    fig[20:90, 120:160] = 0.9
    selfie = np.zeros_like(fig)
    selfie[20:90, 120:160] = 0.8  # ... the selfie model only in the second
    chars = [
        Character(box=(10, 10, 70, 100), score=0.9),
        Character(box=(110, 10, 170, 100), score=0.9),
    ]
    b = seg._blend_map(selfie, fig, chars, 1.0)
    assert b[50, 40] == pytest.approx(0.6) and b[50, 140] == pytest.approx(0.3)
    assert b[5, 100] == pytest.approx(0.3)  # outside every box: the configured blend


def test_figure_weighs_more_where_the_selfie_model_overreaches(segment_cfg):
    figure = dict(segment_cfg["figure"], enabled=True, blend=0.3, blend_blind=None,
                  blend_over=0.6, over_ratio=0.3)  # fmt: skip
    seg = AnimeRegionCut(**dict(segment_cfg, figure=figure, box_margin=0.15))
    fig = np.zeros((100, 200), np.float32)
    fig[20:90, 20:60] = 0.9  # the net sees a figure in each box
    fig[20:90, 120:160] = 0.9
    selfie = np.maximum(fig, 0.0)
    selfie[0:60, 5:20] = 0.9  # ... the selfie model also a "tree trunk" beside the first one
    chars = [
        Character(box=(10, 10, 70, 100), score=0.9),
        Character(box=(110, 10, 170, 100), score=0.9),
    ]
    b = seg._blend_map(selfie, fig, chars, 1.0)
    assert b[30, 10] == pytest.approx(0.6) and b[50, 40] == pytest.approx(0.6)  # grown box
    assert b[50, 140] == pytest.approx(0.3)  # the two agree: the configured blend
    seg.figure["over_ratio"] = 1.0  # the trunk (15 x 60 px) is less than the figure (40 x 70)
    assert seg._blend_map(selfie, fig, chars, 1.0)[30, 10] == pytest.approx(0.3)


def test_band_cut_that_loses_a_thin_figure_keeps_the_coarse_cut(segment_cfg):
    seg = AnimeRegionCut(**segment_cfg)
    coarse = np.zeros((200, 300), bool)
    coarse[40:190, 50:80] = True  # a far figure 30 px wide: two 12 px bands cover all of it
    coarse[40:190, 200:260] = True
    fine = np.zeros_like(coarse)
    fine[45:185, 205:255] = True  # the other figure keeps most of its cut
    chars = [Character((45, 30, 85, 195), 0.8), Character((195, 30, 265, 195), 0.8)]
    out = seg.keep_coarse(coarse, fine, chars)
    assert out[40:190, 50:80].all()  # lost in the band: the coarse cut stays
    assert (out[:, 150:] == fine[:, 150:]).all()  # kept enough: the band cut's boundary stays
    seg.fullres["min_kept"] = 0.0
    assert (seg.keep_coarse(coarse, fine, chars) == fine).all()  # off


def test_a_small_dark_figure_on_dark_ground_keeps_its_body(cfg, models_dir):
    from kiridashi.segmenters import segment_image
    from tests.conftest import DictMemo, detected_set_image

    name = "renjs_char4normalschool__renjs_bus_station"
    rgb, gt, chars = detected_set_image("dev2", name, cfg, models_dir)
    assert len(chars) == 1  # found from its upscaled face (small_faces)
    masks = segment_image(rgb, chars, cfg["segment"], models_dir, DictMemo())
    assert iou(masks[0] >= 0.5, gt) > 0.3  # the band cut alone leaves only the face (IoU < 0.1)


def test_confident_pose_legs_are_sure_foreground(segment_cfg):
    seg = AnimeRegionCut(**segment_cfg)
    pose = {"left_shoulder": (130, 60), "right_shoulder": (70, 60), "left_hip": (120, 150),
            "right_hip": (80, 150), "left_knee": (118, 230), "right_knee": (82, 230),
            "left_ankle": (116, 300), "right_ankle": (84, 300)}  # fmt: skip
    ch = Character((40, 20, 160, 320), 0.9, face_box=(80, 20, 120, 55))
    ch.keypoints = {f"pose.{k}": (x, y, 0.95) for k, (x, y) in pose.items()}
    sure = seg.sure_foreground((330, 200), [ch], 1.0)
    assert sure[190, 119] and sure[265, 83]  # on the thigh and the shin lines
    assert not sure[265, 100]  # between the legs
    ch.keypoints["pose.left_knee"] = (118, 230, 0.5)  # an unsure knee: no left leg
    sure = seg.sure_foreground((330, 200), [ch], 1.0)
    assert not sure[190, 119] and not sure[265, 117] and sure[265, 83]
    seg.seeds["leg_core"] = 0.0
    assert not seg.sure_foreground((330, 200), [ch], 1.0)[265, 83]


def test_a_small_figures_leg_seeds_are_wide_enough_to_hold_superpixels(segment_cfg):
    seg = AnimeRegionCut(**segment_cfg)
    pose = {"left_shoulder": (58, 30), "right_shoulder": (42, 30), "left_hip": (56, 60),
            "right_hip": (44, 60), "left_knee": (56, 90), "right_knee": (44, 90),
            "left_ankle": (56, 120), "right_ankle": (44, 120)}  # fmt: skip
    ch = Character((30, 10, 70, 125), 0.9, face_box=(44, 10, 56, 24))
    ch.keypoints = {f"pose.{k}": (x, y, 0.95) for k, (x, y) in pose.items()}
    sure = seg.sure_foreground((130, 100), [ch], 1.0)
    width = sure[105].sum() / 2  # one row through both shins
    min_width = float(seg.seeds["leg_min_width"]) * seg.superpixel_px
    assert min_width > 0.15 * 16  # the shoulders' share alone would be 2 px
    assert width >= min_width - 1
