"""A figure standing behind a desk (issue #14): found and cut by the default config, the cut
keeps the figure above the desk and leaves the desk in front of it out."""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest

from kiridashi.demo import composite, draw_background, draw_character, premultiplied_layer
from kiridashi.detectors import detect_image
from kiridashi.metrics import box_iou, iou, mask_box
from kiridashi.segmenters import segment_image
from tests.test_heads import DictMemo

DESK = (150, 104, 66)  # RGB: a wooden desk
DESK_TOP = (186, 140, 96)
LINE = (52, 36, 28)


def desk_scene(seed: int, height: int = 600, x: int = 500):
    """(RGB image, HxW bool visible figure, HxW bool desk): a procedural figure in a drawn room,
    standing behind a desk that hides it from the hips down and reaches past it on both sides.
    The desk is drawn like game-CG furniture: a lighter top, a front panel, dark outlines."""
    rng = np.random.default_rng(seed)
    room = draw_background(rng, "room", (1280, 720))
    sprite = draw_character(rng, height=1200)
    layer = premultiplied_layer(sprite, height, mirror=False)
    rgb, alpha = composite(room, [(layer, x, 710 - height)])
    figure = alpha >= 128
    fx0, fy0, fx1, fy1 = mask_box(figure)
    top = int(fy0 + 0.52 * (fy1 - fy0))  # the desk's top edge, at the figure's hips
    x0, x1 = max(0, int(fx0 - 0.6 * (fx1 - fx0))), min(1279, int(fx1 + 0.6 * (fx1 - fx0)))
    desk = np.zeros(figure.shape, np.uint8)
    cv2.rectangle(desk, (x0, top), (x1, 720), 1, -1)
    rgb = np.ascontiguousarray(rgb)
    rgb[desk > 0] = DESK
    rgb[top : top + 28, x0 : x1 + 1] = DESK_TOP
    noise = rng.normal(0, 4, rgb.shape)  # wood grain
    rgb = np.where(desk[..., None] > 0, np.clip(rgb + noise, 0, 255), rgb).astype(np.uint8)
    cv2.rectangle(rgb, (x0, top), (x1, 719), LINE, 3)
    cv2.line(rgb, (x0, top + 28), (x1, top + 28), LINE, 2)
    return rgb, figure & (desk == 0), desk > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_desk_in_front_of_a_figure_stays_out_of_its_cut(cfg, models_dir, seed):
    rgb, visible, desk = desk_scene(seed)
    result = detect_image(
        rgb, copy.deepcopy(cfg["detect"]), models_dir, DictMemo(), {"original": rgb}
    )
    chars = result.characters  # its box reaches down through the desk, to the image bottom
    assert len(chars) == 1, [c.box for c in chars]
    assert box_iou(chars[0].box, mask_box(visible)) > 0.2
    (soft,) = segment_image(rgb, chars, cfg["segment"], models_dir, DictMemo())
    mask = soft >= 0.5
    x0, y0, x1, y1 = (int(v) for v in chars[0].box)
    desk_in_box = desk[y0:y1, x0:x1]
    taken = (mask[y0:y1, x0:x1] & desk_in_box).sum() / max(1, desk_in_box.sum())
    assert taken <= 0.05, f"{taken:.0%} of the desk in the character's box is in the cut"
    assert iou(mask, visible) >= 0.85, f"IoU with the visible figure {iou(mask, visible):.3f}"
