"""Train the figure net on synthetic scenes and export it to ONNX (needs the ``torch`` extra).

    python -m kiridashi.figures.train [--minutes 45] [--out kiridashi/detectors/data/figure_net.onnx]
                                      [--art pool|renpy|procedural] [--pool DIR] [--seed 0]

Data recipe (``--art pool``, what the shipped net was trained with): scenes from
:class:`kiridashi.figures.synth.SceneSynth` over MIT-licensed art only, so the weights are MIT:

- the character sprites and backgrounds of Debian's ``renpy-demo`` and ``renpy-thequestion``
  packages (Expat), fetched with ``apt-get download`` as ``kiridashi demo`` does;
- the LilyNovelPlayer (MIT) and Moonlight Walks (MIT + naming clause) sprites and backgrounds of
  the development sprite pool ``--pool`` (``../shared/datasets/sprites``; its CC-BY-SA folders,
  RenJS-V2 and ossified's Wikipe-tan, are left out);
- figures and backgrounds drawn procedurally by :mod:`kiridashi.demo`.

No image of the development sets is used. Characters the net never saw, to judge it on: dev's
godotvn sprites, dev2's RenJS-V2 and Wikipe-tan figures, and every other artist's art.
``--art renpy`` uses the Ren'Py art (and procedural figures) alone; ``--art procedural`` only
procedural figures (tests).

Training: from scratch (no pretrained weights), AdamW with a one-cycle learning rate over the
time budget; each batch is a fresh set of scenes at one of a few canvas sizes. Losses: soft
binary cross-entropy on the figure mask, CenterNet's penalty-reduced focal loss on the centre
heat map, L1 on the log box sizes around each centre. The export takes any H x W (multiples of
32) and writes ``<out>`` plus ``<out>.json`` (recipe, steps, losses, sha256).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from kiridashi.errors import one_line
from kiridashi.figures.synth import Scene, SceneSynth
from kiridashi.figures.training import MIT_POOL_FOLDERS, Recipe, fit, run, save, start, stream

log = logging.getLogger("kiridashi.figures.train")

SIZES = ((320, 192), (320, 256), (256, 256), (320, 224), (288, 160))  # (W, H) canvases
LOSS_NAMES = ("mask", "centre", "size")
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "detectors" / "data" / "figure_net.onnx"


def _images(folder: Path, mode: str) -> list[tuple[str, np.ndarray]]:
    """(relative path, array) of the images below ``folder``, sorted (``mode``: RGBA / RGB); an
    unreadable file is left out with one warning line."""
    from PIL import Image

    out = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"):
            try:
                with Image.open(path) as im:
                    array = np.asarray(im.convert(mode))
            except Exception as exc:  # noqa: BLE001 - Pillow and plugins that patch Image.open
                # (ultralytics' HEIF hook raises ModuleNotFoundError) raise many types for bad files
                log.warning("training art skipped: %s: %s", path, one_line(exc))
                continue
            out.append((path.relative_to(folder).as_posix(), array))
    return out


def load_art(
    kind: str, pool: Path | None = None, include: tuple[str, ...] = MIT_POOL_FOLDERS
) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
    """(RGBA sprites, RGB backgrounds, provenance) of ``kind``:

    - ``procedural``: none (the scene maker draws its own figures and backgrounds);
    - ``renpy``: the demo's Ren'Py sprites and backgrounds (Debian packages);
    - ``pool``: the Ren'Py art plus the RGBA sprites of ``pool/sprites/<folder>`` and the
      backgrounds of ``pool/backgrounds/<folder>`` for each folder of ``include`` (a sprite pool
      such as ``../shared/datasets/sprites``; by default its MIT-licensed folders only, so the
      weights stay MIT)."""
    if kind == "procedural":
        return [], [], {"art": "procedural"}
    from kiridashi.demo import load_renpy_art

    art = load_renpy_art()
    renpy_bgs = {
        "renpy_backgrounds": [b.name for b in art.backgrounds],
        "renpy_packages": art.provenance(),
    }
    if kind == "renpy":
        return (
            [s.rgba for s in art.sprites],
            [b.rgb for b in art.backgrounds],
            {"art": "renpy", "sprites": [s.name for s in art.sprites], **renpy_bgs},
        )
    if pool is None or not (pool / "sprites").is_dir():
        raise FileNotFoundError(f"--art pool needs --pool DIR with sprites/ (got {pool})")
    sprites, backgrounds = [], []
    for sub in include:
        sprites += _images(pool / "sprites" / sub, "RGBA")
        if (pool / "backgrounds" / sub).is_dir():
            backgrounds += _images(pool / "backgrounds" / sub, "RGB")
    return (
        [a for _, a in sprites] + [s.rgba for s in art.sprites],
        [a for _, a in backgrounds] + [b.rgb for b in art.backgrounds],
        {
            "art": "pool",
            "pool": str(pool),
            "pool_folders": list(include),
            "pool_sprites": [n for n, _ in sprites],
            "pool_backgrounds": [n for n, _ in backgrounds],
            "renpy_sprites": [s.name for s in art.sprites],
            **renpy_bgs,
        },
    )


def targets(scene: Scene, stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mask h x w, centre heat h x w, log size 2 x h x w, size weight h x w) at ``stride``."""
    H, W = scene.alpha.shape
    h, w = H // stride, W // stride
    mask = scene.alpha.reshape(h, stride, w, stride).mean(axis=(1, 3))
    heat = np.zeros((h, w), np.float32)
    size = np.zeros((2, h, w), np.float32)
    weight = np.zeros((h, w), np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    for x0, y0, x1, y1 in scene.boxes:
        bw, bh = (x1 - x0) / stride, (y1 - y0) / stride
        cx, cy = (x0 + x1) / 2 / stride, (y0 + y1) / 2 / stride
        sx, sy = max(0.7, bw / 6), max(0.7, bh / 6)
        g = np.exp(-((xx - cx) ** 2) / (2 * sx**2) - ((yy - cy) ** 2) / (2 * sy**2))
        heat = np.maximum(heat, g)
        ix, iy = min(w - 1, int(cx)), min(h - 1, int(cy))
        heat[iy, ix] = 1.0
        near = g > 0.6  # the size is regressed where the centre is likely to peak
        near[iy, ix] = True
        size[0][near] = math.log(max(bw, 0.25))
        size[1][near] = math.log(max(bh, 0.25))
        weight[near] = np.maximum(weight[near], g[near])
    return mask.astype(np.float32), heat, size, weight


def batches(synth: SceneSynth, batch: int, seed: int, stride: int):
    """Endless (images N x 3 x H x W float32, mask, heat, size, weight) numpy batches."""
    rng = np.random.default_rng(seed)
    while True:
        w, h = SIZES[int(rng.integers(len(SIZES)))]
        scenes = [synth.sample(rng, (w, h)) for _ in range(batch)]
        tg = [targets(s, stride) for s in scenes]
        yield (
            np.stack([s.rgb.transpose(2, 0, 1) for s in scenes]).astype(np.float32),
            np.stack([t[0] for t in tg]),
            np.stack([t[1] for t in tg]),
            np.stack([t[2] for t in tg]),
            np.stack([t[3] for t in tg]),
        )


def loss_terms(out, mask, heat, size, weight):
    """(mask BCE, centre focal, size L1) of a batch (torch tensors)."""
    import torch
    import torch.nn.functional as F

    l_mask = F.binary_cross_entropy_with_logits(out[:, 0], mask)
    p = torch.sigmoid(out[:, 1]).clamp(1e-4, 1 - 1e-4)
    pos = heat >= 0.999
    neg_w = (1 - heat) ** 4
    pos_loss = (torch.log(p) * (1 - p) ** 2)[pos].sum()
    neg_loss = (torch.log(1 - p) * p**2 * neg_w)[~pos].sum()
    l_heat = -(pos_loss + neg_loss) / pos.sum().clamp(min=1)
    l1 = (out[:, 2:4] - size).abs().sum(dim=1) * weight
    l_size = l1.sum() / weight.sum().clamp(min=1)
    return l_mask, l_heat, l_size


def train(recipe: Recipe) -> dict:
    """Train the figure net as ``recipe`` says, export it; returns the training record."""
    from kiridashi.figures.decode import OUTPUT_STRIDE
    from kiridashi.figures.net import FigureNet

    r = recipe
    start(r)
    sprites, backgrounds, provenance = load_art(r.art, r.pool, r.pool_folders)
    synth = SceneSynth(sprites, backgrounds, np.random.default_rng(r.seed))
    model = FigureNet()
    data = stream(lambda s: batches(synth, r.batch, s, OUTPUT_STRIDE), r.seed + 1, r.workers)
    losses = lambda m, images, *tg: loss_terms(m(images), *tg)  # noqa: E731
    done = fit(model, data, losses, LOSS_NAMES, (1.0, 1.0, 0.5), r.lr, r.minutes, r.max_steps)
    details = {"sizes": [list(s) for s in SIZES], "data": provenance}
    return save(model, r, done, details, "kiridashi.figures.train")


def main(argv: list[str] | None = None) -> int:
    return run(argv, __doc__, Recipe(DEFAULT_OUT, minutes=40.0, batch=16), train)


if __name__ == "__main__":
    raise SystemExit(main())
