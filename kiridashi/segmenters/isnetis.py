"""isnetis backend: SkyTNT anime-segmentation (ISNet) ONNX export run with onnxruntime.

The model sees the whole image (RGB scaled to [0, 1], no mean/std), resized so that its long side
is the input side S (1024 for ``isnetis.onnx``) and zero-padded, centred, to SxS; it returns one
1x1xSxS sigmoid map of "any character" foreground. That raw map (cropped to the image's own
aspect, float16) is cached through the segment memo under the model fingerprint, so changing
detections only re-runs the split.

The union map is split between characters: a pixel goes to the character whose box (grown by
``box_margin``) contains it, several containing boxes -> the nearest face (box top-centre when
there is no face), in face widths; pixels outside every grown box belong to nobody.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kiridashi.models import ModelError, file_fingerprint, require, resolve_model_path
from kiridashi.types import BoxXYXY, Character

log = logging.getLogger(__name__)

OUTSIDE_BOX_COST = 1e6  # added to the distance of a pixel outside a character's grown box


def letterbox(image: np.ndarray, side: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """(1x3xSxS float32 RGB in [0, 1], (top, left, h, w) of the image inside the square).

    As in SkyTNT's reference ``get_mask``: the long side becomes ``side``, the padding is centred.
    """
    h0, w0 = image.shape[:2]
    h, w = (side, int(side * w0 / h0)) if h0 > w0 else (int(side * h0 / w0), side)
    h, w = max(1, h), max(1, w)
    top, left = (side - h) // 2, (side - w) // 2
    square = np.zeros((side, side, 3), np.float32)
    square[top : top + h, left : left + w] = cv2.resize(image, (w, h))  # bilinear, as upstream
    return (square / 255.0).transpose(2, 0, 1)[None], (top, left, h, w)


def grown(box: BoxXYXY, margin: float) -> BoxXYXY:
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    return x0 - mx, y0 - my, x1 + mx, y1 + my


def split_by_boxes(union: np.ndarray, characters: list[Character], box_margin: float) -> list:
    """Split a union soft mask (HxW float32) into one HxW float32 mask per character.

    Each pixel goes to the character whose box (XYXY, grown by ``box_margin`` of its size)
    contains it; among several, to the nearest anchor (face-box centre, else box top-centre at a
    quarter box width), distances in face widths. Pixels outside every grown box are dropped.
    """
    h, w = union.shape
    xs = np.arange(w, dtype=np.float32)[None, :] + 0.5
    ys = np.arange(h, dtype=np.float32)[:, None] + 0.5
    costs = []
    for ch in characters:
        x0, y0, x1, y1 = grown(ch.box, box_margin)
        outside = (xs < x0) | (xs >= x1) | (ys < y0) | (ys >= y1)
        if ch.face_box is not None:
            fx0, fy0, fx1, fy1 = ch.face_box
            ax, ay, unit = (fx0 + fx1) / 2, (fy0 + fy1) / 2, max(1.0, fx1 - fx0)
        else:
            bx0, by0, bx1, _ = ch.box
            ax, ay, unit = (bx0 + bx1) / 2, by0, max(1.0, (bx1 - bx0) / 4)
        distance = np.hypot(xs - ax, ys - ay) / unit
        costs.append(distance + OUTSIDE_BOX_COST * outside)
    stacked = np.stack(np.broadcast_arrays(*costs))
    owner = np.argmin(stacked, axis=0)
    claimed = stacked.min(axis=0) < OUTSIDE_BOX_COST
    return [(union * ((owner == k) & claimed)).astype(np.float32) for k in range(len(characters))]


class IsnetisSegmenter:
    """``segment=isnetis``: the isnetis.onnx union mask split between the detected characters.

    model: file name inside ``models_dir`` or an absolute path (config key ``segment.model``).
    input_size: square input side when the model's input shape is dynamic (static shapes win).
    device: ``auto`` (CUDA provider when onnxruntime has it), ``cpu`` or ``cuda``.
    box_margin: share of a box's size it is grown by before claiming pixels.
    """

    # cached image-level values depend only on this module (and the model file)
    MEMO_MODULES = ("kiridashi.segmenters.isnetis",)

    CONTEXT = ("models_dir",)

    def __init__(
        self,
        model: str = "isnetis.onnx",
        input_size: int = 1024,
        device: str = "auto",
        box_margin: float = 0.1,
        models_dir: Path = Path("models"),
    ):
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"segment.device must be auto, cpu or cuda, not {device!r}")
        self.model_path = resolve_model_path(model, models_dir)
        self.input_size = int(input_size)
        self.device = device
        self.box_margin = float(box_margin)
        self.runs = 0  # how many times the network ran (the rest came from the memo)
        self._session = None

    def _require_model(self) -> Path:
        return require(self.model_path, "segment.model", "isnetis")

    def session(self):
        """The onnxruntime session (created on first use, once per process)."""
        if self._session is None:
            import onnxruntime as ort

            available = ort.get_available_providers()
            cuda = "CUDAExecutionProvider" in available
            if self.device == "cuda" and not cuda:
                raise ModelError("segment.device is cuda but onnxruntime has no CUDA provider")
            use_cuda = cuda and self.device in ("auto", "cuda")
            providers = ["CUDAExecutionProvider"] * use_cuda + ["CPUExecutionProvider"]
            self._session = ort.InferenceSession(str(self._require_model()), providers=providers)
        return self._session

    def side(self) -> int:
        """The model's square input side: its static input shape, else ``input_size``."""
        shape = self.session().get_inputs()[0].shape
        return shape[-1] if isinstance(shape[-1], int) and shape[-1] > 0 else self.input_size

    def predict(self, image: np.ndarray) -> np.ndarray:
        """The raw foreground map (float16, image aspect at model resolution) of an RGB image."""
        session = self.session()
        tensor, (top, left, h, w) = letterbox(image, self.side())
        name = session.get_inputs()[0].name  # "img" in SkyTNT's export
        output = session.run(None, {name: tensor})[0]  # 1x1xSxS
        self.runs += 1
        return output[0, 0, top : top + h, left : left + w].astype(np.float16)

    def union(self, image: np.ndarray, memo: Any) -> np.ndarray:
        """Foreground of all characters together (HxW float32 in [0, 1]) of an HxWx3 RGB image."""
        params = {"model": file_fingerprint(self._require_model()), "input_size": self.input_size}

        def compute() -> np.ndarray:
            return self.predict(image)

        raw = memo("isnetis_map", params, compute) if memo else compute()
        h, w = image.shape[:2]
        resized = cv2.resize(raw.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        return np.clip(resized, 0.0, 1.0)

    def segment(
        self, image: np.ndarray, characters: list[Character], memo: Any
    ) -> list[np.ndarray]:
        """One soft mask (HxW float32 in [0, 1]) per character (boxes XYXY in image pixels)."""
        if not characters:
            return []
        return split_by_boxes(self.union(image, memo), characters, self.box_margin)
