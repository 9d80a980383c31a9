"""Figure (character) boxes from kiridashi's learned figure net, face or no face.

The net (:mod:`kiridashi.figures.net`, trained by :mod:`kiridashi.figures.train` on synthetic
scenes of MIT-licensed art only: Ren'Py demo art, LilyNovelPlayer and Moonlight Walks sprites,
procedurally drawn figures) ships in the package as ONNX
(``kiridashi/detectors/data/figure_net.onnx``) and runs on onnxruntime: no torch at run time.
It finds whole figures - small, cut by the frame, seen from behind - that the face detectors
miss, and gives a figure probability map that tells a character from furniture.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from kiridashi.detectors.base import MissingModel
from kiridashi.errors import one_line
from kiridashi.figures.decode import OUTPUT_STRIDE, STRIDE_MULTIPLE, Figure, decode, sigmoid
from kiridashi.models import find_model_file
from kiridashi.types import Detection


class FigureNet:
    """Scene detector: ``detect(HxWx3 uint8 RGB) -> [Detection(label="person")]``.

    The image is resized so that its long side is ``input_side`` px, each side rounded to a
    multiple of 32 (the net's stride); boxes come back in the given image's px (XYXY). A figure
    is kept when its centre peak reaches ``min_score`` and the net calls at least
    ``min_mask_mean`` of its box figure pixels.
    """

    CONTEXT = ("models_dir",)

    def __init__(
        self,
        name: str,
        model_file: str = "figure_net.onnx",
        input_side: int = 320,
        min_score: float = 0.3,
        min_mask_mean: float = 0.2,
        nms_iou: float = 0.5,
        threads: int = 1,
        models_dir: str | Path | None = None,
    ):
        import onnxruntime as ort

        path = find_model_file(model_file, models_dir)
        if path is None:
            raise MissingModel(
                f"model file {model_file} not found (config key detect.detectors.{name}."
                "model_file; the package ships figure_net.onnx: reinstall kiridashi)"
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise MissingModel(f"{path} is not a valid ONNX model ({one_line(exc)})") from None
        self.name = name
        self.input_side = int(input_side)
        self.min_score = float(min_score)
        self.min_mask_mean = float(min_mask_mean)
        self.nms_iou = float(nms_iou)

    def input_size(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """(W, H) of the net input for an image of ``image_hw``: long side ``input_side``,
        both sides multiples of 32 (at least 32)."""
        h, w = image_hw
        f = self.input_side / float(max(h, w))
        snap = lambda v: max(STRIDE_MULTIPLE, int(round(v * f / STRIDE_MULTIPLE)) * STRIDE_MULTIPLE)  # noqa: E731
        return snap(w), snap(h)

    def maps(self, image: np.ndarray) -> np.ndarray:
        """The net's 4 x H/4 x W/4 output maps (mask, centre, log_w, log_h) for ``image``."""
        w, h = self.input_size(image.shape[:2])
        interp = cv2.INTER_AREA if w < image.shape[1] else cv2.INTER_LINEAR
        x = cv2.resize(image, (w, h), interpolation=interp).astype(np.float32)
        return self.session.run(None, {"image": x.transpose(2, 0, 1)[None]})[0][0]

    def probability(self, image: np.ndarray) -> np.ndarray:
        """HxW float32 figure probability of ``image`` (HxWx3 uint8 RGB), at its size: the
        net's mask map (stride 4 of its input), upsampled bilinearly."""
        h, w = image.shape[:2]
        prob = sigmoid(self.maps(image)[0]).astype(np.float32)
        return cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)

    def figures(self, image: np.ndarray) -> list[Figure]:
        """Figures in ``image`` (HxWx3 uint8 RGB), boxes in its px, best first."""
        h, w = image.shape[:2]
        iw, ih = self.input_size((h, w))
        sx, sy = w / float(iw), h / float(ih)
        out = []
        for f in decode(self.maps(image), OUTPUT_STRIDE, self.min_score, self.nms_iou):
            if f.mask_mean < self.min_mask_mean:
                continue
            b = f.box
            out.append(Figure((b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy), f.score, f.mask_mean))
        return out

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Figure boxes (label "person", score = centre peak) in ``image``'s px."""
        return [
            Detection(f.box, round(f.score, 4), "person", self.name) for f in self.figures(image)
        ]
