"""Plain data types passed between stages.

Coordinates are always pixels of the image the object was computed on, boxes are XYXY
(x0, y0, x1, y1) with x1/y1 exclusive, points are (x, y). Masks are HxW arrays.
Every type round-trips through ``to_dict``/``from_dict`` so it can be cached and written as JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

BoxXYXY = tuple[float, float, float, float]
Point = tuple[float, float]


@dataclass
class Detection:
    """One box from one detector at one scale.

    box: XYXY in pixels of the (preprocessed) full image, already mapped back from the scale.
    score: confidence in [0, 1].
    label: "face" or "person" (what the box outlines).
    keypoints: name -> (x, y, confidence) in full-image pixels (anime face points, pose joints).
    """

    box: BoxXYXY
    score: float
    label: str
    detector: str
    scale: float = 1.0
    keypoints: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Detection:
        return cls(
            box=tuple(d["box"]),
            score=float(d["score"]),
            label=d["label"],
            detector=d["detector"],
            scale=float(d.get("scale", 1.0)),
            keypoints={k: tuple(v) for k, v in d.get("keypoints", {}).items()},
        )


def confident(point, min_confidence: float) -> bool:
    """Whether a keypoint ``(x, y[, confidence])`` reaches ``min_confidence`` (a point without
    a confidence always does)."""
    return len(point) < 3 or point[2] >= min_confidence


@dataclass
class Character:
    """One character candidate after fusion.

    box: XYXY character (whole-body) box in preprocessed-image pixels.
    face_box: XYXY face box or None when the character was found without a face.
    score: fused confidence in [0, 1].
    detectors / scales: which detectors and scales support this character.
    keypoints: name -> (x, y, confidence): anime face points ("face.left_eye", ...) and pose
        joints ("pose.left_shoulder", ...), full-image pixels.
    """

    box: BoxXYXY
    score: float
    face_box: BoxXYXY | None = None
    detectors: list[str] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)
    keypoints: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Character:
        face = d.get("face_box")
        return cls(
            box=tuple(d["box"]),
            score=float(d["score"]),
            face_box=tuple(face) if face is not None else None,
            detectors=list(d.get("detectors", [])),
            scales=[float(s) for s in d.get("scales", [])],
            keypoints={k: tuple(v) for k, v in d.get("keypoints", {}).items()},
        )
