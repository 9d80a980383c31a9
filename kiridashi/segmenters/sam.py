"""SAM (Segment Anything) backend, prompted by the detections: one mask per character.

Per character the prompt is its box (XYXY), positive points on its face (face-box centre,
confident ``face.*`` points) and confident ``pose.*`` joints inside its box, and negative points on
the other characters' faces that fall inside its box. With ``multimask`` the decoder proposes three
masks and the one with the highest predicted IoU is kept. The soft mask is the sigmoid of the
chosen logits, upsampled to the image (HxW float32 in [0, 1]).

The image embedding (1 x C x E x E, C=256 and E=64 for the official models) is the expensive part;
it is cached through the segment memo under (image content + preprocess params, model type,
checkpoint fingerprint, encoder input size), stored as float16. A change of detection or prompt
params therefore re-runs only the prompt encoder and the mask decoder. :attr:`SamSegmenter.stats`
counts embeddings computed vs reused.

Needs the ``sam`` extra (``pip install -e '.[sam]'``: torch + segment-anything) and a checkpoint
(``kiridashi models fetch sam_vit_b``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from kiridashi.models import (
    REGISTRY,
    ModelError,
    fetch_name_for,
    file_fingerprint,
    require,
    resolve_model_path,
)
from kiridashi.types import BoxXYXY, Character

log = logging.getLogger(__name__)

PIXEL_MEAN = (123.675, 116.28, 103.53)  # RGB, what the official checkpoints were trained with
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class SamArchitecture:
    """Sizes of one SAM variant (wiring as in segment_anything/build_sam.py)."""

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    image_size: int = 1024  # encoder input side (the long image side is resized to this)
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16


ARCHITECTURES: dict[str, SamArchitecture] = {
    "vit_b": SamArchitecture(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamArchitecture(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamArchitecture(1280, 32, 16, (7, 15, 23, 31)),
    # Toy sizes for tests and bench/sam_bench.py (random weights; no official checkpoint).
    "tiny": SamArchitecture(
        32,
        2,
        2,
        (1,),
        image_size=128,
        window_size=4,
        prompt_embed_dim=32,
        decoder_mlp_dim=64,
        decoder_num_heads=2,
        iou_head_hidden_dim=32,
        mask_in_chans=4,
    ),  # fmt: skip
}


def architecture(model_type: str) -> SamArchitecture:
    """The sizes of ``model_type``; an unknown name is a ModelError naming the config key."""
    if model_type not in ARCHITECTURES:
        raise ModelError(
            f"unknown SAM model_type {model_type!r} (config key segment.model_type); "
            f"known: {', '.join(ARCHITECTURES)}"
        )
    return ARCHITECTURES[model_type]


def build_sam_modules(arch: SamArchitecture):
    """Untrained SAM parts as a ``torch.nn.ModuleDict`` whose state-dict keys match a SAM checkpoint.

    Keys ``image_encoder``, ``prompt_encoder``, ``mask_decoder`` (the official checkpoints hold no
    other persistent tensors). Built on the current default torch device (``meta`` for loading).
    """
    import torch
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        TwoWayTransformer,
    )

    grid = arch.image_size // arch.patch_size
    return torch.nn.ModuleDict(
        {
            "image_encoder": ImageEncoderViT(
                img_size=arch.image_size,
                patch_size=arch.patch_size,
                embed_dim=arch.encoder_embed_dim,
                depth=arch.encoder_depth,
                num_heads=arch.encoder_num_heads,
                mlp_ratio=4,
                out_chans=arch.prompt_embed_dim,
                qkv_bias=True,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                use_rel_pos=True,
                window_size=arch.window_size,
                global_attn_indexes=arch.encoder_global_attn_indexes,
            ),
            "prompt_encoder": PromptEncoder(
                embed_dim=arch.prompt_embed_dim,
                image_embedding_size=(grid, grid),
                input_image_size=(arch.image_size, arch.image_size),
                mask_in_chans=arch.mask_in_chans,
            ),
            "mask_decoder": MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(
                    depth=2,
                    embedding_dim=arch.prompt_embed_dim,
                    mlp_dim=arch.decoder_mlp_dim,
                    num_heads=arch.decoder_num_heads,
                ),
                transformer_dim=arch.prompt_embed_dim,
                iou_head_depth=3,
                iou_head_hidden_dim=arch.iou_head_hidden_dim,
            ),
        }
    )


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (torch's are long), or its type name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def state_dict_problem(exc: BaseException, limit: int = 240) -> str:
    """The informative part of torch's load_state_dict error (missing/unexpected/size lines)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    telling = [line for line in lines if line.startswith(("Missing", "Unexpected", "size"))]
    text = "; ".join(telling or lines[:1]) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_sam(model_type: str, checkpoint: Path, device: str):
    """SAM parts of ``model_type`` with the weights of ``checkpoint``, in eval mode on ``device``.

    The skeleton is built on the ``meta`` device and the checkpoint tensors are assigned
    (memory-mapped when the file allows), so no time is spent on a random init.
    """
    import torch

    arch = architecture(model_type)
    try:
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) serialisation cannot be memory-mapped
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated / not a torch file / unsafe pickle
        raise ModelError(
            f"cannot read SAM checkpoint {checkpoint} (config key segment.checkpoint): "
            f"{first_line(exc)}"
        ) from None
    with torch.device("meta"):
        modules = build_sam_modules(arch)
    try:
        modules.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise ModelError(
            f"{checkpoint} is not a SAM {model_type} checkpoint (config keys segment.model_type, "
            f"segment.checkpoint): {state_dict_problem(exc)}"
        ) from None
    return modules.to(device).eval()


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; ``cuda`` without CUDA is an error."""
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"segment.device must be auto, cpu or cuda, not {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("segment.device is cuda but torch.cuda.is_available() is False")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def box_centre(box: BoxXYXY) -> tuple[float, float]:
    x0, y0, x1, y1 = box
    return (x0 + x1) / 2, (y0 + y1) / 2


def inside(point: tuple[float, float], box: BoxXYXY) -> bool:
    x, y = point
    return box[0] <= x < box[2] and box[1] <= y < box[3]


def character_prompts(
    index: int,
    characters: list[Character],
    min_keypoint_confidence: float = 0.5,
    face_points: bool = True,
    pose_points: bool = True,
    negative_faces: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SAM prompts for ``characters[index]``, in image pixels.

    Returns (box float32 (4,) XYXY, points float32 Nx2 (x, y), labels int32 (N,), 1 = this
    character, 0 = another character's face). N may be 0.
    """
    me = characters[index]
    positives: list[tuple[float, float]] = []
    negatives: list[tuple[float, float]] = []
    if face_points and me.face_box is not None:
        positives.append(box_centre(me.face_box))
    for name, (x, y, conf) in sorted(me.keypoints.items()):
        wanted = (face_points and name.startswith("face.")) or (
            pose_points and name.startswith("pose.")
        )
        if wanted and conf >= min_keypoint_confidence and inside((x, y), me.box):
            positives.append((float(x), float(y)))
    if negative_faces:
        for k, other in enumerate(characters):
            if k == index or other.face_box is None:
                continue
            centre = box_centre(other.face_box)
            own_face = me.face_box is not None and inside(centre, me.face_box)
            if inside(centre, me.box) and not own_face:
                negatives.append(centre)
    points = np.array(positives + negatives, np.float32).reshape(-1, 2)
    labels = np.array([1] * len(positives) + [0] * len(negatives), np.int32)
    return np.array(me.box, np.float32), points, labels


@dataclass
class EmbeddingStats:
    computed: int = 0
    reused: int = 0
    encoder_seconds: float = 0.0


class SamSegmenter:
    """``segment=sam_vit_b|sam_vit_l|sam_vit_h``: SAM prompted by boxes, face and pose points.

    checkpoint: file name inside ``models_dir`` or an absolute path.
    model_type: ``vit_b`` / ``vit_l`` / ``vit_h`` (``tiny``: tests and benchmarks only).
    device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    multimask: let the decoder propose 3 masks and keep the one with the best predicted IoU.
    clip_margin: zero the mask outside the character box grown by this share of its size
        (``null``: no clipping).
    """

    # cached image-level values depend only on this module (and the model file)
    MEMO_MODULES = ("kiridashi.segmenters.sam",)

    CONTEXT = ("models_dir",)

    def __init__(
        self,
        checkpoint: str = "sam_vit_b_01ec64.pth",
        model_type: str = "vit_b",
        device: str = "auto",
        multimask: bool = True,
        face_points: bool = True,
        pose_points: bool = True,
        negative_faces: bool = True,
        min_keypoint_confidence: float = 0.5,
        clip_margin: float | None = 0.1,
        models_dir: Path = Path("models"),
    ):
        self.checkpoint = resolve_model_path(checkpoint, models_dir)
        self.model_type = model_type
        self.arch = architecture(model_type)
        self.device_setting = device
        self.multimask = bool(multimask)
        self.prompt_options = {
            "min_keypoint_confidence": float(min_keypoint_confidence),
            "face_points": bool(face_points),
            "pose_points": bool(pose_points),
            "negative_faces": bool(negative_faces),
        }
        self.clip_margin = None if clip_margin is None else float(clip_margin)
        self.stats = EmbeddingStats()
        self._modules = None
        self._device: str | None = None

    # -- model ------------------------------------------------------------------------------
    def _require_checkpoint(self) -> Path:
        official = f"sam_{self.model_type}"
        name = fetch_name_for(self.checkpoint.name) or (official if official in REGISTRY else None)
        return require(self.checkpoint, "segment.checkpoint", name)

    def modules(self):
        """The loaded SAM parts (loaded on first use, once per process).

        Raises ModelError (one line) for a missing checkpoint, then for a missing ``sam`` extra.
        """
        if self._modules is None:
            checkpoint = self._require_checkpoint()
            try:
                import segment_anything  # noqa: F401
                import torch  # noqa: F401
            except ImportError as exc:
                raise ModelError(
                    f"segment={self.model_type and 'sam_' + self.model_type} needs the optional "
                    f"extra: pip install -e '.[sam]' ({exc})"
                ) from None
            self._device = resolve_device(self.device_setting)
            self._modules = load_sam(self.model_type, checkpoint, self._device)
            log.info("SAM %s loaded from %s on %s", self.model_type, self.checkpoint, self._device)
        return self._modules

    def embedding_params(self) -> dict:
        """What the image embedding depends on besides the image (memo params)."""
        return {
            "model_type": self.model_type,
            "checkpoint": file_fingerprint(self._require_checkpoint()),
            "encoder_input_size": self.arch.image_size,
        }

    # -- image embedding --------------------------------------------------------------------
    def input_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of the image resized so that its long side is the encoder input size."""
        h, w = hw
        scale = self.arch.image_size / max(h, w)
        return int(h * scale + 0.5), int(w * scale + 0.5)

    def encode(self, image: np.ndarray) -> dict:
        """{"embedding": float16 1xCxExE, "input_hw": (h, w)} of an HxWx3 uint8 RGB image."""
        import time

        import cv2

        modules = self.modules()  # first: clear errors for a missing checkpoint or extra
        import torch

        start = time.perf_counter()
        in_h, in_w = self.input_hw(image.shape[:2])
        shrink = in_w < image.shape[1]
        resized = cv2.resize(
            image, (in_w, in_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        )
        side = self.arch.image_size
        x = torch.as_tensor(resized, dtype=torch.float32, device=self._device).permute(2, 0, 1)
        mean = torch.tensor(PIXEL_MEAN, device=self._device).view(3, 1, 1)
        std = torch.tensor(PIXEL_STD, device=self._device).view(3, 1, 1)
        x = torch.nn.functional.pad((x - mean) / std, (0, side - in_w, 0, side - in_h))
        with torch.inference_mode():
            features = modules["image_encoder"](x[None])
        self.stats.encoder_seconds += time.perf_counter() - start
        return {
            "embedding": features.cpu().numpy().astype(np.float16),
            "input_hw": (in_h, in_w),
        }

    def embedding(self, image: np.ndarray, memo: Any) -> dict:
        """The image embedding, from the memo when this image was encoded before."""
        computed = []

        def compute() -> dict:
            computed.append(True)
            return self.encode(image)

        value = memo("sam_embedding", self.embedding_params(), compute) if memo else compute()
        outcome = "computed" if computed else "reused"
        setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)
        log.debug("SAM embedding %s (total computed %d, reused %d)", outcome,
                  self.stats.computed, self.stats.reused)  # fmt: skip
        return value

    # -- prompts -> masks ---------------------------------------------------------------------
    def decode(
        self, embedding: dict, hw: tuple[int, int], box: np.ndarray, points: np.ndarray,
        labels: np.ndarray,
    ) -> np.ndarray:  # fmt: skip
        """Soft mask (HxW float32 in [0, 1]) for one prompt (box XYXY, points Nx2 in pixels)."""
        import torch
        import torch.nn.functional as F

        modules = self.modules()
        dev = self._device
        h, w = hw
        in_h, in_w = embedding["input_hw"]
        to_input = np.array([in_w / w, in_h / h], np.float32)  # image px -> encoder-input px
        features = torch.as_tensor(embedding["embedding"], device=dev).float()
        box_t = torch.as_tensor(box.reshape(2, 2) * to_input, device=dev).reshape(1, 4)
        point_prompt = None
        if len(points):
            coords = torch.as_tensor(points * to_input, device=dev)[None]
            point_prompt = (coords, torch.as_tensor(labels, dtype=torch.int64, device=dev)[None])
        prompt_encoder, mask_decoder = modules["prompt_encoder"], modules["mask_decoder"]
        with torch.inference_mode():
            sparse, dense = prompt_encoder(points=point_prompt, boxes=box_t, masks=None)
            low_res, iou = mask_decoder(
                image_embeddings=features,
                image_pe=prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=self.multimask,
            )
            best = int(torch.argmax(iou[0]))
            logits = low_res[:, best : best + 1]
            side = self.arch.image_size
            logits = F.interpolate(logits, (side, side), mode="bilinear", align_corners=False)
            logits = logits[..., :in_h, :in_w]
            logits = F.interpolate(logits, (h, w), mode="bilinear", align_corners=False)
            soft = torch.sigmoid(logits)[0, 0].cpu().numpy().astype(np.float32)
        return soft

    def clip_to_box(self, soft: np.ndarray, box: BoxXYXY) -> np.ndarray:
        """``soft`` with zeros outside ``box`` (XYXY) grown by ``clip_margin`` of its size."""
        if self.clip_margin is None:
            return soft
        h, w = soft.shape
        x0, y0, x1, y1 = box
        mx, my = (x1 - x0) * self.clip_margin, (y1 - y0) * self.clip_margin
        keep = np.zeros_like(soft)
        r0, r1 = max(0, int(y0 - my)), min(h, int(np.ceil(y1 + my)))
        c0, c1 = max(0, int(x0 - mx)), min(w, int(np.ceil(x1 + mx)))
        keep[r0:r1, c0:c1] = 1.0
        return soft * keep

    def segment(
        self, image: np.ndarray, characters: list[Character], memo: Any
    ) -> list[np.ndarray]:
        """One soft mask (HxW float32 in [0, 1]) per character of an HxWx3 uint8 RGB image."""
        if not characters:
            return []
        embedding = self.embedding(image, memo)
        hw = image.shape[:2]
        masks = []
        for k, character in enumerate(characters):
            box, points, labels = character_prompts(k, characters, **self.prompt_options)
            soft = self.decode(embedding, hw, box, points, labels)
            masks.append(self.clip_to_box(soft, character.box))
        return masks
