"""Names of the pose keypoints a character carries: ``pose.<landmark>`` of MediaPipe Pose
(``pose.nose``, ``pose.left_eye_inner``, ``pose.mouth_right``, ``pose.left_shoulder``, ...),
each ``[x, y, confidence]`` in image px."""

from __future__ import annotations

HEAD_PARTS = ("nose", "eye", "ear", "mouth")  # the pose's face points


def pose_part(name: str) -> str | None:
    """The body part of a pose keypoint name without its side and detail (``pose.left_eye_inner``
    -> ``eye``, ``pose.mouth_right`` -> ``mouth``, ``pose.nose`` -> ``nose``); None for a name
    that is not a pose keypoint (``face.left_eye``)."""
    if not name.startswith("pose."):
        return None
    words = name.removeprefix("pose.").split("_")
    return words[1] if words[0] in ("left", "right") and len(words) > 1 else words[0]


def is_head_point(name: str) -> bool:
    """Whether ``name`` is one of the pose's face points (:data:`HEAD_PARTS`)."""
    return pose_part(name) in HEAD_PARTS
