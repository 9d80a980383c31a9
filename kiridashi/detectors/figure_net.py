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

import numpy as np

from kiridashi.detectors.onnx_maps import OnnxMaps
from kiridashi.figures.decode import OUTPUT_STRIDE, Figure, decode
from kiridashi.types import Detection


class FigureNet(OnnxMaps):
    """Scene detector: ``detect(HxWx3 uint8 RGB) -> [Detection(label="person")]``.

    The image is resized so that its long side is ``input_side`` px, each side rounded to a
    multiple of 32 (the net's stride); boxes come back in the given image's px (XYXY). A figure
    is kept when its centre peak reaches ``min_score`` and the net calls at least
    ``min_mask_mean`` of its box figure pixels. Output maps: 4 x H/4 x W/4 (mask, centre,
    log_w, log_h).
    """

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
        key = f"detect.detectors.{name}.model_file"
        super().__init__(model_file, input_side, key, "figure_net.onnx", threads, models_dir)
        self.name = name
        self.min_score = float(min_score)
        self.min_mask_mean = float(min_mask_mean)
        self.nms_iou = float(nms_iou)

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
