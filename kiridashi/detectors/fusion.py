"""Weighted boxes fusion across detectors and scales (``ensemble_boxes``), with supporters.

Input: ``runs`` maps (detector name, scale[, view]) -> detections (XYXY pixels of an HxW image).
Boxes of each label are fused separately with :func:`ensemble_boxes.weighted_boxes_fusion` on
coordinates normalised to [0, 1] (one "model" per run, weight = the detector's weight). Each input
detection is then assigned to the fused box it overlaps most (IoU >= ``iou_thr``), which gives the
supporters of every fused box.

Fused score: a noisy-OR over the supporting detectors, ``1 - prod_d(1 - w_d * s_d)`` with ``s_d``
the detector's best score among its supporting boxes (any scale) and ``w_d`` its weight clipped
to [0, 1]; agreement between detectors raises it, scales of one detector do not multiply it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from ensemble_boxes import weighted_boxes_fusion

from kiridashi.metrics import box_iou
from kiridashi.types import Detection


@dataclass
class Fused:
    """A fused box and the raw detections (one per detector run at most) that support it."""

    detection: Detection
    support: list[Detection] = field(default_factory=list)

    @property
    def detectors(self) -> list[str]:
        return sorted({d.detector for d in self.support})

    @property
    def scales(self) -> list[float]:
        return sorted({float(d.scale) for d in self.support})


def noisy_or(support: list[Detection], weights: dict[str, float]) -> float:
    best: dict[str, float] = {}
    for d in support:
        best[d.detector] = max(best.get(d.detector, 0.0), float(d.score))
    miss = 1.0
    for name, s in best.items():
        w = min(1.0, max(0.0, float(weights.get(name, 1.0))))
        miss *= 1.0 - w * min(1.0, max(0.0, s))
    return 1.0 - miss


def fuse(
    runs: dict[tuple, list[Detection]],
    image_hw: tuple[int, int],
    weights: dict[str, float],
    iou_thr: float = 0.5,
    skip_box_thr: float = 0.0,
    conf_type: str = "avg",
) -> list[Fused]:
    """Fused boxes of every label, best score first; see the module docstring."""
    h, w = image_hw
    norm = np.array([w, h, w, h], np.float64)
    by_label: dict[str, list[tuple[str, list[Detection]]]] = defaultdict(list)
    for (detector, *_), dets in sorted(runs.items()):
        for label in sorted({d.label for d in dets}):
            by_label[label].append((detector, [d for d in dets if d.label == label]))
    fused: list[Fused] = []
    for label, label_runs in sorted(by_label.items()):
        boxes, scores, labels, wts = [], [], [], []
        for detector, dets in label_runs:
            arr = np.clip(np.array([d.box for d in dets], np.float64) / norm, 0.0, 1.0)
            boxes.append(arr.tolist())
            scores.append([float(d.score) for d in dets])
            labels.append([0] * len(dets))
            wts.append(max(1e-6, float(weights.get(detector, 1.0))))
        out_boxes, _out_scores, _ = weighted_boxes_fusion(
            boxes, scores, labels, weights=wts, iou_thr=iou_thr,
            skip_box_thr=skip_box_thr, conf_type=conf_type,
        )  # fmt: skip
        px_boxes = [tuple(float(v) for v in np.asarray(b) * norm) for b in out_boxes]
        members: list[list[Detection]] = [[] for _ in px_boxes]
        for _, dets in label_runs:
            for d in dets:
                ious = [box_iou(d.box, b) for b in px_boxes]
                if ious and max(ious) >= iou_thr:
                    members[int(np.argmax(ious))].append(d)
        for box, support in zip(px_boxes, members, strict=True):
            if not support:
                continue
            with_points = sorted((d for d in support if d.keypoints), key=lambda d: -d.score)
            det = Detection(
                box=box,
                score=round(noisy_or(support, weights), 6),
                label=label,
                detector="+".join(sorted({d.detector for d in support})),
                scale=1.0,
                keypoints=dict(with_points[0].keypoints) if with_points else {},
            )
            fused.append(Fused(det, support))
    return sorted(fused, key=lambda f: -f.detection.score)
