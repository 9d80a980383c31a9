"""Train the mask net on crops of synthetic scenes and export it to ONNX (needs ``torch``).

    python -m kiridashi.figures.mask_train [--minutes 50] [--out kiridashi/detectors/data/mask_net.onnx]
                                           [--art pool|renpy|procedural] [--pool DIR] [--seed 0]

Data: the figure net's recipe (:mod:`kiridashi.figures.train`: MIT-licensed art only - Ren'Py
demo art, LilyNovelPlayer and Moonlight Walks sprites, procedural figures - in
:class:`kiridashi.figures.synth.SceneSynth` scenes), cut into one crop per character as the cut
will see it (:mod:`kiridashi.figures.crops`). No image of the development sets is used; dev's
godotvn and dev2's RenJS-V2 and Wikipe-tan figures are art the net never saw.

Training: from scratch, AdamW with the figure net's one-cycle learning rate over the time
budget. Loss: soft binary cross-entropy plus (1 - soft IoU) per crop, on the alpha
area-averaged to the output stride. Writes ``<out>`` and ``<out>.json`` (recipe, steps, losses,
sha256).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from kiridashi.figures.crops import CropConfig, sample_batch
from kiridashi.figures.synth import SceneSynth
from kiridashi.figures.train import (
    DEFAULT_POOL,
    export_onnx,
    load_art,
    one_cycle,
    sha256,
    write_record,
)

log = logging.getLogger("kiridashi.figures.mask_train")

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


def stream(synth: SceneSynth, batch: int, seed: int, workers: int, cfg: CropConfig):
    """:func:`batches` made in ``workers`` background processes (0: in this process)."""
    from kiridashi.figures.mask_net import OUTPUT_STRIDE

    if workers <= 0:
        yield from batches(synth, batch, seed, OUTPUT_STRIDE, cfg)
        return
    import torch

    class Batches(torch.utils.data.IterableDataset):
        def __iter__(self):
            info = torch.utils.data.get_worker_info()
            wid = info.id if info is not None else 0
            return batches(synth, batch, seed + 1000 * wid, OUTPUT_STRIDE, cfg)

    loader = torch.utils.data.DataLoader(
        Batches(), batch_size=None, num_workers=workers, prefetch_factor=4
    )
    for arrays in loader:
        yield tuple(a.numpy() for a in arrays)


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


def train(
    out: Path,
    minutes: float,
    art: str = "pool",
    seed: int = 0,
    batch: int = 12,
    lr: float = 3e-3,
    max_steps: int | None = None,
    threads: int | None = None,
    workers: int = 1,
    pool: Path | None = None,
) -> dict:
    """Train for ``minutes`` (or ``max_steps``), export to ``out``; returns the training record."""
    import torch

    from kiridashi.figures.mask_net import MaskNet

    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    sprites, backgrounds, provenance = load_art(art, pool)
    synth = SceneSynth(sprites, backgrounds, np.random.default_rng(seed))
    cfg = CropConfig()
    model = MaskNet()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    budget = minutes * 60.0
    t0 = time.monotonic()
    history: list[dict] = []
    running = np.zeros(2)
    step = 0
    for step, arrays in enumerate(stream(synth, batch, seed + 1, workers, cfg), start=1):
        elapsed = time.monotonic() - t0
        progress = min(1.0, step / max_steps) if max_steps else min(1.0, elapsed / budget)
        scale = one_cycle(progress)
        for g in opt.param_groups:
            g["lr"] = lr * max(scale, 0.02)
        model.train()
        images, target = (torch.from_numpy(np.asarray(a)) for a in arrays)
        terms = loss_terms(model(images), target)
        loss = terms[0] + terms[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
        now = np.array([t.item() for t in terms])
        running = 0.95 * running + 0.05 * now if step > 1 else now
        if step % 50 == 0 or step == 1:
            rec = {"step": step, "seconds": round(elapsed, 1), "lr": round(lr * scale, 6)}
            rec.update(dict(zip(("bce", "iou"), np.round(running, 4).tolist(), strict=True)))
            history.append(rec)
            log.info("%s", rec)
        if (max_steps and step >= max_steps) or (not max_steps and elapsed >= budget):
            break
    out.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(model, out)
    record = {
        "model": "kiridashi.figures.mask_net.MaskNet",
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "steps": step,
        "batch": batch,
        "threads": torch.get_num_threads(),
        "workers": workers,
        "seconds": round(time.monotonic() - t0, 1),
        "seed": seed,
        "lr": lr,
        "sizes": [list(s) for s in SIZES],
        "crops": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "data": provenance,
        "final_losses": dict(zip(("bce", "iou"), np.round(running, 4).tolist(), strict=True)),
        "history": history,
        "torch": torch.__version__,
        "sha256": sha256(out),
        "command": " ".join(["python -m kiridashi.figures.mask_train", *sys.argv[1:]]),
    }
    write_record(out, record)
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="ONNX file to write")
    ap.add_argument("--minutes", type=float, default=50.0, help="training time budget")
    ap.add_argument("--max-steps", type=int, default=None, help="stop after N steps instead")
    ap.add_argument("--art", choices=("pool", "renpy", "procedural"), default="pool")
    ap.add_argument(
        "--pool", type=Path, default=DEFAULT_POOL, help="sprite pool: sprites/ + backgrounds/"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: all cores)")
    ap.add_argument("--workers", type=int, default=1, help="scene-making processes (0: none)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        import torch  # noqa: F401
    except ImportError:
        print("error: training needs torch: pip install -e '.[torch]'", file=sys.stderr)
        return 2
    rec = train(
        args.out,
        args.minutes,
        args.art,
        args.seed,
        args.batch,
        args.lr,
        args.max_steps,
        args.threads,
        args.workers,
        args.pool,
    )
    print(json.dumps({k: v for k, v in rec.items() if k != "history"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
