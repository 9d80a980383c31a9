"""isnetis backend: letterboxing, the union-mask split, the cached raw map (tiny ONNX model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kiridashi.cache import ImageMemo, ResultCache
from kiridashi.models import ModelError
from kiridashi.segmenters.isnetis import IsnetisSegmenter, letterbox, split_by_boxes
from kiridashi.types import Character

SIDE = 1024  # the real export's input side


def _brightness_model(path: Path) -> Path:
    """ONNX model with isnetis.onnx's interface: img 1x3x1024x1024 -> 1x1x1024x1024 sigmoid.

    It computes sigmoid(10 * (mean(R, G, B) - 0.5)): bright pixels are "foreground".
    """
    onnx = pytest.importorskip("onnx")
    helper, tensor_proto = onnx.helper, onnx.TensorProto
    weight = helper.make_tensor("w", tensor_proto.FLOAT, [1, 3, 1, 1], [10 / 3] * 3)
    bias = helper.make_tensor("b", tensor_proto.FLOAT, [1], [-5.0])
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["img", "w", "b"], ["logits"]),
            helper.make_node("Sigmoid", ["logits"], ["mask"]),
        ],
        "isnetis_like",
        [helper.make_tensor_value_info("img", tensor_proto.FLOAT, [1, 3, SIDE, SIDE])],
        [helper.make_tensor_value_info("mask", tensor_proto.FLOAT, [1, 1, SIDE, SIDE])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


LEFT = Character(box=(10.0, 10.0, 90.0, 150.0), score=0.9, face_box=(30.0, 15.0, 70.0, 55.0))
RIGHT = Character(box=(110.0, 20.0, 190.0, 150.0), score=0.9, face_box=(130.0, 25.0, 170.0, 65.0))


def _two_figures() -> np.ndarray:
    """160x200 RGB: dark background, one bright figure in each character box, a bright blob
    outside every box (top-right corner)."""
    image = np.full((160, 200, 3), 20, np.uint8)
    image[20:140, 25:75] = 240
    image[30:140, 125:175] = 240
    image[0:6, 194:200] = 240
    return image


def test_letterbox_centres_the_image():
    tensor, (top, left, h, w) = letterbox(np.full((50, 100, 3), 255, np.uint8), 64)
    assert tensor.shape == (1, 3, 64, 64) and tensor.dtype == np.float32
    assert (top, left, h, w) == (16, 0, 32, 64)
    assert tensor[0, :, 16:48].min() == 1.0 and tensor[0, :, :16].max() == 0.0


def test_split_gives_each_pixel_to_the_containing_box_then_nearest_face():
    union = np.ones((160, 200), np.float32)
    left, right = split_by_boxes(union, [LEFT, RIGHT], box_margin=0.0)
    assert left[100, 50] == 1.0 and right[100, 50] == 0.0
    assert right[100, 150] == 1.0 and left[100, 150] == 0.0
    assert left[5, 195] == 0.0 and right[5, 195] == 0.0  # outside every box: nobody's
    overlap = Character(box=(0.0, 0.0, 200.0, 160.0), score=0.5, face_box=(140, 20, 180, 60))
    near_left, _ = split_by_boxes(union, [LEFT, overlap], box_margin=0.0)
    assert near_left[40, 50] == 1.0  # inside both boxes, nearer LEFT's face


def test_missing_model_names_the_config_key(tmp_path):
    seg = IsnetisSegmenter(model="isnetis.onnx", models_dir=tmp_path)
    with pytest.raises(ModelError, match=r"segment\.model.*kiridashi models fetch isnetis"):
        seg.segment(_two_figures(), [LEFT], memo=None)


def test_isnetis_masks_and_cached_raw_map(tmp_path):
    pytest.importorskip("onnxruntime")
    from kiridashi.config import compose
    from kiridashi.segmenters import segment_image
    from kiridashi.segmenters.base import build

    model = _brightness_model(tmp_path / "isnetis_tiny.onnx")
    cfg = compose(["segment=isnetis", f"segment.model={model}", "segment.device=cpu"])["segment"]
    cache = ResultCache(tmp_path / "cache")
    memo = ImageMemo(cache, "segment", "v-test", "image-content-key")
    image = _two_figures()
    left, right = segment_image(image, [LEFT, RIGHT], cfg, tmp_path, memo)
    for mask in (left, right):
        assert mask.shape == (160, 200) and mask.dtype == np.float32
        assert mask.min() >= 0.0 and mask.max() <= 1.0
    assert left[80, 50] > 0.9 and right[80, 50] == 0.0
    assert right[80, 150] > 0.9 and left[80, 150] == 0.0
    assert left[150, 50] < 0.1  # dark background inside the box
    assert max(left[2, 197], right[2, 197]) == 0.0  # bright, but outside every box

    seg = build(cfg, tmp_path)
    assert seg.runs == 1
    wider = Character(box=(0.0, 0.0, 100.0, 160.0), score=0.9, face_box=LEFT.face_box)
    again = segment_image(image, [wider, RIGHT], cfg, tmp_path, memo)
    assert seg.runs == 1  # the raw map came from the memo
    assert cache.stats.by_kind["segment.isnetis_map"] == [1, 1]
    assert again[0][80, 50] == pytest.approx(left[80, 50])
