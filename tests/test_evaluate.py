"""The quality report: pairing, size mismatch, empty scenes, detection matching, overlays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kiridashi import io as kio
from kiridashi.evaluate import build_report, flat_metrics, per_image_csv
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
