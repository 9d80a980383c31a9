"""Objective metrics against hand-computed cases (small synthetic masks)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kiridashi import metrics as km


def _rows(h: int, w: int, top: int, bottom: int) -> np.ndarray:
    """HxW bool mask with full-width rows top..bottom-1 set (its boundary: rows top, bottom-1)."""
    m = np.zeros((h, w), bool)
    m[top:bottom] = True
    return m


def test_iou_dice_precision_recall_by_hand():
    gt = np.zeros((10, 10), bool)
    gt[0:4, 0:4] = True  # 16 px
    pred = np.zeros((10, 10), bool)
    pred[2:6, 0:4] = True  # 16 px, 8 px overlap
    s = km.score_masks(pred, gt)
    assert s.iou == pytest.approx(8 / 24)
    assert s.dice == pytest.approx(16 / 32)
    assert s.precision == pytest.approx(8 / 16) and s.recall == pytest.approx(8 / 16)
    assert km.iou(pred, gt) == pytest.approx(8 / 24) and km.dice(pred, gt) == pytest.approx(0.5)


def test_uint8_masks_threshold_at_128():
    gt = np.array([[0, 127, 128, 255]], np.uint8)
    assert km.iou(gt, np.array([[0, 0, 1, 1]], bool)) == 1.0


def test_boundary_f_by_hand_shifted_bands():
    # 40x40 image: tolerance max(2, 0.004 * 56.6) = 2 px. Image borders are not boundary, so a
    # full-width band has exactly two boundary rows of 40 px each.
    assert km.boundary_tolerance((40, 40)) == 2.0
    gt = _rows(40, 40, 10, 20)  # boundary rows 10 and 19
    assert km.boundary(gt).sum() == 80
    # top edge off by 2 (matched), bottom edge off by 5 (not): P = R = 0.5
    pred = _rows(40, 40, 12, 25)  # boundary rows 12 and 24
    f, p, r = km.boundary_scores(pred, gt)
    assert (f, p, r) == pytest.approx((0.5, 0.5, 0.5))
    s = km.score_masks(pred, gt)
    assert s.iou == pytest.approx(8 / 15) and s.dice == pytest.approx(16 / 23)
    assert s.boundary_f == pytest.approx(0.5)
    assert km.boundary_scores(_rows(40, 40, 12, 22), gt)[0] == 1.0  # both edges 2 px off
    assert km.boundary_scores(_rows(40, 40, 13, 23), gt)[0] == 0.0  # both edges 3 px off


def test_boundary_tolerance_grows_with_the_diagonal():
    assert km.boundary_tolerance((1000, 1000)) == pytest.approx(0.004 * math.hypot(1000, 1000))
    gt = _rows(1000, 1000, 300, 600)
    assert km.boundary_scores(_rows(1000, 1000, 305, 605), gt)[0] == 1.0  # 5 <= 5.66 px
    assert km.boundary_scores(_rows(1000, 1000, 306, 606), gt)[0] == 0.0


def test_boundary_distance_is_exact_euclidean():
    # one-pixel masks are their own boundary; a (3, 3) offset is 4.243 px away
    gt = np.zeros((20, 20), bool)
    gt[5, 5] = True
    pred = np.zeros((20, 20), bool)
    pred[8, 8] = True
    assert km.boundary_scores(pred, gt, tol=4.25)[0] == 1.0
    assert km.boundary_scores(pred, gt, tol=4.2)[0] == 0.0  # a chamfer estimate would say 4.11


def test_empty_masks():
    empty = np.zeros((8, 8), bool)
    full = np.zeros((8, 8), bool)
    full[2:6, 2:6] = True
    both = km.score_masks(empty, empty)
    assert both.to_dict() == {k: 1.0 for k in both.to_dict()}
    no_pred = km.score_masks(empty, full)  # a character missed entirely
    assert (no_pred.iou, no_pred.dice, no_pred.precision, no_pred.recall) == (0, 0, 0, 0)
    assert no_pred.boundary_f == 0.0
    no_gt = km.score_masks(full, empty)  # a cut-out in a background-only image
    assert (no_gt.iou, no_gt.dice, no_gt.precision, no_gt.boundary_f) == (0, 0, 0, 0)
    assert no_gt.recall == 1.0  # nothing to miss


def test_different_sizes_raise_a_clear_error():
    with pytest.raises(ValueError, match="differ in size"):
        km.score_masks(np.zeros((10, 20), bool), np.zeros((20, 10), bool))
    with pytest.raises(ValueError, match="HxW"):
        km.iou(np.zeros((4, 4, 3), bool), np.zeros((4, 4, 3), bool))


def test_boxes_and_matching():
    assert km.box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert km.box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    m = np.zeros((10, 10), bool)
    m[2:5, 3:9] = True
    assert km.mask_box(m) == (3, 2, 9, 5) and km.mask_box(np.zeros((3, 3), bool)) is None
    pred = [(0, 0, 10, 10), (20, 0, 30, 10), (50, 50, 60, 60)]
    gt = [(21, 0, 31, 10), (0, 0, 10, 10)]
    assert sorted(km.match_boxes(pred, gt)[i][:2] for i in range(2)) == [(0, 1), (1, 0)]
