"""Near-duplicates: crops grouped by perceptual hash (the ``imagehash`` library).

Game CGs come in near copies (one pose, another expression or mouth); a training set wants one
of each. A crop is hashed as it looks inside the detector's character box (:func:`in_frame`: a cut that
takes in a piece of background in one variant only does not split the group), composited on
mid-gray and centred on a square (so the hash sees the character, not the hidden colour of
transparent pixels, nor the aspect ratio of its box). Groups are formed best crop first: each crop joins the nearest group whose best crop is
within ``dedup_distance`` bits of it, else starts a group, so every group is led by its
best-scored crop and nothing chains across groups.

On the RenJS sprites of ../shared, expression variants of one pose differ by 0-2 bits of the
64-bit ``phash`` and different characters or outfits by 14 or more; the default distance is 8.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from kiridashi.export.canvas import render

HASH_SIDE = 256  # the square the crop is centred on before hashing
GRAY = (128, 128, 128)


def hash_function(method: str) -> Callable:
    import imagehash

    return {
        "phash": imagehash.phash,
        "dhash": imagehash.dhash,
        "average_hash": imagehash.average_hash,
        "whash": imagehash.whash,
    }[method]


def in_frame(rgba: np.ndarray, box: Sequence[float], frame: Sequence[float] | None) -> np.ndarray:
    """The part of an HxWx4 crop (placed at ``box``, XYXY source px) inside ``frame`` (the
    detector's character box, XYXY): a cut that strays beyond the figure - a plank of the
    background taken in one expression variant and not the next - does not change the hash.
    The whole crop when there is no frame or nothing of the crop is inside it."""
    if frame is None:
        return rgba
    h, w = rgba.shape[:2]
    x0 = max(0, int(np.floor(frame[0] - box[0])))
    y0 = max(0, int(np.floor(frame[1] - box[1])))
    x1 = min(w, int(np.ceil(frame[2] - box[0])))
    y1 = min(h, int(np.ceil(frame[3] - box[1])))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return rgba
    return rgba[y0:y1, x0:x1]


def perceptual_hash(rgba: np.ndarray, method: str = "phash") -> str:
    """Hex string of the ``method`` hash of an HxWx4 uint8 RGBA crop (see module docstring)."""
    from PIL import Image

    flat = render(rgba, HASH_SIDE, "square", max_upscale=float("inf"), background=GRAY)
    return str(hash_function(method)(Image.fromarray(flat)))


def bits(hex_hash: str) -> np.ndarray:
    """The bits of a hex hash as a bool vector (``imagehash.hex_to_hash``)."""
    import imagehash

    return imagehash.hex_to_hash(hex_hash).hash.flatten()


@dataclass
class Group:
    """A near-duplicate group: ``best`` (an index into the hashed list) and its members with
    their distance in bits to the best one (the best one included, at 0)."""

    best: int
    members: list[tuple[int, int]] = field(default_factory=list)


def group(hashes: Sequence[str], order: Sequence[int], max_distance: int) -> list[Group]:
    """Groups of ``hashes`` (hex strings of one length), led by crops in ``order`` (best first).

    Every index of ``order`` lands in exactly one group; groups are in the order they started.
    """
    groups: list[Group] = []
    leaders: list[np.ndarray] = []
    for i in order:
        b = bits(hashes[i])
        if leaders:
            d = (np.stack(leaders) != b).sum(axis=1)
            j = int(np.argmin(d))
            if d[j] <= max_distance:
                groups[j].members.append((i, int(d[j])))
                continue
        groups.append(Group(best=i, members=[(i, 0)]))
        leaders.append(b)
    return groups
