"""The last look for small characters (kiridashi.detectors.small_faces): a figure a quarter of the
frame high, whose face is too small for the face detectors at 1x, is found from its upscaled face
once the figure net confirms a figure below it; upscaled faces on furniture are not."""

from __future__ import annotations

import copy
from pathlib import Path

import cv2
import numpy as np
import pytest

from kiridashi.detectors import detect_image
from kiridashi.detectors.base import build
from kiridashi.detectors.small_faces import figure_window, small_characters, upscaled_faces
from kiridashi.metrics import box_iou
from tests.conftest import shared_path
from tests.test_figures import DictMemo, clutter_room


@pytest.fixture
def dcfg(cfg) -> dict:
    return copy.deepcopy(cfg["detect"])


@pytest.fixture
def parts(dcfg, models_dir):
    """(face detectors, figure net) as ``detect.small_faces`` names them."""
    scfg = dcfg["small_faces"]
    faces = {
        n: build(n, dcfg["detectors"][n], models_dir=Path(models_dir)) for n in scfg["detectors"]
    }
    net_name = scfg["figure_detector"]
    return faces, build(net_name, dcfg["detectors"][net_name], models_dir=Path(models_dir))


def small_figure_scene(sprite: str, background: str, height: int = 220, x: int = 900):
    """A 1280x720 scene: the pool sprite ``sprite`` scaled to ``height`` px (a small, far
    figure, its face ~15-20 px wide) on ``background``; returns (RGB, XYXY box of its alpha)."""
    pool = shared_path("datasets", "sprites")
    bg = cv2.imread(str(pool / "backgrounds" / background), cv2.IMREAD_COLOR)
    bg = cv2.resize(bg, (1280, 720), interpolation=cv2.INTER_AREA)
    rgb = cv2.cvtColor(bg, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    bgra = cv2.imread(str(pool / "sprites" / sprite), cv2.IMREAD_UNCHANGED)
    width = round(bgra.shape[1] * height / bgra.shape[0])
    layer = cv2.resize(bgra, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    layer /= 255.0
    alpha = layer[..., 3:4]
    y = 720 - 30 - height
    part = rgb[y : y + height, x : x + width]
    part[:] = part * (1 - alpha) + layer[..., 2::-1] * alpha
    ys, xs = np.nonzero(alpha[..., 0] >= 0.5)
    truth = (x + xs.min(), y + ys.min(), x + xs.max() + 1.0, y + ys.max() + 1.0)
    return (rgb * 255).round().astype(np.uint8), tuple(float(v) for v in truth)


@pytest.mark.parametrize(
    "sprite", ["renjs/Char1AngrySchool.png", "renjs/Char4NormalSchool.png", "lily/girl_03.png"]
)
def test_a_small_figure_is_found_from_its_upscaled_face(dcfg, parts, sprite):
    rgb, truth = small_figure_scene(sprite, "moonlight/dawn1.jpg")
    faces, net = parts
    chars = small_characters(rgb, faces, net, dcfg["small_faces"])
    assert len(chars) == 1, [c.box for c in chars]
    ch = chars[0]
    assert box_iou(ch.box, truth) > 0.6, (ch.box, truth)
    fx0, fy0, fx1, fy1 = ch.face_box
    assert truth[0] <= (fx0 + fx1) / 2 <= truth[2]
    assert truth[1] - 5 <= fy0 <= truth[1] + 0.25 * (truth[3] - truth[1])  # the face is its head
    assert {"figure_net", "lbp_cascade"} <= set(ch.detectors)


def test_detection_ends_with_the_small_figure(dcfg, models_dir):
    rgb, truth = small_figure_scene("renjs/Char1AngrySchool.png", "moonlight/dawn1.jpg")
    result = detect_image(rgb, dcfg, models_dir, DictMemo(), {"original": rgb})
    assert len(result.characters) == 1, [c.box for c in result.characters]
    assert box_iou(result.characters[0].box, truth) > 0.6
    assert result.characters[0].face_box is not None


def test_upscaled_faces_on_furniture_are_not_characters(dcfg, parts):
    faces, net = parts
    scfg = dcfg["small_faces"]
    scene = shared_path("datasets", "dev", "images", "empty__bg_c1.jpg")
    rgb = cv2.cvtColor(cv2.imread(str(scene), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    found = upscaled_faces(rgb, faces, float(scfg["upscale"]), float(scfg["min_score"]))
    assert found, "the test needs a false face at 2x on this background scene"
    assert small_characters(rgb, faces, net, scfg) == []
    assert small_characters(clutter_room(), faces, net, scfg) == []


def test_the_figure_window_hangs_below_the_face_and_stays_in_the_image():
    cfg = {"window_width_faces": 8.0, "window_above_faces": 1.0, "window_below_faces": 10.0}
    assert figure_window((100, 50, 120, 70), (720, 1280), cfg) == (30, 30, 190, 270)
    assert figure_window((0, 0, 20, 20), (100, 100), cfg) == (0, 0, 90, 100)


def test_small_faces_off_changes_nothing(dcfg, models_dir):
    rgb, _ = small_figure_scene("renjs/Char1AngrySchool.png", "moonlight/dawn1.jpg")
    dcfg["small_faces"]["enabled"] = False
    result = detect_image(rgb, dcfg, models_dir, DictMemo(), {"original": rgb})
    assert all(2.0 not in c.scales for c in result.characters)
