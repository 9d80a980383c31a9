"""bench.character_eval: scoring of an output folder against per-character ground truth."""

from __future__ import annotations

import json

import cv2
import numpy as np

from bench import character_eval as ce


def _rec(source, boxes, status="ok"):
    return {
        "source": source,
        "gt": source.replace(".jpg", "_gt.png"),
        "status": status,
        "characters": [{"index": i, "box": list(b)} for i, b in enumerate(boxes)],
    }


RESULTS = {
    "images": [
        _rec("a.jpg", [(12, 8, 52, 92)]),  # single, found
        _rec("multi_b.jpg", [(100, 10, 140, 90), (300, 300, 320, 320)]),  # 1 of 2 + 1 extra
        _rec("c.jpg", []),  # single, nothing found
        _rec("empty__d.jpg", [(0, 0, 30, 30)]),  # background only, a crop
        _rec("e.jpg", [(10, 10, 50, 90)], status="skipped"),  # not processed: counts as none
        _rec("f.jpg", [(0, 0, 10, 10)]),  # no GT: not scored
        _rec("empty__g.jpg", []),  # background only, clean
    ]
}
GT = {
    "a.jpg": [(10, 10, 50, 90)],
    "multi_b.jpg": [(100, 10, 140, 90), (150, 10, 190, 90)],
    "c.jpg": [(10, 10, 50, 90)],
    "empty__d.jpg": [],
    "e.jpg": [(10, 10, 50, 90)],
    "empty__g.jpg": [],
}
REPORT = {
    "summary": {
        "single_images": 3,
        "single_mean_iou": 0.5,
        "single_mean_boundary_f": 0.4,
        "multi_images": 1,
        "multi_mean_iou": 0.45,
        "character_recall": 0.4,
        "character_precision": 0.5,
    },
    "images": [
        {"source": "a.jpg", "scored": True, "metrics": {"iou": 0.9}},
        {"source": "multi_b.jpg", "scored": True, "metrics": {"iou": 0.45}},
        {"source": "c.jpg", "scored": True, "metrics": {"iou": 0.0}},
        {"source": "empty__d.jpg", "scored": True, "metrics": {"iou": 0.0}},
        {"source": "e.jpg", "scored": False, "metrics": None},
        {"source": "empty__g.jpg", "scored": True, "metrics": {"iou": 1.0}},
    ],
}


def test_score_set_counts_and_lists():
    s = ce.score_set(RESULTS, GT, REPORT)
    assert (s["images"], s["single"], s["multi"], s["empty"]) == (6, 3, 1, 2)
    assert (s["gt_characters"], s["predicted_characters"], s["matched"]) == (5, 4, 2)
    assert s["recall"] == 0.4 and s["precision"] == 0.5
    # a (1 = 1), multi_b (2 crops = 2 characters, one of them wrong) and empty__g (0 = 0)
    assert s["crops_equal_characters_images"] == 3
    assert s["crops_equal_characters"] == 0.5
    assert s["images_with_missed_character"] == ["multi_b.jpg", "c.jpg", "e.jpg"]
    assert s["images_without_output"] == ["c.jpg", "e.jpg"]
    assert s["images_with_extra_character"] == ["multi_b.jpg"]
    assert s["empty_scenes_with_crop"] == ["empty__d.jpg"]
    assert s["not_processed"] == ["e.jpg"]
    assert s["single_recall"] == round(1 / 3, 4) and s["multi_recall"] == 0.5
    assert s["gt_count_differs_from_name"] == []
    # quality numbers come from the report as it computed them
    assert s["single_mean_iou"] == 0.5 and s["single_mean_boundary_f"] == 0.4
    assert s["multi_mean_iou"] == 0.45 and s["report_character_recall"] == 0.4
    # IoU < 0.80 among images with a character and a report entry, worst first
    assert s["low_iou_images"] == [
        {"image": "c.jpg", "iou": 0.0},
        {"image": "multi_b.jpg", "iou": 0.45},
    ]


def test_score_set_without_report_and_one_to_one():
    # two crops on one character: one match, one extra (one-to-one matching)
    results = {"images": [_rec("a.jpg", [(10, 10, 50, 90), (11, 11, 50, 90)])]}
    s = ce.score_set(results, {"a.jpg": [(10, 10, 50, 90)]})
    assert (s["recall"], s["precision"], s["crops_equal_characters"]) == (1.0, 0.5, 0.0)
    assert s["images_with_extra_character"] == ["a.jpg"]
    assert s["images_with_missed_character"] == []
    assert "single_mean_iou" not in s and s["low_iou_images"] == []
    # a crop box that overlaps its character below IoU 0.5 does not count
    results = {"images": [_rec("a.jpg", [(10, 10, 50, 40)])]}
    s = ce.score_set(results, {"a.jpg": [(10, 10, 50, 90)]})
    assert (s["matched"], s["images_with_missed_character"]) == (0, ["a.jpg"])


def _write(path, mask):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), (mask > 0).astype(np.uint8) * 255)


def test_load_gt_per_character_masks_and_components(tmp_path):
    images = tmp_path / "set" / "images"
    union = np.zeros((60, 80), np.uint8)
    union[10:50, 5:25] = 1
    union[10:50, 22:45] = 1  # touches the first: one component in the union
    _write(images / "multi_m_gt.png", union)
    left, right = union.copy(), union.copy()
    left[:, 22:] = 0
    right[:, :22] = 0
    _write(tmp_path / "set" / "alpha" / "multi_m_gt_0.png", left)
    _write(tmp_path / "set" / "alpha" / "multi_m_gt_1.png", right)
    single = np.zeros((60, 80), np.uint8)
    single[5:55, 30:60] = 1
    single[0:2, 0:2] = 1  # a speck below the component size share: not a character
    _write(images / "s_gt.png", single)
    _write(images / "empty__e_gt.png", np.zeros((60, 80), np.uint8))
    results = {
        "images": [
            _rec("multi_m.jpg", [(5, 10, 22, 50), (22, 10, 45, 50)]),
            _rec("s.jpg", [(30, 5, 60, 55), (0, 0, 40, 40)]),
            _rec("empty__e.jpg", []),
            {"source": "nogt.jpg", "status": "ok", "characters": []},
        ]
    }
    gt = ce.load_gt(results, images)
    assert gt == {
        "multi_m.jpg": [(5.0, 10.0, 22.0, 50.0), (22.0, 10.0, 45.0, 50.0)],
        "s.jpg": [(30.0, 5.0, 60.0, 55.0)],
        "empty__e.jpg": [],
    }
    s = ce.score_set(results, gt)
    assert (s["recall"], s["precision"]) == (1.0, round(3 / 4, 4))
    assert s["crops_equal_characters_images"] == 2
    assert s["images_with_extra_character"] == ["s.jpg"]


def test_score_output_and_tables(tmp_path):
    images = tmp_path / "images"
    gt = np.zeros((100, 200), np.uint8)
    gt[10:90, 10:50] = 1
    _write(images / "a_gt.png", gt)
    out = tmp_path / "out"
    out.mkdir()
    results = {
        "input_dir": str(images),
        "summary": {"images": 1, "processed": 1, "seconds": 2.0},
        "images": [_rec("a.jpg", [(10, 10, 50, 90)])],
    }
    (out / "extraction_results.json").write_text(json.dumps(results))
    (out / "unified_quality_report.json").write_text(json.dumps(REPORT))
    s = ce.score_output(out)
    assert (s["recall"], s["precision"], s["single_mean_iou"]) == (1.0, 1.0, 0.5)
    assert s["pipeline_seconds"] == 2.0 and s["skipped_files"] == []
    s["seconds_per_image"] = 2.0
    md = ce.table({"dev": s})
    assert md.splitlines()[2].startswith("| dev | 1.000 (1/1) | 1.000 (1/1) | 1.000 (1/1) | 0/1")
    assert "dev: 1 images" in ce.lists({"dev": s})
