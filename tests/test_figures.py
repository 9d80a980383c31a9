"""The learned figure detector: synthetic scenes, decoding, the bundled net, training end to end,
and the no-figure rule (no character without figure evidence)."""

from __future__ import annotations

import copy
import importlib.util
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from kiridashi.demo import composite, draw_background, draw_character
from kiridashi.detectors import detect_image
from kiridashi.detectors.characters import Foreground, build_characters
from kiridashi.detectors.figure_net import FigureNet
from kiridashi.detectors.fusion import fuse
from kiridashi.figures.decode import decode
from kiridashi.figures.synth import SceneSynth
from kiridashi.figures.train import targets
from kiridashi.metrics import box_iou
from kiridashi.models import BUNDLED_DIR, find_model_file
from kiridashi.types import Detection
from tests.conftest import DictMemo

HAS_TORCH = importlib.util.find_spec("torch") is not None


@pytest.fixture
def dcfg(cfg) -> dict:
    return copy.deepcopy(cfg["detect"])


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p) - np.log(1 - p)


def test_synthetic_scenes_are_deterministic_and_boxes_fit_the_alpha():
    a = SceneSynth([], [], np.random.default_rng(5), n_procedural=4)
    b = SceneSynth([], [], np.random.default_rng(5), n_procedural=4)
    for _ in range(6):
        sa = a.sample(np.random.default_rng(9), (160, 96))
        sb = b.sample(np.random.default_rng(9), (160, 96))
        assert np.array_equal(sa.rgb, sb.rgb) and sa.boxes == sb.boxes
    rng = np.random.default_rng(1)
    for _ in range(12):
        s = a.sample(rng, (160, 96))
        assert s.rgb.shape == (96, 160, 3) and s.alpha.shape == (96, 160)
        for x0, y0, x1, y1 in s.boxes:
            assert 0 <= x0 < x1 <= 160 and 0 <= y0 < y1 <= 96
            assert s.alpha[int(y0) : math.ceil(y1), int(x0) : math.ceil(x1)].max() > 0.4


def test_decoding_the_training_targets_gives_back_the_boxes():
    synth = SceneSynth([], [], np.random.default_rng(2), n_procedural=4)
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(10):
        scene = synth.sample(rng, (320, 192))
        mask, heat, size, _ = targets(scene, 4)
        maps = np.stack([logit(mask), logit(heat), size[0], size[1]])
        found = decode(maps, 4, min_score=0.5, nms_iou=0.9)
        for box in scene.boxes:
            assert max(box_iou(box, f.box) for f in found) > 0.8
            checked += 1
    assert checked >= 5


def scene_with(figure_hw: tuple[int, int], x: int, face_hidden: bool, seed: int = 0):
    """A 1280x720 procedural room with one procedural figure of ``figure_hw`` (h, w) px at
    ``x`` (may be negative: cut by the left edge), its feet near the floor line; the face
    painted over with hair colour when ``face_hidden`` (a figure seen from behind)."""
    rng = np.random.default_rng(seed)
    bg = draw_background(rng, "room", (1280, 720))
    sprite = draw_character(rng, height=1200)
    if face_hidden:
        h = sprite.shape[0]
        head = sprite[int(0.06 * h) : int(0.25 * h)]
        opaque = head[..., 3] > 0
        head[opaque, :3] = (90, 60, 50)
    fh, fw = figure_hw
    layer = cv2.resize(sprite.astype(np.float32) / 255.0, (fw, fh), interpolation=cv2.INTER_AREA)
    layer[..., :3] *= layer[..., 3:4]
    y = 690 - fh
    rgb, alpha = composite(bg, [(layer, x, y)])
    ys, xs = np.nonzero(alpha >= 128)
    return rgb, (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def test_bundled_net_ships_in_the_package():
    path = find_model_file("figure_net.onnx", None)
    assert path is not None and path.parent == BUNDLED_DIR
    assert (BUNDLED_DIR / "figure_net.onnx.json").is_file()  # how it was trained


@pytest.mark.parametrize(
    "figure_hw, x",
    [
        ((230, 172), 700),  # small: a third of the frame height, no face
        ((600, 450), -150),  # large, cut by the left edge by a third, no face
    ],
)
def test_faceless_figure_is_found(dcfg, models_dir, figure_hw, x):
    rgb, truth = scene_with(figure_hw, x, face_hidden=True)
    result = detect_image(rgb, dcfg, models_dir, DictMemo(), {"original": rgb})
    assert len(result.characters) == 1, [c.box for c in result.characters]
    assert box_iou(result.characters[0].box, truth) > 0.5


def clutter_room(seed: int = 0) -> np.ndarray:
    """A 1280x720 procedural room crowded with furniture: cabinets, lockers, a desk, a lamp
    post, with line art - and no character."""
    rng = np.random.default_rng(seed)
    img = draw_background(rng, "room", (1280, 720)).copy()
    line = (40, 30, 30)
    for x in range(40, 1240, 150):  # lockers / cabinets along the wall
        top = int(rng.integers(180, 320))
        col = tuple(int(v) for v in rng.integers(90, 200, 3))
        cv2.rectangle(img, (x, top), (x + 120, 600), col, -1)
        cv2.rectangle(img, (x, top), (x + 120, 600), line, 3)
        cv2.line(img, (x + 60, top), (x + 60, 600), line, 2)
        cv2.circle(img, (x + 50, (top + 600) // 2), 5, line, -1)
    cv2.rectangle(img, (420, 470), (860, 520), (150, 100, 60), -1)  # a desk in front
    cv2.rectangle(img, (420, 470), (860, 520), line, 3)
    for lx in (440, 830):
        cv2.rectangle(img, (lx, 520), (lx + 16, 700), (120, 80, 50), -1)
    cv2.rectangle(img, (1100, 80), (1116, 700), (70, 70, 80), -1)  # a lamp post
    cv2.ellipse(img, (1108, 80), (40, 24), 0, 0, 360, (250, 240, 190), -1)
    return img


def test_furniture_clutter_gives_no_character(dcfg, models_dir):
    room = clutter_room()
    result = detect_image(room, dcfg, models_dir, DictMemo(), {"original": room})
    assert result.characters == [], [c.box for c in result.characters]


def _person(box, detector="figure_net", score=0.8):
    return fuse({(detector, 1.0): [Detection(box, score, "person", detector)]}, (300, 400), {})


RULE = {"figure_evidence": {"enabled": True, "detectors": ["figure_net"], "min_overlap": 0.5}}


def test_foreground_without_a_figure_box_is_rejected_with_its_reason():
    prob = np.zeros((300, 400), np.float32)
    prob[100:, 150:250] = 1.0  # a person-map blob: furniture, a lamp post
    rejected: list[dict] = []
    chars = build_characters([], (300, 400), RULE, Foreground(prob, (300, 400)), rejected)
    assert chars == []
    assert len(rejected) == 1 and "no figure evidence" in rejected[0]["reason"]
    assert box_iou(tuple(rejected[0]["box"]), (150, 100, 250, 300)) > 0.8


def test_foreground_with_a_figure_box_is_a_character():
    prob = np.zeros((300, 400), np.float32)
    prob[100:, 150:250] = 1.0
    rejected: list[dict] = []
    fused = _person((148, 96, 252, 300))
    chars = build_characters(fused, (300, 400), RULE, Foreground(prob, (300, 400)), rejected)
    assert len(chars) == 1 and chars[0].face_box is None and rejected == []
    # a figure box of a detector that is not evidence does not count
    other = _person((148, 96, 252, 300), detector="yolo", score=0.1)
    rejected = []
    build_characters(other, (300, 400), RULE, Foreground(prob, (300, 400)), rejected)
    assert len(rejected) == 1


@pytest.mark.skipif(not HAS_TORCH, reason="training needs the torch extra")
def test_training_script_runs_end_to_end_on_a_tiny_budget(tmp_path):
    from kiridashi.figures.train import main

    out = tmp_path / "figure_net.onnx"
    code = main(
        [
            "--out",
            str(out),
            "--max-steps",
            "2",
            "--batch",
            "2",
            "--art",
            "procedural",
            "--workers",
            "0",
        ]  # fmt: skip
    )
    assert code == 0 and out.is_file() and out.with_name(out.name + ".json").is_file()
    net = FigureNet("figure_net", model_file=str(out), min_score=0.0, min_mask_mean=0.0)
    maps = net.maps(np.zeros((300, 500, 3), np.uint8))
    assert maps.shape == (4, 192 // 4, 320 // 4)
    for f in net.figures(np.zeros((300, 500, 3), np.uint8)):
        assert 0 <= f.box[0] < f.box[2] <= 500 and 0 <= f.box[1] < f.box[3] <= 300


def test_unreadable_training_art_is_skipped_with_a_warning(tmp_path, caplog):
    from PIL import Image

    from kiridashi.figures.train import _images

    Image.new("RGBA", (8, 8), (255, 0, 0, 255)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"truncated, not a PNG")
    with caplog.at_level("WARNING"):
        found = _images(tmp_path, "RGBA")
    assert [name for name, _ in found] == ["a.png"] and found[0][1].shape == (8, 8, 4)
    assert "b.png" in caplog.text


def test_training_takes_the_mit_pool_folders_unless_told_otherwise():
    from kiridashi.figures.training import MIT_POOL_FOLDERS, Recipe, arguments

    parser = arguments("doc", Recipe(Path("net.onnx"), minutes=1.0))
    assert tuple(parser.parse_args([]).pool_folders) == MIT_POOL_FOLDERS == ("lily", "moonlight")
    chosen = parser.parse_args(["--pool-folders", "lily", "renjs"]).pool_folders
    assert chosen == ["lily", "renjs"]
