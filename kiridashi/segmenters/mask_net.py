"""kiridashi's mask net at run time: a figure probability map of one character's crop.

The net (:mod:`kiridashi.figures.mask_net`, trained by :mod:`kiridashi.figures.mask_train` on
crops of synthetic scenes of MIT-licensed art only) ships in the package as ONNX
(``kiridashi/detectors/data/mask_net.onnx``) and runs on onnxruntime. The cut
(:class:`kiridashi.segmenters.anime.AnimeRegionCut`, ``segment.figure``) hands it each
character's box grown by a margin; its output, at stride 2 of an input of long side
``input_side``, is sharper than the figure net's stride-4 mask of a whole scene.
"""

from __future__ import annotations

from pathlib import Path

from kiridashi.detectors.onnx_maps import OnnxMaps


class MaskNet(OnnxMaps):
    """``probability(HxWx3 uint8 RGB crop) -> HxW float32`` figure probability (1 x h/2 x w/2
    output maps, upsampled to the crop's size)."""

    def __init__(
        self,
        name: str,
        model_file: str = "mask_net.onnx",
        input_side: int = 320,
        threads: int = 1,
        models_dir: str | Path | None = None,
    ):
        key = f"{name}.model_file"
        super().__init__(model_file, input_side, key, "mask_net.onnx", threads, models_dir)
        self.name = name
