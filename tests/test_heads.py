"""Heads are never lost (issue #14): a brown-haired figure in front of brown wooden panelling,
found and cut by the default config, keeps its head, and a headless cut-out is flagged."""

from __future__ import annotations

import copy
import dataclasses

import cv2
import numpy as np
import pytest

from kiridashi.checks import check_character, face_outside_share
from kiridashi.demo import composite, draw_character, premultiplied_layer, random_look
from kiridashi.detectors import detect_image
from kiridashi.metrics import box_iou, mask_box
from kiridashi.segmenters import segment_image
from tests.conftest import DictMemo

WOOD = np.array([128, 84, 50], float)  # RGB: a warm mid brown
HAIR = (122, 80, 48)  # nearly the wood's own colour


def wooden_room(rng: np.random.Generator, w: int = 1280, h: int = 720) -> np.ndarray:
    """HxWx3 uint8 RGB: vertical wooden planks (grain, knots, dark seams) over a darker floor."""
    x = np.arange(w, dtype=float)[None, :]
    y = np.arange(h, dtype=float)[:, None]
    plank = (x // 96).astype(int)
    shade = rng.uniform(-14, 14, plank.max() + 1)[plank]
    grain = 9 * np.sin(x / 3.1 + 4 * np.sin(y / 37.0 + plank)) + rng.normal(0, 5, (h, w))
    img = WOOD[None, None, :] + (shade + grain)[..., None] * np.array([1.0, 0.7, 0.45])
    img[:, (np.arange(w) % 96) < 3] *= 0.55  # seams between planks
    img[int(0.8 * h) :] *= 0.72  # the floor
    for _ in range(6):  # knots
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, int(0.8 * h)))
        cv2.ellipse(img, (cx, cy), (10, 22), 0, 0, 360, (92, 58, 34), -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def brown_haired_scene(seed: int, height: int = 560, x: int = 480):
    """(RGB image, HxW bool figure mask, HxW bool head mask): one procedural figure with hair
    of the wood's colour standing on the floor of :func:`wooden_room`; the head is the
    figure's top 27 % (hair and face down to the chin)."""
    rng = np.random.default_rng(seed)
    look = dataclasses.replace(random_look(rng), hair=HAIR)
    sprite = draw_character(rng, height=1200, look=look)
    room = wooden_room(rng)
    layer = premultiplied_layer(sprite, height, mirror=False)
    y = 700 - height
    rgb, alpha = composite(room, [(layer, x, y)])
    figure = alpha >= 128
    x0, y0, x1, y1 = mask_box(figure)
    head = figure.copy()
    head[int(y0 + 0.27 * (y1 - y0)) :] = False
    return rgb, figure, head


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_brown_hair_on_brown_wood_keeps_its_head(cfg, models_dir, seed):
    rgb, figure, head = brown_haired_scene(seed)
    result = detect_image(
        rgb, copy.deepcopy(cfg["detect"]), models_dir, DictMemo(), {"original": rgb}
    )
    chars = [c for c in result.characters if box_iou(c.box, mask_box(figure)) > 0.3]
    assert len(chars) == 1, [c.box for c in result.characters]
    (soft,) = segment_image(rgb, chars, cfg["segment"], models_dir, DictMemo())
    mask = soft >= 0.5
    kept = (mask & head).sum() / head.sum()
    assert kept >= 0.9, f"only {kept:.0%} of the head is in the cut"
    if chars[0].face_box is not None:
        assert face_outside_share(list(chars[0].face_box), mask) <= 0.2
    record = {"face_box": chars[0].face_box, "keypoints": {}}
    assert "face_outside" not in {f["check"] for f in check_character(rgb, mask, record, 0)}


def drawn_head(gap: bool) -> tuple[np.ndarray, tuple[float, float, float, float], np.ndarray]:
    """(RGB image, face box XYXY, HxW bool hair) of a flat head drawn on a background of the
    hair's own colour: a skin face under a hair cap, both outlined; ``gap`` opens the hair's
    outline to the background."""
    img = np.full((300, 300, 3), HAIR, np.uint8)
    hair = np.zeros((300, 300), np.uint8)
    cv2.ellipse(hair, (150, 140), (70, 75), 0, 0, 360, 1, -1)
    img[hair > 0] = HAIR
    cv2.ellipse(img, (150, 140), (70, 75), 0, 0, 360, (40, 25, 20), 3)  # hair outline
    cv2.ellipse(img, (150, 165), (45, 50), 0, 0, 360, (250, 220, 200), -1)  # face
    cv2.ellipse(img, (150, 165), (45, 50), 0, 0, 360, (40, 25, 20), 3)
    if gap:
        img[60:90, 145:160] = HAIR  # a gap at the top of the hair outline
    face_box = (105.0, 120.0, 195.0, 215.0)
    face = np.zeros((300, 300), np.uint8)
    cv2.ellipse(face, (150, 165), (45, 50), 0, 0, 360, 1, -1)
    return img, face_box, (hair > 0) & (face == 0)


def test_closed_hair_is_given_back_and_leaking_hair_is_not():
    from kiridashi.segmenters.heads import head_mask
    from kiridashi.types import Character

    for gap in (False, True):
        img, face_box, hair = drawn_head(gap)
        ch = Character(box=(60.0, 50.0, 240.0, 300.0), score=1.0, face_box=face_box)
        head = head_mask(img, [ch], cut=np.zeros(img.shape[:2], bool))  # the cut lost it all
        face_core = np.zeros(img.shape[:2], np.uint8)
        cv2.ellipse(face_core, (150, 165), (30, 30), 0, 0, 360, 1, -1)
        assert head[face_core > 0].all()  # the face always
        kept = (head & hair).sum() / hair.sum()
        outline = np.zeros(img.shape[:2], np.uint8)
        cv2.ellipse(outline, (150, 140), (74, 79), 0, 0, 360, 1, -1)
        background = outline == 0  # beyond the head's outline
        if gap:  # hair open to the background: not taken (it would take the background too)
            assert kept < 0.1 and (head & background).sum() == 0
        else:
            assert kept > 0.9 and not (head & background).any()


POSE_HEAD = {  # MediaPipe Pose points of drawn_head's face (box 105-195 x 120-215), px
    "pose.nose": [150, 170, 0.99], "pose.left_eye": [165, 158, 0.99],
    "pose.right_eye": [135, 158, 0.99], "pose.left_ear": [192, 165, 0.95],
    "pose.right_ear": [108, 165, 0.95], "pose.mouth_left": [158, 184, 0.99],
    "pose.mouth_right": [142, 184, 0.99],
    "pose.left_shoulder": [195, 240, 0.99], "pose.right_shoulder": [105, 240, 0.99],
}  # fmt: skip


def test_a_faceless_characters_head_is_given_back_from_its_pose():
    from kiridashi.segmenters.heads import DEFAULTS, head_mask, pose_face_box
    from kiridashi.types import Character

    img, _, hair = drawn_head(False)
    ch = Character(box=(60.0, 50.0, 240.0, 300.0), score=1.0, keypoints=dict(POSE_HEAD))
    box = pose_face_box(ch, DEFAULTS["pose_face"])
    assert box is not None and abs((box[0] + box[2]) / 2 - 150) < 2 and box[2] - box[0] == 90
    assert abs((box[1] + box[3]) / 2 - 167.5) < 3  # the face's centre
    lost = np.zeros(img.shape[:2], bool)  # the cut lost the head
    head = head_mask(img, [ch], cut=lost)
    face_core = np.zeros(img.shape[:2], np.uint8)
    cv2.ellipse(face_core, (150, 165), (30, 30), 0, 0, 360, 1, -1)
    assert head[face_core > 0].all() and (head & hair).sum() / hair.sum() > 0.9
    off = {**DEFAULTS, "pose_face": {**DEFAULTS["pose_face"], "enabled": False}}
    assert not head_mask(img, [ch], off, cut=lost).any()
    unsure = {k: [x, y, 0.5] for k, (x, y, _) in POSE_HEAD.items()}
    assert not head_mask(img, [dataclasses.replace(ch, keypoints=unsure)], cut=lost).any()
    # a pose read into a background pattern: a figure far narrower than its box
    tiny = {
        k: [150 + (x - 150) / 10, 165 + (y - 165) / 10, c] for k, (x, y, c) in POSE_HEAD.items()
    }
    assert pose_face_box(dataclasses.replace(ch, keypoints=tiny), DEFAULTS["pose_face"]) is None


def head_with_bangs(background: tuple) -> tuple[np.ndarray, tuple, np.ndarray]:
    """(RGB image, face box XYXY, HxW bool hair) of a head whose hair has no outline of its own
    (soft, painted art): a hair cap with bangs over the top of the outlined face, on
    ``background``."""
    img = np.full((300, 300, 3), background, np.uint8)
    hair = np.zeros((300, 300), np.uint8)
    cv2.ellipse(hair, (150, 140), (70, 75), 0, 0, 360, 1, -1)
    img[hair > 0] = HAIR
    face = np.zeros((300, 300), np.uint8)
    cv2.ellipse(face, (150, 165), (45, 50), 0, 0, 360, 1, -1)
    img[face > 0] = (250, 220, 200)
    cv2.ellipse(img, (150, 165), (45, 50), 0, 0, 360, (40, 25, 20), 3)
    bangs = np.zeros((300, 300), bool)
    bangs[110:138] = True
    bangs &= hair > 0
    img[bangs] = HAIR
    face_box = (105.0, 120.0, 195.0, 215.0)
    return img, face_box, ((hair > 0) & (face == 0)) | bangs


def test_hair_open_to_a_background_of_another_colour_is_given_back_by_its_colour():
    from kiridashi.segmenters.heads import DEFAULTS, head_mask
    from kiridashi.types import Character

    sky = (95, 145, 205)
    img, face_box, hair = head_with_bangs(sky)
    ch = Character(box=(60.0, 50.0, 240.0, 300.0), score=1.0, face_box=face_box)
    lost = np.zeros(img.shape[:2], bool)  # the cut lost the head
    background = (img == sky).all(2)
    # (not counting 2 px along the drawing, where the head's crop is resampled)
    background &= cv2.dilate((~background).astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
    for colour, want in ((None, lambda k: k < 0.5), (1.0, lambda k: k > 0.9)):
        head = head_mask(img, [ch], {**DEFAULTS, "hair_colour": colour}, cut=lost)
        kept = (head & hair).sum() / hair.sum()
        assert want(kept), f"hair_colour {colour}: {kept:.0%} of the hair"
        assert not (head & background).any()


def test_a_head_the_cut_holds_is_left_to_the_cut():
    from kiridashi.segmenters.heads import head_mask
    from kiridashi.types import Character

    img, face_box, hair = drawn_head(False)
    ch = Character(box=(60.0, 50.0, 240.0, 300.0), score=1.0, face_box=face_box)
    cut = np.ones(img.shape[:2], bool)
    assert not head_mask(img, [ch], cut=cut).any()


def three_quarter_face() -> tuple[np.ndarray, tuple[float, float, float, float], np.ndarray]:
    """(RGB image, square face box XYXY, HxW bool face) of a face in three-quarter view under a
    hair cap, on a sky-blue background: the face is narrower than its box and off its centre,
    so the background beside the cheek lies inside the box's face ellipse."""
    img = np.full((300, 300, 3), (95, 145, 205), np.uint8)
    cv2.ellipse(img, (140, 150), (50, 55), 0, 180, 360, (70, 45, 30), -1)  # hair cap
    cv2.rectangle(img, (90, 150), (110, 200), (70, 45, 30), -1)  # a side lock
    face = np.zeros((300, 300), np.uint8)
    cv2.ellipse(face, (135, 170), (30, 42), 0, 0, 360, 1, -1)
    img[face > 0] = (250, 222, 200)
    cv2.ellipse(img, (135, 170), (30, 42), 0, 0, 360, (30, 20, 15), 2)
    for x in (125, 150):  # eyes
        cv2.circle(img, (x, 165), 5, (30, 20, 15), -1)
    return img, (95.0, 115.0, 195.0, 215.0), face > 0


@pytest.mark.parametrize("face_colour", [False, True])
def test_the_face_given_back_is_the_faces_colour_not_the_background_beside_it(face_colour):
    from kiridashi.segmenters.heads import DEFAULTS, head_mask
    from kiridashi.types import Character

    img, face_box, face = three_quarter_face()
    ch = Character(box=(60.0, 60.0, 240.0, 300.0), score=1.0, face_box=face_box)
    cfg = {**DEFAULTS, "face_colour": face_colour}
    head = head_mask(img, [ch], cfg, cut=np.zeros(img.shape[:2], bool))  # the cut lost it all
    assert head[face].mean() > 0.98
    sky = (img == (95, 145, 205)).all(2)
    # background beside the cheek taken in (not counting 4 px along the drawing, where the
    # head's crop is resampled)
    near = cv2.dilate((~sky).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    beside = (head & sky & ~near).sum()
    assert (beside == 0) if face_colour else (beside > 500)
