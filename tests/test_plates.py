"""Background plates: other images of the folder over the same background tell the cut what is
background (kiridashi/segmenters/plates.py, the runner's partners, extract and the DVC stages)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from kiridashi.metrics import iou
from kiridashi.pipeline import RESULTS, extract, run_manifest_stage, stage_merge
from kiridashi.segmenters import plates
from tests.conftest import shared_path

CFG = plates.settings({"enabled": True})
H, W = 120, 160


def background(seed: int = 0) -> np.ndarray:
    """HxWx3 uint8: a smooth random texture (a painted backdrop)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (12, 16, 3)).astype(np.uint8)
    return cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC)


def with_figure(bg: np.ndarray, x0: int, colour=None) -> tuple[np.ndarray, tuple, np.ndarray]:
    """(image, its character box XYXY, HxW bool figure): a 30x60 figure at x0, its top half
    ``colour``, its bottom half the background's own colour there shifted by 40."""
    img = bg.copy()
    fig = np.zeros((H, W), bool)
    fig[40:100, x0 : x0 + 30] = True
    top = np.zeros_like(fig)
    top[40:70, x0 : x0 + 30] = True
    img[top] = colour if colour is not None else (250, 20, 20)
    img[fig & ~top] = np.clip(bg[fig & ~top].astype(int) + 40, 0, 255)
    return img, (x0, 40, x0 + 30, 100), fig


def test_evidence_is_background_where_a_partner_shows_it_and_unknown_where_none_does():
    bg = background()
    image, box, fig = with_figure(bg, 20)
    partner, pbox, pfig = with_figure(bg, 100)
    e = plates.evidence(image, [(partner, [pbox])], CFG)
    assert e.shape == (H, W) and e.dtype == np.float32
    shown = plates.outside_boxes((H, W), [pbox], CFG["grow"])
    # the figure (a colour of its own, or the background shifted by 40) is not background ...
    core = cv2.erode(fig.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert (e[core] == 1.0).all()
    # ... the background the partner shows is, and behind the partner's own figure nothing
    # is known
    away = shown & ~cv2.dilate(fig.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    assert (e[away] == -1.0).all()
    assert (e[~shown] == 0.0).all()


def test_partners_that_disagree_give_no_plate_there():
    bg = background()
    image, _, _ = with_figure(bg, 20)
    a = bg.copy()
    b = bg.copy()
    b[:, 120:] = np.clip(b[:, 120:].astype(int) + 60, 0, 255)  # b: another background there
    e = plates.evidence(image, [(a, []), (b, [])], CFG)
    assert (e[:, 125:] == 0).all() and (e[:, 60:110] == -1).all()
    # a partner of another size is not used at all
    assert plates.evidence(image, [(cv2.resize(a, (W * 2, H * 2)), [])], CFG) is None


def test_the_same_sprite_in_the_same_place_is_never_a_plate():
    """Expression variants: the same figure at the same spot in every image. Each one's box
    keeps it out of the others' plates, so the figure is not taken for background."""
    bg = background()
    image, box, fig = with_figure(bg, 60)
    variant, vbox, _ = with_figure(bg, 60)
    e = plates.evidence(image, [(variant, [vbox]), (variant.copy(), [vbox])], CFG)
    assert (e[fig] == 0).all()


def test_images_pair_by_aligned_background_and_size():
    bg, other = background(0), background(1)
    a, abox, _ = with_figure(bg, 20)
    b, bbox, _ = with_figure(bg, 100)
    c, cbox, _ = with_figure(bg, 24)  # covers a's figure: shows little of a's background
    d, dbox, _ = with_figure(other, 100)  # another background
    e = cv2.resize(bg, (W + 40, H + 30))  # another size
    views = [plates.view(img, boxes, CFG) for img, boxes in
             [(a, [abox]), (b, [bbox]), (c, [cbox]), (d, [dbox]), (e, [])]]  # fmt: skip
    picked = plates.pick_partners(views, CFG)
    assert picked[0] == [1, 2]  # b shows a's box area as background, c mostly does not
    assert picked[3] == [] and picked[4] == []
    assert plates.pick_partners(views, {**CFG, "max_partners": 1})[0] == [1]
    assert plates.pick_partners([views[0], None, views[1]], CFG) == [[2], [], [0]]


def test_a_large_folder_pairs_through_the_block_index():
    """More than SMALL_GROUP images of one size: candidates come from the block-colour index
    (linear in the folder), and every image still gets partners over its own background."""
    rng = np.random.default_rng(3)
    backdrops = [background(seed) for seed in range(6)]
    views, which = [], []
    for k in range(plates.SMALL_GROUP + 60):
        b = k % len(backdrops)
        noisy = np.clip(backdrops[b] + rng.normal(0, 3, backdrops[b].shape), 0, 255)
        img, box, _ = with_figure(noisy.astype(np.uint8), 10 + (k * 7) % 110)
        views.append(plates.view(img, [box], CFG))
        which.append(b)
    picked = plates.pick_partners(views, CFG)
    assert all(len(p) == CFG["max_partners"] for p in picked)
    assert all(which[j] == which[i] for i, p in enumerate(picked) for j in p)


# ------------------------------------------------------------------------------ end to end

ROOM = (  # dev2: five images over one dark room; the first is a dark-haired figure in it
    "renjs_char3normal__renjs_room_night",
    "renjs_char1normal__renjs_room_night",
    "lily_girl_07__renjs_room_night",
    "multi07__lily_girl_02-lily_boy_03-moonlight_old_mary_dark_crying__renjs_room_night",
    "empty__renjs_room_night",
)


@pytest.fixture
def room(tmp_path) -> Path:
    src = shared_path("datasets", "dev2", "images")
    dst = tmp_path / "room"
    dst.mkdir()
    for name in ROOM:
        for f in src.glob(f"{name}*.*"):
            shutil.copy(f, dst / f.name)
    return dst


def _iou(out: Path, folder: Path, name: str) -> float:
    pred = cv2.imread(str(out / "masks" / f"{name}.png"), cv2.IMREAD_GRAYSCALE) >= 128
    gt = cv2.imread(str(folder / f"{name}_gt.png"), cv2.IMREAD_GRAYSCALE) >= 128
    return iou(pred, gt)


@pytest.mark.slow
def test_extract_cuts_dark_hair_in_a_dark_room_with_the_rooms_other_images(room, tmp_path, cfg):
    """Long dark hair in a dark room: every prior and colour reading loses it (IoU 0.81 alone,
    0.94 with plates); the room's other images show the background behind it. A real extract,
    with and without plates; partners are recorded, the detect pass is counted once, and a
    rerun recomputes nothing."""
    off = {**cfg, "segment": {**cfg["segment"], "plates": {**cfg["segment"]["plates"],
                                                           "enabled": False}}}  # fmt: skip
    alone = _iou(tmp_path / "off", room, ROOM[0]) if extract(room, tmp_path / "off", off) else 0
    doc = extract(room, tmp_path / "on", cfg)
    cut = _iou(tmp_path / "on", room, ROOM[0])
    assert alone < 0.85 and cut > 0.9 and cut > alone + 0.08, (alone, cut)
    records = {r["source"]: r for r in doc["images"]}
    # the empty room is a rescaled copy (750 x 563): not aligned, not a partner
    assert sorted(records[f"{ROOM[0]}.jpg"]["plate_partners"]) == sorted(
        f"{n}.jpg" for n in ROOM[1:4]
    )
    detect = doc["summary"]["counts"]["detect"]  # the "off" run computed them
    assert detect.get("reused") == len(ROOM) and not detect.get("computed"), detect
    again = extract(room, tmp_path / "on", cfg)["summary"]["counts"]
    assert all(c.get("computed", 0) == 0 for c in again.values()), again


@pytest.mark.slow
def test_the_dvc_stages_carry_partners_from_segment_to_merge(room, tmp_path, cfg):
    """The segment stage pairs the images (the detect stage has run); its manifest names each
    one's partners, so the merge stage finds the same cached masks (nothing recomputed) and
    gives the same output as extract."""
    work = tmp_path / "work"
    up = None
    for step in ("preprocess", "detect", "segment"):
        run_manifest_stage(step, cfg, work / step, input_dir=room if up is None else None,
                           upstream_dir=up)  # fmt: skip
        up = work / step
    manifest = (work / "segment" / "manifest.json").read_text()
    assert '"plate_partners"' in manifest
    doc = stage_merge(cfg, up, tmp_path / "out")
    segment = doc["summary"]["counts"]["segment"]
    assert segment.get("reused") == len(ROOM) and not segment.get("computed"), segment
    extract(room, tmp_path / "ex", cfg)
    for name in ROOM:
        a = cv2.imread(str(tmp_path / "out" / "masks" / f"{name}.png"))
        b = cv2.imread(str(tmp_path / "ex" / "masks" / f"{name}.png"))
        assert np.array_equal(a, b), name
    assert (tmp_path / "out" / RESULTS).exists()
