"""The quality report: pairing, size mismatch, empty scenes, detection matching, overlays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kiridashi import io as kio
from kiridashi.evaluate import build_report, flat_metrics, per_image_csv
from kiridashi.history import METRICS_JSON
from kiridashi.overlay import draw_overlay, keypoints_outside


def _results(tmp_path: Path, images: list[dict]) -> Path:
    out = tmp_path / "out"
    doc = {"schema_version": 1, "input_dir": str(tmp_path / "in"), "images": images,
           "skipped": [], "unmatched_gt": [], "summary": {"images": len(images)}}  # fmt: skip
    kio.atomic_write_json(out / "extraction_results.json", doc)
    return out / "extraction_results.json"


def _mask(h, w, box=None) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    if box:
        x0, y0, x1, y1 = box
        m[y0:y1, x0:x1] = 255
    return m


def test_report_scores_pairs_and_explains_unscored(tmp_path):
    inp = tmp_path / "in"
    kio.atomic_write_png(inp / "a_gt.png", _mask(40, 60, (10, 5, 30, 35)))
    kio.atomic_write_png(inp / "b_gt.png", _mask(20, 30, (1, 1, 5, 5)))  # half size
    kio.atomic_write_png(inp / "e_gt.png", _mask(40, 60))  # empty scene
    out = tmp_path / "out"
    kio.atomic_write_png(out / "masks/a.png", _mask(40, 60, (10, 5, 30, 30)))
    kio.atomic_write_png(out / "masks/b.png", _mask(40, 60, (1, 1, 5, 5)))
    kio.atomic_write_png(out / "masks/e.png", _mask(40, 60))
    kio.atomic_write_png(out / "masks/c.png", _mask(40, 60))
    ch = {"index": 0, "box": [10, 5, 30, 30], "face_box": [12, 6, 20, 12], "keypoints": {}}
    images = [
        {"source": "a.jpg", "status": "ok", "gt": "a_gt.png", "mask": "masks/a.png",
         "characters": [ch]},
        {"source": "b.jpg", "status": "ok", "gt": "b_gt.png", "mask": "masks/b.png",
         "characters": []},
        {"source": "e.jpg", "status": "ok", "gt": "e_gt.png", "mask": "masks/e.png",
         "characters": []},
        {"source": "c.jpg", "status": "ok", "gt": None, "mask": "masks/c.png", "characters": []},
        {"source": "d.jpg", "status": "skipped", "reason": "zero-byte file"},
    ]  # fmt: skip
    report = build_report(_results(tmp_path, images))
    by = {e["source"]: e for e in report["images"]}
    assert by["a.jpg"]["scored"] and abs(by["a.jpg"]["metrics"]["iou"] - 500 / 600) < 1e-4
    assert by["a.jpg"]["characters_matched"] == 1 and by["a.jpg"]["face_found"]
    assert not by["b.jpg"]["scored"] and "differs" in by["b.jpg"]["gt_note"]
    assert by["c.jpg"]["gt_note"] == "no GT - not scored"
    assert by["e.jpg"]["scored"] and not by["e.jpg"]["has_character"]
    s = report["summary"]
    assert s["scored"] == 2 and s["empty_scenes"] == 1 and s["empty_scenes_clean"] == 1
    assert abs(s["mean_iou"] - 500 / 600) < 1e-4  # the empty scene does not dilute the mean
    assert s["character_recall"] == 1.0 and s["face_detection_rate"] == 1.0
    json.dumps(flat_metrics(report))
    # metrics.json holds the headline numbers only; the rest stays in the report's summary
    flat = flat_metrics(report)
    assert list(flat) == list(METRICS_JSON) and len(flat) <= 10
    assert flat["iou"] == s["mean_iou"] and flat["recall"] == s["character_recall"]
    assert "empty_scenes" not in flat and "empty_scenes" in s
    assert per_image_csv(report).splitlines()[0].startswith("source,iou,dice")


def test_overlay_marks_keypoints_outside_the_mask():
    mask = np.zeros((50, 50), bool)
    mask[10:40, 10:40] = True
    ch = {"box": [10, 10, 40, 40], "face_box": None, "keypoints": {
        "pose.nose": [20, 20, 0.9], "pose.left_wrist": [45, 45, 0.9],
        "pose.right_wrist": [48, 2, 0.1]}}  # fmt: skip
    assert keypoints_outside(ch, mask) == ["pose.left_wrist"]  # low-confidence point ignored
    img = draw_overlay(np.zeros((50, 50, 3), np.uint8), [ch], mask)
    assert img.shape == (50, 50, 3) and img[45, 45].tolist() == [255, 0, 0]


# ----------------------------------------------------------------------------- no-reference checks


def _scene(h=200, w=200):
    """A flat grey background with a dark-outlined orange 'character' (HxWx3 RGB, HxW bool)."""
    import cv2

    rgb = np.full((h, w, 3), (90, 140, 200), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (100, 110), (45, 70), 0, 0, 360, 1, -1)
    rgb[mask > 0] = (240, 170, 90)
    outline = mask - cv2.erode(mask, np.ones((5, 5), np.uint8))
    rgb[outline > 0] = (30, 20, 20)
    return rgb, mask > 0


def _checks(rgb, mask, **kw):
    from kiridashi.checks import check_character

    character = {"keypoints": kw.pop("kp", {}), "face_box": kw.pop("face_box", None)}
    return {f["check"]: f for f in check_character(rgb, mask, character, 0, kw)}


def test_headless_crop_is_flagged():
    rgb, mask = _scene()
    face = [80, 45, 120, 85]  # inside the ellipse's top (y 40..180)
    assert "face_outside" not in _checks(rgb, mask, face_box=face)
    headless = mask.copy()
    headless[:75] = False  # the top of the figure, face included, left out
    flag = _checks(rgb, headless, face_box=face)["face_outside"]
    assert flag["score"] > 0.5 and "headless" in flag["reason"]


def test_pose_keypoint_names_give_their_body_part():
    from kiridashi.keypoints import is_head_point, pose_part

    assert pose_part("pose.left_eye_inner") == "eye" and pose_part("pose.mouth_right") == "mouth"
    assert pose_part("pose.nose") == "nose" and pose_part("pose.right_ear") == "ear"
    assert pose_part("pose.left_foot_index") == "foot" and pose_part("face.left_eye") is None
    assert is_head_point("pose.right_eye_outer") and not is_head_point("pose.left_shoulder")
    assert not is_head_point("face.nose")  # the face detectors' points are not the pose's


def test_a_faceless_character_is_flagged_headless_by_its_pose_head_points():
    rgb, mask = _scene()
    head = {  # pose face points inside the ellipse's top (y 40..180), no face box
        "pose.nose": [100, 65, 0.99], "pose.left_eye": [108, 58, 0.99],
        "pose.right_eye": [92, 58, 0.99], "pose.left_ear": [115, 62, 0.95],
        "pose.mouth_left": [104, 74, 0.99], "pose.mouth_right": [96, 74, 0.99],
    }  # fmt: skip
    assert "face_outside" not in _checks(rgb, mask, kp=head)
    headless = mask.copy()
    headless[:90] = False  # the top of the figure, face included, left out
    flag = _checks(rgb, headless, kp=head)["face_outside"]
    assert flag["score"] == 1.0 and "pose head points" in flag["reason"]
    unsure = {k: [x, y, 0.5] for k, (x, y, _) in head.items()}
    assert "face_outside" not in _checks(rgb, headless, kp=unsure)  # not confident enough
    two = dict(list(head.items())[:2])
    assert "face_outside" not in _checks(rgb, headless, kp=two)  # too few points to say


def test_a_three_quarter_face_cut_exactly_is_not_flagged_headless():
    from kiridashi.checks import face_outside_share
    from tests.test_heads import three_quarter_face

    img, face_box, face = three_quarter_face()
    hair = (img == (70, 45, 30)).all(2)
    exact = face | hair  # the head exactly: the square box's ellipse also covers sky
    assert face_outside_share(list(face_box), exact) > 0.2  # the whole ellipse would flag it
    assert "face_outside" not in _checks(img, exact, face_box=list(face_box))
    assert "face_outside" in _checks(img, hair, face_box=list(face_box))  # the face left out


def test_clean_cutout_raises_no_flag():
    rgb, mask = _scene()
    assert _checks(rgb, mask) == {}


def test_each_check_flags_its_defect_with_score_and_reason():
    import cv2

    rgb, mask = _scene()
    pieces = mask.copy()
    for x in range(75, 136, 20):  # cut the ellipse (x 55..145) into 5 vertical strips
        pieces[:, x : x + 2] = False
    assert _checks(rgb, pieces)["pieces"]["score"] == 5
    holes = mask.copy()
    holes[90:120, 85:115] = False  # 900 px of ~9900
    assert 0.05 < _checks(rgb, holes)["holes"]["score"] < 0.15
    rng = np.random.default_rng(0)
    noisy = mask ^ ((rng.random(mask.shape) < 0.5) & (cv2.dilate(mask.astype(np.uint8),
              np.ones((7, 7), np.uint8)) > 0) & ~(cv2.erode(mask.astype(np.uint8),
              np.ones((7, 7), np.uint8)) > 0))  # fmt: skip
    assert "jagged" in _checks(rgb, noisy)
    halo = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0  # 4 px into the bg
    flag = _checks(rgb, halo)["halo"]
    assert flag["score"] > 0.35 and "background" in flag["reason"]
    cut = mask.copy()
    cut[130:] = False  # the body continues below a straight cut
    assert "row" in _checks(rgb, cut)["cut_off"]["reason"]
    tiny = np.zeros_like(mask)
    tiny[10:20, 10:20] = True
    found = _checks(rgb, tiny)
    assert {"tiny", "small_crop"} <= set(found) and found["small_crop"]["score"] == 10
    assert "giant" in _checks(rgb, np.ones_like(mask))
    kp = {"pose.nose": [100, 60, 0.9], "pose.left_wrist": [5, 5, 0.9], "pose.x": [6, 6, 0.1]}
    flag = _checks(rgb, mask, kp=kp)["keypoints_outside"]
    assert (
        flag["score"] == 0.5 and "left_wrist" in flag["reason"] and "pose.x" not in flag["reason"]
    )


def test_report_has_flags_pose_rates_and_outside_points(tmp_path):
    rgb, mask = _scene()
    inp, out = tmp_path / "in", tmp_path / "out"
    kio.atomic_write_png(inp / "a.png", rgb)
    kio.atomic_write_png(inp / "a_gt.png", (mask * 255).astype(np.uint8))
    cut = mask.copy()
    cut[130:] = False
    kio.atomic_write_png(out / "masks/a.png", (cut * 255).astype(np.uint8))
    box = [40, 30, 160, 190]  # XYXY crop box
    crop = np.dstack([rgb, (cut * 255).astype(np.uint8)])[30:190, 40:160]
    kio.atomic_write_png(out / "crops/a_c0.png", crop)
    pose = {f"pose.p{i}": [100, 50 + 10 * i, 0.9] for i in range(8)}  # y = 50..120: inside
    pose["pose.left_ankle"] = [100, 175, 0.9]  # below the cut: outside
    pose["pose.faint"] = [5, 5, 0.1]
    ch = {"index": 0, "box": box, "face_box": None, "keypoints": pose, "crop": "crops/a_c0.png"}
    images = [{"source": "a.png", "status": "ok", "gt": "a_gt.png", "mask": "masks/a.png",
               "characters": [ch]}]  # fmt: skip
    report = build_report(_results(tmp_path, images))
    entry, s = report["images"][0], report["summary"]
    assert [f["check"] for f in entry["flags"]] == ["cut_off"]
    assert entry["keypoints_outside"] == {"0": ["pose.left_ankle"]}
    assert entry["pose"] == {"characters": 1, "with_pose": 1, "points": 9, "points_inside": 8}
    assert s["pose_detection_rate"] == 1.0 and s["pose_landmarks_inside"] == round(8 / 9, 5)
    assert s["flagged_images"] == 1 and s["flags_cut_off"] == 1 and s["flags_halo"] == 0
    assert s["mean_iou_flagged"] == entry["metrics"]["iou"] and s["mean_iou_unflagged"] is None
    assert flat_metrics(report)["pose_rate"] == s["pose_detection_rate"]


def test_relative_input_dir_resolves_from_the_results_repository(tmp_path, monkeypatch):
    from kiridashi.evaluate import resolve_input_dir

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "data/input").mkdir(parents=True)
    results = tmp_path / "data/output/extraction_results.json"
    monkeypatch.chdir("/")
    assert resolve_input_dir("data/input", results) == tmp_path / "data/input"
    assert resolve_input_dir("/abs/where", results) == Path("/abs/where")


def test_character_matching_uses_the_detector_box_not_the_padded_crop(tmp_path):
    """Character recall must not depend on merge.crop_padding (a cosmetic setting)."""
    inp, out = tmp_path / "in", tmp_path / "out"
    kio.atomic_write_png(inp / "a_gt.png", _mask(100, 100, (40, 20, 60, 90)))
    kio.atomic_write_png(out / "masks/a.png", _mask(100, 100, (40, 20, 60, 90)))
    character = {"index": 0, "box": [0, 0, 100, 100], "character_box": [39, 18, 61, 91],
                 "face_box": None, "keypoints": {}}  # fmt: skip
    record = {"source": "a.jpg", "status": "ok", "gt": "a_gt.png", "mask": "masks/a.png",
              "characters": [character]}  # fmt: skip
    report = build_report(_results(tmp_path, [record]))
    assert report["summary"]["character_recall"] == 1.0
    assert report["summary"]["character_precision"] == 1.0


def test_summary_splits_one_character_and_several_character_images(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    one = _mask(40, 60, (10, 5, 30, 35))
    two = _mask(40, 60, (2, 5, 20, 35)) | _mask(40, 60, (35, 5, 55, 35))
    kio.atomic_write_png(inp / "one_gt.png", one)
    kio.atomic_write_png(inp / "two_gt.png", two)
    kio.atomic_write_png(out / "masks/one.png", one)  # perfect
    kio.atomic_write_png(out / "masks/two.png", _mask(40, 60, (2, 5, 20, 35)))  # one of two
    images = [
        {"source": s, "status": "ok", "gt": f"{Path(s).stem}_gt.png",
         "mask": f"masks/{Path(s).stem}.png", "characters": []}
        for s in ("one.jpg", "two.jpg")
    ]  # fmt: skip
    s = build_report(_results(tmp_path, images))["summary"]
    assert s["single_images"] == 1 and s["multi_images"] == 1
    assert s["single_mean_iou"] == 1.0 and s["single_mean_boundary_f"] == 1.0
    assert abs(s["multi_mean_iou"] - 540 / 1140) < 1e-4  # 18x30 of 18x30 + 20x30


def test_report_entries_are_cached_by_what_they_read(tmp_path):
    from kiridashi.cache import ResultCache

    inp, out = tmp_path / "in", tmp_path / "out"
    images = []
    for name in ("a", "b", "c"):
        kio.atomic_write_png(inp / f"{name}.png", np.zeros((40, 60, 3), np.uint8))
        kio.atomic_write_png(inp / f"{name}_gt.png", _mask(40, 60, (10, 5, 30, 35)))
        kio.atomic_write_png(out / f"masks/{name}.png", _mask(40, 60, (10, 5, 30, 30)))
        images.append({"source": f"{name}.png", "status": "ok", "gt": f"{name}_gt.png",
                       "mask": f"masks/{name}.png", "characters": []})  # fmt: skip
    results = _results(tmp_path, images)
    cache = ResultCache(tmp_path / "cache")
    first = build_report(results, {}, cache)
    assert first["entries"] == {"computed": 3, "reused": 0}
    again = build_report(results, {"history": False}, cache)  # a setting entries do not read
    assert again["entries"] == {"computed": 0, "reused": 3}
    assert again["images"] == first["images"]
    kio.atomic_write_png(out / "masks/b.png", _mask(40, 60, (10, 5, 30, 35)))  # b's mask changed
    changed = build_report(results, {}, cache)
    assert changed["entries"] == {"computed": 1, "reused": 2}
    by = {e["source"]: e for e in changed["images"]}
    assert by["b.png"]["metrics"]["iou"] == 1.0 and by["a.png"]["metrics"]["iou"] < 1.0
    checks = build_report(results, {"checks": {"max_pieces": 1}}, cache)  # a setting they read
    assert checks["entries"] == {"computed": 3, "reused": 0}
