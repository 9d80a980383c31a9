"""SAM backend: prompts, loading through the product's code, embedding cache (tiny random SAM)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest

from kiridashi.cache import ImageMemo, ResultCache
from kiridashi.models import ModelError
from kiridashi.segmenters.sam import SamSegmenter, character_prompts
from kiridashi.types import Character

TWO_CHARACTERS = [
    Character(
        box=(4.0, 6.0, 44.0, 70.0),
        score=0.9,
        face_box=(14.0, 8.0, 32.0, 26.0),
        keypoints={
            "face.left_eye": (18.0, 15.0, 0.9),
            "pose.left_shoulder": (16.0, 34.0, 0.8),
            "pose.left_wrist": (60.0, 60.0, 0.9),  # outside the box: ignored
            "pose.right_hip": (30.0, 50.0, 0.2),  # not confident: ignored
        },
    ),
    Character(box=(40.0, 10.0, 92.0, 72.0), score=0.8, face_box=(54.0, 12.0, 72.0, 30.0)),
]


def test_prompts_box_face_pose_and_other_faces():
    box, points, labels = character_prompts(0, TWO_CHARACTERS, min_keypoint_confidence=0.5)
    assert box.tolist() == [4.0, 6.0, 44.0, 70.0]
    assert points.shape == (3, 2) and labels.tolist() == [1, 1, 1]  # face centre, eye, shoulder
    assert points[0].tolist() == [23.0, 17.0]
    box, points, labels = character_prompts(
        0, [TWO_CHARACTERS[0], Character((4, 6, 44, 70), 0.5, face_box=(30, 20, 40, 30))]
    )
    assert labels.tolist() == [1, 1, 1, 0] and points[-1].tolist() == [35.0, 25.0]
    _, points, labels = character_prompts(1, TWO_CHARACTERS, negative_faces=True)
    assert labels.tolist() == [1]  # the other face (23, 17) is outside this box


def test_missing_checkpoint_names_config_key_and_fetch(tmp_path):
    seg = SamSegmenter(checkpoint="sam_vit_b_01ec64.pth", models_dir=tmp_path)
    image = np.zeros((80, 96, 3), np.uint8)
    with pytest.raises(ModelError) as err:
        seg.segment(image, TWO_CHARACTERS, memo=None)
    assert "segment.checkpoint" in str(err.value)
    assert "kiridashi models fetch sam_vit_b" in str(err.value)


def test_missing_sam_extra_is_a_one_line_model_error(tmp_path, monkeypatch):
    """Checkpoint present but torch / segment-anything not installed: name the extra."""
    import sys

    (tmp_path / "sam_vit_b_01ec64.pth").write_bytes(b"weights")
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    seg = SamSegmenter(checkpoint="sam_vit_b_01ec64.pth", models_dir=tmp_path)
    with pytest.raises(ModelError) as err:
        seg.segment(np.zeros((80, 96, 3), np.uint8), TWO_CHARACTERS, memo=None)
    assert "pip install -e '.[sam]'" in str(err.value) and "\n" not in str(err.value)


def _tiny_sam_checkpoint(path: Path) -> Path:
    """A random SAM with toy sizes, wired like segment_anything.build_sam._build_sam."""
    torch = pytest.importorskip("torch")
    modeling = pytest.importorskip("segment_anything.modeling")
    torch.manual_seed(0)
    sam = modeling.Sam(
        image_encoder=modeling.ImageEncoderViT(
            depth=2, embed_dim=32, img_size=128, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=2, patch_size=16,
            qkv_bias=True, use_rel_pos=True, global_attn_indexes=(1,), window_size=4,
            out_chans=32,
        ),
        prompt_encoder=modeling.PromptEncoder(
            embed_dim=32, image_embedding_size=(8, 8), input_image_size=(128, 128),
            mask_in_chans=4,
        ),
        mask_decoder=modeling.MaskDecoder(
            num_multimask_outputs=3,
            transformer=modeling.TwoWayTransformer(
                depth=2, embedding_dim=32, mlp_dim=64, num_heads=2
            ),
            transformer_dim=32, iou_head_depth=3, iou_head_hidden_dim=32,
        ),
    )  # fmt: skip
    torch.save(sam.state_dict(), path)
    return path


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Path:
    return _tiny_sam_checkpoint(tmp_path / "sam_tiny.pth")


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)
    image[10:70, 8:40] = (230, 180, 160)
    return image


def test_sam_segments_and_reuses_the_embedding(tiny_checkpoint, tmp_path):
    from kiridashi.config import compose
    from kiridashi.segmenters import segment_image

    cfg = compose(
        ["segment=sam_vit_b", "segment.model_type=tiny", f"segment.checkpoint={tiny_checkpoint}",
         "segment.device=cpu"]
    )["segment"]  # fmt: skip
    cache = ResultCache(tmp_path / "cache")
    memo = ImageMemo(cache, "segment", "v-test", "image-content-key")
    image = _image()
    masks = segment_image(image, TWO_CHARACTERS, cfg, tmp_path, memo)
    assert len(masks) == 2
    for mask in masks:
        assert mask.shape == (80, 96) and mask.dtype == np.float32
        assert mask.min() >= 0.0 and mask.max() <= 1.0
    # outside the first box grown by clip_margin (0.1 -> 4 px in x) the mask is empty
    assert masks[0][:, 49:].max() == 0.0

    from kiridashi.segmenters.base import build

    seg = build(cfg, tmp_path)
    assert isinstance(seg, SamSegmenter)
    assert (seg.stats.computed, seg.stats.reused) == (1, 0)
    calls = []
    hook = seg.modules()["image_encoder"].register_forward_hook(lambda *a: calls.append(1))
    moved = [
        Character(box=(0.0, 0.0, 50.0, 80.0), score=0.9, face_box=(10.0, 4.0, 30.0, 24.0)),
        TWO_CHARACTERS[1],
    ]
    again = segment_image(image, moved, cfg, tmp_path, memo)
    hook.remove()
    assert calls == [] and (seg.stats.computed, seg.stats.reused) == (1, 1)
    assert cache.stats.by_kind["segment.sam_embedding"] == [1, 1]
    assert len(again) == 2 and not np.array_equal(again[0], masks[0])
    stored = cache.get(next(k for k in cache.iter_keys() if "sam_embedding" in k))
    assert stored["embedding"].dtype == np.float16 and stored["embedding"].shape == (1, 32, 8, 8)


def test_wrong_architecture_is_a_clear_error(tiny_checkpoint, tmp_path):
    pytest.importorskip("segment_anything")
    seg = SamSegmenter(checkpoint=str(tiny_checkpoint), model_type="vit_b", device="cpu")
    with pytest.raises(ModelError, match="not a SAM vit_b checkpoint"):
        seg.segment(_image(), TWO_CHARACTERS, memo=None)


def test_unreadable_checkpoint_is_a_clear_error(tmp_path):
    pytest.importorskip("segment_anything")
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    seg = SamSegmenter(checkpoint=str(broken), model_type="tiny", device="cpu")
    with pytest.raises(ModelError, match="cannot read SAM checkpoint .*segment.checkpoint"):
        seg.segment(_image(), TWO_CHARACTERS, memo=None)


def test_bench_counts_embeddings_computed_then_reused(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("segment_anything")
    import json

    from bench.sam_bench import main

    out = tmp_path / "sam_bench.json"
    threads = torch.get_num_threads()
    try:
        assert main(["--n", "2", "--side", "160", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    result = json.loads(out.read_text())
    assert result["run1"]["embeddings_computed"] == 2 and result["run1"]["embeddings_reused"] == 0
    second = result["run2_after_detect_change"]
    assert second["embeddings_computed"] == 0 and second["embeddings_reused"] == 2
    assert second["encoder_seconds"] == 0.0


def test_device_setting():
    torch = pytest.importorskip("torch")
    from kiridashi.segmenters.sam import resolve_device

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="segment.device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="segment.device is cuda"):
            resolve_device("cuda")


def test_matches_segment_anythings_own_predictor(tiny_checkpoint):
    """Encoder input, prompt coordinates and mask post-processing agree with SamPredictor."""
    torch = pytest.importorskip("torch")
    from segment_anything import SamPredictor
    from segment_anything.modeling import Sam

    seg = SamSegmenter(checkpoint=str(tiny_checkpoint), model_type="tiny", device="cpu")
    modules = seg.modules()
    sam = Sam(modules["image_encoder"], modules["prompt_encoder"], modules["mask_decoder"]).eval()
    predictor = SamPredictor(sam)

    square = np.random.default_rng(1).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    predictor.set_image(square)  # long side == encoder input side: no resampling difference
    ours = seg.encode(square)
    assert ours["input_hw"] == tuple(predictor.input_size)
    np.testing.assert_allclose(ours["embedding"], predictor.features.numpy(), atol=2e-2)

    image = _image()  # 80x96: resized to 107x128
    embedding = seg.encode(image)
    predictor.set_image(image)
    assert embedding["input_hw"] == tuple(predictor.input_size)
    predictor.features = torch.as_tensor(embedding["embedding"]).float()
    box, points, labels = character_prompts(0, TWO_CHARACTERS)
    logits, iou, _ = predictor.predict(points, labels, box, multimask_output=True,
                                       return_logits=True)  # fmt: skip
    expected = 1 / (1 + np.exp(-logits[int(np.argmax(iou))]))
    ours = seg.decode(embedding, image.shape[:2], box, points, labels)
    np.testing.assert_allclose(ours, expected, atol=1e-4)
