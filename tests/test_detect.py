"""Detection stack: registry, multi-scale caching, fusion, faces, character boxes, YOLO wiring.

Tests that need ../shared (models, dev images) or optional packages skip cleanly without them.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from kiridashi import io as kio
from kiridashi.detectors import DetectResult, detect_image, foreground_region
from kiridashi.detectors.base import build, build_enabled, detect_at_scale
from kiridashi.detectors.characters import (
    Foreground,
    build_characters,
    grow_into,
    pose_leg_room,
)
from kiridashi.detectors.fusion import fuse
from kiridashi.metrics import box_iou, mask_box
from kiridashi.types import Character, Detection
from tests.conftest import SHARED, shared_path

MODELS = SHARED / "models"


class FakeMemo:
    """Dict-backed memo that counts computations per kind."""

    def __init__(self):
        self.store: dict = {}
        self.computed: list[tuple[str, dict]] = []

    def __call__(self, kind, params, compute):
        from kiridashi.cache import params_digest

        key = (kind, params_digest(params))
        if key not in self.store:
            self.store[key] = compute()
            self.computed.append((kind, params))
        return self.store[key]


@pytest.fixture
def dcfg(cfg) -> dict:
    return copy.deepcopy(cfg["detect"])


def _only(dcfg: dict, *names: str) -> dict:
    for name, entry in dcfg["detectors"].items():
        entry["enabled"] = name in names
    return dcfg


def _load(path: Path) -> np.ndarray:
    return kio.load_image(path).rgb


def test_registry_builds_every_enabled_detector(dcfg):
    shared_path("models", "lbpcascade_animeface.xml")
    built = build_enabled(dcfg["detectors"], models_dir=MODELS)
    enabled = [n for n, d in dcfg["detectors"].items() if d.get("enabled", True)]
    assert sorted(built) == sorted(enabled)
    for name in enabled:
        assert built[name].name == name
        assert built[name] is build(name, dcfg["detectors"][name], models_dir=MODELS)  # cached


def test_missing_model_file_is_skipped_with_one_warning(dcfg, tmp_path, caplog):
    entry = dict(dcfg["detectors"]["lbp_cascade"], model_file="nope.xml")  # the default is bundled
    with caplog.at_level("WARNING"):
        assert build("lbp_cascade", entry, models_dir=tmp_path) is None
        assert build("lbp_cascade", entry, models_dir=tmp_path) is None
    lines = [r.getMessage() for r in caplog.records if "nope.xml" in r.getMessage()]
    assert len(lines) == 1
    assert "detect.detectors.lbp_cascade.model_file" in lines[0]


def test_detect_image_without_models_dir_still_works(dcfg, tmp_path):
    image = np.full((120, 160, 3), 200, np.uint8)
    res = detect_image(image, _only(dcfg, "lbp_cascade"), tmp_path, FakeMemo(), {"original": image})
    assert res.characters == []
    assert DetectResult.from_dict(res.to_dict()) == res


def test_adding_scales_computes_only_new_entries(dcfg):
    shared_path("models", "lbpcascade_animeface.xml")
    image = np.random.default_rng(0).integers(0, 255, (144, 256, 3), dtype=np.uint8)
    dcfg = _only(dcfg, "lbp_cascade", "mediapipe_face")
    dcfg["work_side"] = 256
    dcfg["views"] = ["preprocessed"]
    memo = FakeMemo()
    detect_image(image, dcfg, MODELS, memo)
    raw = [k for k, _ in memo.computed if k.startswith("raw.")]
    assert sorted(raw) == ["raw.lbp_cascade", "raw.mediapipe_face"]
    memo.computed.clear()
    dcfg["scales"] = [0.75, 1.0, 1.25]
    detect_image(image, dcfg, MODELS, memo)
    raw = [(k, p["scale"]) for k, p in memo.computed if k.startswith("raw.")]
    assert sorted(raw) == [
        ("raw.lbp_cascade", 0.75),
        ("raw.lbp_cascade", 1.25),
        ("raw.mediapipe_face", 0.75),
        ("raw.mediapipe_face", 1.25),
    ]
    memo.computed.clear()
    dcfg["detectors"]["lbp_cascade"]["weight"] = 0.5  # fusion weight: no detector rerun
    detect_image(image, dcfg, MODELS, memo)
    assert not [k for k, _ in memo.computed if k.startswith("raw.")]


def test_each_view_is_searched_and_cached_on_its_own(dcfg):
    # detect.views: the scene detectors also search the original (no denoise / CLAHE) copy;
    # adding the view computes only its runs, and a view the caller did not give is an error
    shared_path("models", "lbpcascade_animeface.xml")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (144, 256, 3), dtype=np.uint8)
    original = rng.integers(0, 255, (144, 256, 3), dtype=np.uint8)
    dcfg = _only(dcfg, "lbp_cascade")
    dcfg["detectors"]["lbp_cascade"].pop("views", None)  # no own pick: every view of detect.views
    dcfg["views"] = ["preprocessed"]
    memo = FakeMemo()
    detect_image(image, dcfg, MODELS, memo, {"original": original})
    memo.computed.clear()
    dcfg["views"] = ["preprocessed", "original"]
    detect_image(image, dcfg, MODELS, memo, {"original": original})
    raw = [p.get("view") for k, p in memo.computed if k.startswith("raw.")]
    assert raw == ["original"]
    with pytest.raises(ValueError, match=r"detect\.views"):
        detect_image(image, dcfg, MODELS, FakeMemo())
    with pytest.raises(ValueError, match="shape"):
        detect_image(image, dcfg, MODELS, FakeMemo(), {"original": original[:100]})


def test_a_detector_searches_only_its_own_views(dcfg):
    # detect.detectors.<name>.views picks among detect.views; the pick is not part of a run's
    # key, so narrowing it reuses the runs already cached
    shared_path("models", "lbpcascade_animeface.xml")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (144, 256, 3), dtype=np.uint8)
    views = {"original": rng.integers(0, 255, (144, 256, 3), dtype=np.uint8)}
    dcfg = _only(dcfg, "lbp_cascade")
    dcfg["detectors"]["lbp_cascade"].pop("views", None)
    dcfg["views"] = ["preprocessed", "original"]
    memo = FakeMemo()
    detect_image(image, dcfg, MODELS, memo, views)
    assert sorted(p.get("view", "-") for k, p in memo.computed if k.startswith("raw.")) == [
        "-",
        "original",
    ]
    memo.computed.clear()
    dcfg["detectors"]["lbp_cascade"]["views"] = ["original"]
    res = detect_image(image, dcfg, MODELS, memo, views)
    assert memo.computed == [] and res.characters == []
    # a pick outside detect.views falls back to all of them: detect.views=[preprocessed] alone
    # switches every detector to that view
    dcfg["views"] = ["preprocessed"]
    memo = FakeMemo()
    detect_image(image, dcfg, MODELS, memo, views)
    assert [p.get("view", "-") for k, p in memo.computed if k.startswith("raw.")] == ["-"]


def test_a_face_found_in_one_view_makes_a_character():
    # the same face box from the original view alone is fused like any other run
    runs = {
        ("lbp_cascade", 1.0, "preprocessed"): [],
        ("lbp_cascade", 1.0, "original"): [Detection((100, 100, 160, 160), 0.9, "face", "lbp")],
    }
    fused = fuse({k: v for k, v in runs.items() if v}, (600, 500), {"lbp_cascade": 1.0})
    assert len(fused) == 1 and fused[0].detection.box == pytest.approx((100, 100, 160, 160))


def test_fusion_merges_overlapping_boxes_and_records_supporters():
    runs = {
        ("lbp_cascade", 1.0): [Detection((100, 100, 200, 200), 0.9, "face", "lbp_cascade", 1.0)],
        ("lbp_cascade", 0.75): [Detection((104, 98, 204, 196), 0.8, "face", "lbp_cascade", 0.75)],
        ("animeface", 1.0): [
            Detection((98, 102, 198, 204), 0.95, "face", "animeface", 1.0),
            Detection((400, 100, 480, 180), 0.7, "face", "animeface", 1.0),
        ],
    }
    fused = fuse(runs, (600, 800), {"lbp_cascade": 1.0, "animeface": 1.0}, iou_thr=0.4)
    assert len(fused) == 2
    top = max(fused, key=lambda f: len(f.support))
    assert top.detectors == ["animeface", "lbp_cascade"]
    assert top.scales == [0.75, 1.0]
    assert box_iou(top.detection.box, (100, 100, 200, 200)) > 0.9
    assert top.detection.score > 0.95  # agreement raises the score
    other = min(fused, key=lambda f: len(f.support))
    assert other.detectors == ["animeface"] and other.detection.score == pytest.approx(0.7)


def test_side_by_side_faces_give_separate_characters():
    faces = {
        ("animeface", 1.0): [
            Detection((100, 100, 160, 160), 0.99, "face", "animeface"),
            Detection((300, 110, 360, 170), 0.98, "face", "animeface"),
            Detection((102, 101, 161, 158), 0.6, "face", "animeface"),  # duplicate
        ]
    }
    fused = fuse(faces, (600, 500), {"animeface": 1.0})
    prob = np.zeros((600, 500), np.float32)
    prob[80:, 60:200] = 1.0
    prob[90:, 260:400] = 1.0
    chars = build_characters(fused, (600, 500), {}, Foreground(prob, (600, 500)))
    assert len(chars) == 2
    assert chars[0].box[0] < chars[1].box[0]
    for ch in chars:
        assert ch.box[3] == 600 and ch.face_box is not None
        fb = ch.face_box
        assert ch.box[0] <= fb[0] and ch.box[2] >= fb[2] and ch.box[1] <= fb[1]


def test_faceless_foreground_becomes_a_low_score_character():
    prob = np.zeros((300, 400), np.float32)
    prob[100:, 150:250] = 1.0
    chars = build_characters([], (300, 400), {}, Foreground(prob, (300, 400)))
    assert len(chars) == 1 and chars[0].face_box is None and chars[0].score < 0.6
    assert box_iou(chars[0].box, (150, 100, 250, 300)) > 0.8


def _figure_box(box, score: float = 0.5) -> list:
    """A fused figure-net box (figure evidence for a face-less foreground component)."""
    det = Detection(box, score, "person", "figure_net")
    return fuse({("figure_net", 1.0): [det]}, (300, 400), {"figure_net": 1.0})


def test_weak_foreground_connected_to_a_figure_extends_its_box(dcfg):
    # a face-less figure whose hair top is only weakly foreground (0.4 < fg_threshold)
    prob = np.zeros((300, 400), np.float32)
    prob[120:, 150:250] = 1.0
    prob[105:120, 160:240] = 0.4  # hair top, connected (within fg_max_grow)
    prob[20:60, 20:60] = 0.4  # weak, not connected: background
    ccfg = dcfg["character"]
    figure = _figure_box((150, 105, 250, 300))  # the figure net's box: figure evidence
    (box,) = [
        c.box for c in build_characters(figure, (300, 400), ccfg, Foreground(prob, (300, 400)))
    ]
    assert box[1] == pytest.approx(105, abs=2) and box[0] >= 140
    grown = grow_into(prob >= 0.6, prob >= 0.3, 0.05)  # growth limited to 5 % of the height
    assert np.nonzero(grown.any(axis=1))[0][0] == 120 - round(0.05 * 180)
    assert not grown[20:60, 20:60].any()


def test_weak_legs_count_for_reaching_the_frame_bottom(dcfg):
    # the confident foreground stops above the bottom tenth; faint legs reach it
    prob = np.zeros((300, 400), np.float32)
    prob[140:265, 150:250] = 1.0
    prob[265:290, 170:230] = 0.4
    figure = _figure_box((150, 140, 250, 290))
    chars = build_characters(figure, (300, 400), dcfg["character"], Foreground(prob, (300, 400)))
    assert len(chars) == 1 and chars[0].box[3] >= 270


def _face_character_and(top: int, x0: int, x1: int, refit: bool = False) -> list:
    """Characters of one face at x 100..160 (body x 60..190 from y 80) plus foreground
    rows ``top``.. columns ``x0``..``x1`` (a neighbour or a part of the face character)."""
    faces = {("animeface", 1.0): [Detection((100, 100, 160, 160), 0.99, "face", "animeface")]}
    fused = fuse(faces, (600, 500), {"animeface": 1.0})
    prob = np.zeros((600, 500), np.float32)
    prob[80:, 60:190] = 1.0
    prob[top:, x0:x1] = 1.0
    cfg = {"proposal_core_faces": 1.0, "proposal_min_width_faces": 1.2}
    cfg.update(proposal_max_top_faces=0.5, refit_beside_faceless=refit)
    return build_characters(fused, (600, 500), cfg, Foreground(prob, (600, 500)))


def test_faceless_neighbour_under_an_overreaching_box_is_found():
    # the neighbour touches the face character's body: its box reaches over the neighbour
    chars = _face_character_and(top=90, x0=190, x1=330)
    assert chars[0].box[2] > 250  # the overreaching box
    assert [c.face_box is not None for c in chars] == [True, False]
    assert chars[1].box[0] == pytest.approx(190, abs=10) and chars[1].box[1] <= 100


def test_faceless_neighbour_bounds_the_face_characters_territory():
    chars = _face_character_and(top=90, x0=190, x1=330, refit=True)
    assert len(chars) == 2 and chars[0].box[2] <= 205 < chars[1].box[2]


def test_leftover_body_below_a_face_is_not_a_character():
    # a flared skirt / arm / prop at the bottom right of the face character's box
    chars = _face_character_and(top=300, x0=190, x1=280)
    assert len(chars) == 1 and chars[0].face_box is not None


def test_lbp_finds_most_faces_on_the_grid(dcfg):
    path = shared_path("datasets", "faces", "anime_faces_grid.jpg")
    shared_path("models", "lbpcascade_animeface.xml")
    det = build("lbp_cascade", dcfg["detectors"]["lbp_cascade"], models_dir=MODELS)
    faces = det.detect(_load(path))
    assert 28 <= len(faces) <= 40
    assert all(0.0 <= f.score <= 1.0 and f.label == "face" for f in faces)


def test_animeface_keypoints_on_the_grid(dcfg):
    pytest.importorskip("animeface")
    path = shared_path("datasets", "faces", "anime_faces_grid.jpg")
    det = build("animeface", dcfg["detectors"]["animeface"])
    faces = det.detect(_load(path))
    assert len(faces) >= 15
    f = faces[0]
    assert {"face.left_eye", "face.right_eye", "face.nose", "face.mouth", "face.chin"} <= set(
        f.keypoints
    )
    x0, y0, x1, y1 = f.box
    ex, ey, _ = f.keypoints["face.left_eye"]
    assert x0 - 5 <= ex <= x1 + 5 and y0 - 5 <= ey <= y1 + 5


@pytest.mark.parametrize(
    "name",
    [
        "renpy_sylvie_blue_normal__bg_c1",
        "multi03__godotvn_tachie_wonderful2-renpy_eileen_concerned-renpy_sylvie_blue_surprised__bg_cave",
        "empty__bg_park",
    ],
)
def test_character_boxes_on_dev_images(cfg, dcfg, name):
    shared_path("models", "lbpcascade_animeface.xml")
    dev = shared_path("datasets", "dev")
    from kiridashi.preprocess import preprocess_image, resize_to_work

    rgb = _load(dev / "images" / f"{name}.jpg")
    image = preprocess_image(rgb, cfg["preprocess"])
    original = resize_to_work(rgb, int(cfg["preprocess"]["max_side"]))
    res = detect_image(image, dcfg, MODELS, FakeMemo(), {"original": original})
    parts = sorted((dev / "alpha").glob(f"{name}_gt_[0-9]*.png"))
    masks = [kio.load_mask(p)[0] for p in parts] or [
        kio.load_mask(dev / "images" / f"{name}_gt.png")[0]
    ]
    s = rgb.shape[1] / image.shape[1]
    gts = [b for m in masks if (b := mask_box(m)) is not None]
    assert len(res.characters) == len(gts)
    for gt in gts:
        best = max(box_iou(tuple(v * s for v in c.box), gt) for c in res.characters)
        assert best >= 0.5
    assert all(c.face_box is not None for c in res.characters[:1])
    assert DetectResult.from_dict(res.to_dict()).to_dict() == res.to_dict()


def test_pose_keypoints_are_in_image_pixels(dcfg):
    det = build("mediapipe_pose", dcfg["detectors"]["mediapipe_pose"])
    image = np.full((400, 300, 3), 127, np.uint8)
    out = det.detect_in_box(image, (50, 50, 250, 390))
    for d in out:  # a flat image usually has no pose; when one is found it lies in the crop
        for x, y, v in d.keypoints.values():
            assert 0 <= x <= 300 and 0 <= y <= 400 and 0 <= v <= 1


def test_pose_rejects_other_model_complexities(dcfg):
    entry = dict(dcfg["detectors"]["mediapipe_pose"], model_complexity=2)
    with pytest.raises(ValueError, match="model_complexity"):
        build("mediapipe_pose", entry)


def test_yolo_missing_weights_names_config_key(dcfg, tmp_path):
    entry = dict(dcfg["detectors"]["yolo"], enabled=True, weights="nope.pt")
    with pytest.raises(FileNotFoundError, match=r"detect\.detectors\.yolo\.weights"):
        build("yolo", entry, models_dir=tmp_path)
    dcfg["detectors"]["yolo"] = entry
    with pytest.raises(FileNotFoundError, match=r"detect\.detectors\.yolo\.weights"):
        image = np.zeros((64, 64, 3), np.uint8)
        detect_image(image, dcfg, tmp_path, FakeMemo(), {"original": image})


def test_yolo_enabled_without_ultralytics_is_a_clear_error(dcfg, tmp_path):
    if importlib.util.find_spec("ultralytics") is not None:
        pytest.skip("ultralytics is installed")
    (tmp_path / "w.pt").write_bytes(b"x")
    entry = dict(dcfg["detectors"]["yolo"], enabled=True, weights="w.pt")
    with pytest.raises(RuntimeError, match=r"detect\.detectors\.yolo.*ultralytics"):
        build("yolo", entry, models_dir=tmp_path)


def test_yolo_random_init_runs_through_the_interface(dcfg, tmp_path):
    pytest.importorskip("ultralytics")
    entry = dict(dcfg["detectors"]["yolo"], enabled=True, weights="yolov8n.yaml", confidence=0.0)
    det = build("yolo", entry, models_dir=tmp_path)
    image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    out = det.detect(image)
    assert isinstance(out, list)
    for d in out:
        assert d.label == "person" and 0 <= d.box[0] <= d.box[2] <= 320


def test_bench_box_coverage_counts_mask_pixels_inside_boxes():
    from bench.detect_eval import GtCharacter

    mask = np.zeros((10, 20), bool)
    mask[:, :10] = True  # 100 px in the left half of the box (x 5..25, y 0..10)
    gt = GtCharacter((5, 0, 25, 10), mask)
    assert gt.coverage([(5, 0, 25, 10)]) == 1.0
    assert gt.coverage([(5, 5, 25, 10)]) == pytest.approx(0.5)  # the top half is cut off
    assert gt.coverage([(0, 0, 10, 10), (10, 0, 12, 10)]) == pytest.approx(0.7)  # union
    assert gt.coverage([]) == 0.0


class _CornerDetector:
    """Finds one "face" at x 10..20, y 5..15 of whatever image it is given."""

    name = "corner"

    def __init__(self):
        self.shapes: list[tuple[int, ...]] = []

    def detect(self, image):
        self.shapes.append(image.shape)
        return [Detection((10, 5, 20, 15), 0.9, "face", "corner", keypoints={"p": (15, 10, 1.0)})]


def test_detection_in_a_region_comes_back_in_full_image_pixels():
    det = _CornerDetector()
    image = np.zeros((200, 400, 3), np.uint8)
    (d,) = detect_at_scale(det, image, 0.5, 1.0, region=(100, 40, 300, 200))
    assert det.shapes == [(80, 100, 3)]  # the region, at the scale of the whole image
    assert d.box == pytest.approx((120, 50, 140, 70)) and d.keypoints["p"][:2] == (130, 60)


def test_foreground_region_is_the_grown_foreground_box():
    prob = np.zeros((100, 200), np.float32)
    prob[20:60, 50:80] = 0.35  # permissive map only
    fg = Foreground(np.zeros_like(prob), (200, 400), prob)
    assert foreground_region(fg, {"threshold": 0.3, "margin": 0.05}) == (80, 20, 180, 140)
    assert foreground_region(Foreground(np.zeros_like(prob), (200, 400)), {}) is None
    assert foreground_region(None, {}) is None


def legs(knee_y: float, ankle: tuple[float, float] | None = None, conf: float = 0.95) -> dict:
    """Pose keypoints of a figure with hips at y 300 and knees at ``knee_y`` (both sides);
    ``ankle``: (y, confidence) of both ankles."""
    kp = {}
    for side, x in (("left", 120.0), ("right", 80.0)):
        kp[f"pose.{side}_hip"] = (x, 300.0, conf)
        kp[f"pose.{side}_knee"] = (x, knee_y, conf)
        if ankle is not None:
            kp[f"pose.{side}_ankle"] = (x, ankle[0], ankle[1])
    return kp


def test_a_box_that_ends_at_the_knees_reaches_down_to_the_feet():
    # confident knees at the box's bottom and no ankle: shin and foot = 1.25 thighs below them
    ch = Character(box=(50.0, 100.0, 150.0, 405.0), score=0.9, keypoints=legs(400.0))
    assert pose_leg_room(ch, 1.25, 0.8, image_h=720) == pytest.approx(525.0)
    # a confident ankle: a quarter thigh of foot below it
    ch.keypoints = legs(400.0, ankle=(490.0, 0.9))
    assert pose_leg_room(ch, 1.25, 0.8, image_h=720) == pytest.approx(515.0)
    # never past the image; an unsure ankle counts as none
    ch.keypoints = legs(400.0, ankle=(490.0, 0.3))
    assert pose_leg_room(ch, 1.25, 0.8, image_h=480) == pytest.approx(480.0)


def test_a_box_with_room_for_the_legs_or_unsure_knees_is_left_alone():
    ch = Character(box=(50.0, 100.0, 150.0, 600.0), score=0.9, keypoints=legs(400.0))
    assert pose_leg_room(ch, 1.25, 0.8, image_h=720) is None
    ch = Character(box=(50.0, 100.0, 150.0, 405.0), score=0.9, keypoints=legs(400.0, conf=0.5))
    assert pose_leg_room(ch, 1.25, 0.8, image_h=720) is None
    ch.keypoints = {}
    assert pose_leg_room(ch, 1.25, 0.8, image_h=720) is None
