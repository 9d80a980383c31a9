"""Train the mask net on crops of synthetic scenes and export it to ONNX (needs ``torch``).

    python -m kiridashi.figures.mask_train [--minutes 55] [--out kiridashi/detectors/data/mask_net.onnx]
                                           [--art pool|renpy|procedural] [--pool DIR] [--seed 0]

Data: the figure net's recipe (:mod:`kiridashi.figures.train`: MIT-licensed art only - Ren'Py
demo art, LilyNovelPlayer and Moonlight Walks sprites, procedural figures - in
:class:`kiridashi.figures.synth.SceneSynth` scenes), cut into one crop per character as the cut
will see it (:mod:`kiridashi.figures.crops`). No image of the development sets is used; dev's
godotvn and dev2's RenJS-V2 and Wikipe-tan figures are art the net never saw. Repainting whole
colour regions of the sprites (``SynthConfig.p_regions``) is off in this recipe: a net trained
with it at 0.5 was better alone but worse in the cut on dev (``PROGRESS_TRACKER.md``).

Training: from scratch, AdamW with the figure net's one-cycle learning rate over the time
budget. Loss: soft binary cross-entropy plus (1 - soft IoU) per crop, on the alpha
area-averaged to the output stride. Writes ``<out>`` and ``<out>.json`` (recipe, steps, losses,
sha256).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kiridashi.figures.crops import CropConfig, sample_batch
from kiridashi.figures.synth import SceneSynth, SynthConfig
from kiridashi.figures.train import load_art
from kiridashi.figures.training import Recipe, fit, run, save, start, stream

LOSS_NAMES = ("bce", "iou")
SIZES = ((160, 320), (192, 320), (224, 320), (256, 320), (320, 288), (320, 320))  # (W, H)
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "detectors" / "data" / "mask_net.onnx"


def batches(synth: SceneSynth, batch: int, seed: int, stride: int, cfg: CropConfig):
    """Endless (images N x 3 x H x W float32, alpha N x H/stride x W/stride) numpy batches."""
    rng = np.random.default_rng(seed)
    while True:
        w, h = SIZES[int(rng.integers(len(SIZES)))]
        images, alpha = sample_batch(synth, rng, batch, (w, h), cfg)
        n = alpha.shape[0]
        target = alpha.reshape(n, h // stride, stride, w // stride, stride).mean(axis=(2, 4))
        yield images, target.astype(np.float32)


def loss_terms(logits, target):
    """(soft BCE, mean 1 - soft IoU per crop) of a batch (torch tensors N x 1 x h x w, N x h x w)."""
    import torch.nn.functional as F

    z = logits[:, 0]
    bce = F.binary_cross_entropy_with_logits(z, target)
    p = z.sigmoid()
    inter = (p * target).sum(dim=(1, 2))
    union = (p + target - p * target).sum(dim=(1, 2))
    soft_iou = (inter + 1.0) / (union + 1.0)
    return bce, (1.0 - soft_iou).mean()


def train(recipe: Recipe) -> dict:
    """Train the mask net as ``recipe`` says, export it; returns the training record."""
    from kiridashi.figures.mask_net import OUTPUT_STRIDE, MaskNet

    r = recipe
    start(r)
    sprites, backgrounds, provenance = load_art(r.art, r.pool, r.pool_folders)
    scenes = SynthConfig(p_regions=0.0)
    synth = SceneSynth(sprites, backgrounds, np.random.default_rng(r.seed), scenes)
    crops = CropConfig()
    model = MaskNet()
    make = lambda s: batches(synth, r.batch, s, OUTPUT_STRIDE, crops)  # noqa: E731
    losses = lambda m, images, target: loss_terms(m(images), target)  # noqa: E731
    done = fit(model, stream(make, r.seed + 1, r.workers), losses, LOSS_NAMES, (1.0, 1.0),
               r.lr, r.minutes, r.max_steps)  # fmt: skip
    details = {
        "sizes": [list(s) for s in SIZES],
        "crops": {k: getattr(crops, k) for k in crops.__dataclass_fields__},
        "scenes": {k: getattr(scenes, k) for k in scenes.__dataclass_fields__},
        "data": provenance,
    }
    return save(model, r, done, details, "kiridashi.figures.mask_train")


def main(argv: list[str] | None = None) -> int:
    return run(argv, __doc__, Recipe(DEFAULT_OUT, minutes=55.0, batch=12), train)


if __name__ == "__main__":
    raise SystemExit(main())
