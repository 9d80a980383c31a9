"""The mask net: its training crops, its training script, its run-time wrapper."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from kiridashi.detectors.base import MissingModel
from kiridashi.figures.crops import CropConfig, crops_of, jitter_box, sample_batch, to_aspect
from kiridashi.figures.synth import SceneSynth

HAS_TORCH = importlib.util.find_spec("torch") is not None


def test_boxes_are_jittered_mostly_outwards_and_widened_to_the_input_aspect():
    rng = np.random.default_rng(0)
    cfg = CropConfig()
    box = (100.0, 50.0, 200.0, 350.0)
    grown = 0
    for _ in range(200):
        x0, y0, x1, y1 = jitter_box(box, rng, cfg)
        assert x0 >= 100 - 0.3 * 100 - 1e-9 and x1 <= 200 + 0.3 * 100 + 1e-9
        assert x0 <= 100 + 0.15 * 100 + 1e-9 and y1 >= 350 - 0.15 * 300 - 1e-9
        grown += x0 < 100
    assert 0.7 < grown / 200 < 0.9  # a side moves in with p_inward = 0.2
    x0, y0, x1, y1 = to_aspect(box, 0.5)
    assert (x1 - x0) / (y1 - y0) == pytest.approx(0.5) and (x0 + x1) / 2 == 150
    assert (y0, y1) == (50.0, 350.0)


def test_crops_stay_in_the_scene_and_hold_their_character():
    synth = SceneSynth([], [], np.random.default_rng(3), n_procedural=4)
    rng = np.random.default_rng(4)
    cfg = CropConfig(scene=(320, 180), min_box_px=24)
    seen = 0
    for _ in range(8):
        for rgb, alpha in crops_of(synth.sample(rng, cfg.scene), rng, (96, 160), cfg):
            assert rgb.shape == (160, 96, 3) and rgb.dtype == np.uint8
            assert alpha.shape == (160, 96) and alpha.min() >= 0 and alpha.max() <= 1
            assert alpha.mean() > 0.05  # the character fills a good part of its crop
            seen += 1
    assert seen >= 4
    images, alpha = sample_batch(synth, rng, 3, (96, 160), cfg)
    assert images.shape == (3, 3, 160, 96) and alpha.shape == (3, 160, 96)


@pytest.mark.skipif(not HAS_TORCH, reason="training needs the torch extra")
def test_mask_training_runs_and_its_export_runs_on_onnxruntime(tmp_path):
    from kiridashi.figures.mask_train import main
    from kiridashi.segmenters.mask_net import MaskNet

    out = tmp_path / "mask_net.onnx"
    args = ["--out", str(out), "--max-steps", "2", "--batch", "2", "--art", "procedural"]
    assert main([*args, "--workers", "0"]) == 0
    assert out.is_file() and out.with_name(out.name + ".json").is_file()
    net = MaskNet("segment.figure", model_file=str(out), input_side=320)
    maps = net.maps(np.zeros((500, 300, 3), np.uint8))
    assert maps.shape == (1, 320 // 2, 192 // 2)  # stride 2 of a 192 x 320 input
    prob = net.probability(np.zeros((500, 300, 3), np.uint8))
    assert prob.shape == (500, 300) and prob.min() >= 0 and prob.max() <= 1


def test_a_missing_mask_net_file_names_its_setting(tmp_path):
    from kiridashi.segmenters.mask_net import MaskNet

    with pytest.raises(MissingModel, match=r"segment\.figure\.model_file"):
        MaskNet("segment.figure", model_file="nope.onnx", models_dir=tmp_path)


def test_repainted_regions_keep_the_line_art_and_the_shading():
    from kiridashi.figures.synth import colour_regions, repaint_regions

    rgba = np.zeros((60, 40, 4), np.uint8)
    rgba[5:55, 5:35] = (20, 20, 20, 255)  # outline
    rgba[8:30, 8:32] = (200, 40, 40, 255)  # red shirt ...
    rgba[8:30, 8:32, 0] += np.arange(22, dtype=np.uint8)[:, None]  # ... with shading
    rgba[32:52, 8:32] = (40, 40, 200, 255)  # blue skirt
    labels = colour_regions(rgba, k=3)
    assert (labels[rgba[..., 3] == 0] == -1).all() and labels[6, 6] == 0  # line art: cluster 0
    out = repaint_regions(rgba[..., :3], labels, np.random.default_rng(0), np.zeros((1, 3)), 3)
    assert (out[6, 6] == rgba[6, 6, :3]).all()  # the line art is never repainted
    shirt = out[8:30, 8:32, 0].astype(int)
    assert not np.array_equal(out[8:30, 8:32], rgba[8:30, 8:32, :3])
    below = shirt[1:, 0] < 255  # the shading is kept where the new colour is not clipped
    assert below.sum() >= 10 and (np.diff(shirt[:, 0])[below] == 1).all()
