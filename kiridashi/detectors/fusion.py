"""Weighted boxes fusion across detectors and scales (``ensemble_boxes``), with supporters.

Input: detections of one label from several (detector, scale) runs, XYXY pixels of an HxW
image. Output: fused detections whose ``detector`` is "+"-joined supporters and whose keypoints
come from the most confident supporter that has them.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from ensemble_boxes import weighted_boxes_fusion

from kiridashi.metrics import box_iou
from kiridashi.types import Detection


def fuse(
    runs: dict[tuple[str, float], list[Detection]],
    image_hw: tuple[int, int],
    weights: dict[str, float],
    iou_thr: float = 0.5,
    skip_box_thr: float = 0.0,
    conf_type: str = "avg",
) -> list[tuple[Detection, list[Detection]]]:
    """Fused boxes per label, each with the input detections that support it."""
    h, w = image_hw
    scale = np.array([w, h, w, h], np.float32)
    by_label: dict[str, list[tuple[tuple[str, float], list[Detection]]]] = defaultdict(list)
    for run_key, dets in runs.items():
        for label in {d.label for d in dets}:
            by_label[label].append((run_key, [d for d in dets if d.label == label]))
    fused: list[tuple[Detection, list[Detection]]] = []
    for label, label_runs in by_label.items():
        boxes, scores, labels, wts = [], [], [], []
        for (detector, _scale), dets in label_runs:
            arr = np.array([d.box for d in dets], np.float32) / scale
            boxes.append(np.clip(arr, 0.0, 1.0).tolist())
            scores.append([d.score for d in dets])
            labels.append([0] * len(dets))
            wts.append(float(weights.get(detector, 1.0)))
        out_boxes, out_scores, _ = weighted_boxes_fusion(
            boxes, scores, labels, weights=wts, iou_thr=iou_thr,
            skip_box_thr=skip_box_thr, conf_type=conf_type,
        )  # fmt: skip
        members = [d for _, dets in label_runs for d in dets]
        for box, score in zip(out_boxes, out_scores, strict=True):
            px = tuple(float(v) for v in (np.asarray(box) * scale))
            support = [d for d in members if box_iou(d.box, px) >= iou_thr]
            with_points = sorted((d for d in support if d.keypoints), key=lambda d: -d.score)
            fused.append(
                (
                    Detection(
                        box=px,
                        score=float(score),
                        label=label,
                        detector="+".join(sorted({d.detector for d in support})),
                        scale=1.0,
                        keypoints=dict(with_points[0].keypoints) if with_points else {},
                    ),
                    support,
                )
            )
    return fused
