"""A fully convolutional ONNX net that maps an image to output maps, run on onnxruntime.

The base of kiridashi's own nets (the figure net, :mod:`kiridashi.detectors.figure_net`; the
mask net, :mod:`kiridashi.segmenters.mask_net`): the model file is found like every model file
(:func:`kiridashi.models.find_model_file`: models folder, else the copy bundled in the package),
the image is resized so its long side is ``input_side`` with both sides multiples of 32, and
channel 0 of the output is a figure logit map. No torch at run time.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from kiridashi.detectors.base import MissingModel
from kiridashi.errors import one_line
from kiridashi.figures.decode import STRIDE_MULTIPLE, sigmoid
from kiridashi.models import find_model_file


class OnnxMaps:
    """``maps(HxWx3 uint8 RGB) -> C x h x w`` float32 output maps; ``probability`` of channel 0.

    A missing or invalid model file raises :class:`~kiridashi.detectors.base.MissingModel`
    (``config_key`` names the setting in that message, ``shipped`` the file the package ships)."""

    CONTEXT = ("models_dir",)

    def __init__(
        self,
        model_file: str,
        input_side: int,
        config_key: str,
        shipped: str,
        threads: int = 1,
        models_dir: str | Path | None = None,
    ):
        import onnxruntime as ort

        path = find_model_file(model_file, models_dir)
        if path is None:
            raise MissingModel(
                f"model file {model_file} not found (config key {config_key}; the package "
                f"ships {shipped}: reinstall kiridashi)"
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
        self.input_side = int(input_side)

    def input_size(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """(W, H) of the net input for an image of ``image_hw``: long side ``input_side``,
        both sides multiples of 32 (at least 32)."""
        h, w = image_hw
        f = self.input_side / float(max(h, w))
        snap = lambda v: max(STRIDE_MULTIPLE, int(round(v * f / STRIDE_MULTIPLE)) * STRIDE_MULTIPLE)  # noqa: E731
        return snap(w), snap(h)

    def maps(self, image: np.ndarray) -> np.ndarray:
        """The net's C x h x w output maps for ``image`` (HxWx3 uint8 RGB)."""
        w, h = self.input_size(image.shape[:2])
        interp = cv2.INTER_AREA if w < image.shape[1] else cv2.INTER_LINEAR
        x = cv2.resize(image, (w, h), interpolation=interp).astype(np.float32)
        return self.session.run(None, {"image": x.transpose(2, 0, 1)[None]})[0][0]

    def probability(self, image: np.ndarray) -> np.ndarray:
        """HxW float32 figure probability of ``image`` (HxWx3 uint8 RGB), at its size: the
        net's channel 0, upsampled bilinearly."""
        h, w = image.shape[:2]
        prob = sigmoid(self.maps(image)[0]).astype(np.float32)
        return cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
