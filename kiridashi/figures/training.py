"""The training loop kiridashi's nets share (figure net, mask net; needs ``torch``).

From scratch (no pretrained weights), AdamW with a one-cycle learning rate over a time budget
(or a step count), batches made in background processes, the model exported to ONNX with a
JSON training record beside it. The nets' own modules (:mod:`kiridashi.figures.train`,
:mod:`kiridashi.figures.mask_train`) give the batches, the losses and the record's details.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("kiridashi.figures.training")

DEFAULT_POOL = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "sprites"
# the MIT-licensed folders of the sprite pool (its LICENSES.md): LilyNovelPlayer (MIT) and
# Moonlight Walks (MIT + a naming clause); renjs and ossified are CC-BY-SA, left out by default
MIT_POOL_FOLDERS = ("lily", "moonlight")


@dataclass(frozen=True)
class Recipe:
    """What a training run is given (the command line of :func:`arguments`)."""

    out: Path
    minutes: float
    art: str = "pool"
    seed: int = 0
    batch: int = 16
    lr: float = 3e-3
    max_steps: int | None = None
    threads: int = 1
    workers: int = 1
    pool: Path | None = DEFAULT_POOL
    pool_folders: tuple[str, ...] = MIT_POOL_FOLDERS


def one_cycle(progress: float) -> float:
    """Learning-rate share at ``progress`` in [0, 1] of the budget: a warm-up over the first
    5 %, then a cosine down to 2 % of the peak."""
    if progress < 0.05:
        return progress / 0.05
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * (progress - 0.05) / 0.95))


def stream(make: Callable[[int], Iterator[tuple]], seed: int, workers: int) -> Iterator[tuple]:
    """The numpy batches of ``make(seed)``, made in ``workers`` background processes (worker
    ``i`` runs ``make(seed + 1000 * i)``; 0: in this process)."""
    if workers <= 0:
        yield from make(seed)
        return
    import torch

    class Batches(torch.utils.data.IterableDataset):
        def __iter__(self):
            info = torch.utils.data.get_worker_info()
            wid = info.id if info is not None else 0
            return make(seed + 1000 * wid)

    loader = torch.utils.data.DataLoader(
        Batches(), batch_size=None, num_workers=workers, prefetch_factor=4
    )
    for arrays in loader:
        yield tuple(a.numpy() for a in arrays)


def fit(
    model,
    batches: Iterator[tuple],
    losses: Callable,
    names: Sequence[str],
    weights: Sequence[float],
    lr: float,
    minutes: float,
    max_steps: int | None = None,
) -> dict:
    """Train ``model`` on ``batches`` for ``minutes`` (or ``max_steps``): the loss is
    ``sum(weights[i] * losses(model, *tensors)[i])``. Returns steps, seconds, the running mean
    of each loss (``names``) at the end and every 50 steps."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    budget = minutes * 60.0
    t0 = time.monotonic()
    history: list[dict] = []
    running = np.zeros(len(names))
    step = 0
    for step, arrays in enumerate(batches, start=1):
        elapsed = time.monotonic() - t0
        progress = min(1.0, step / max_steps) if max_steps else min(1.0, elapsed / budget)
        scale = one_cycle(progress)
        for g in opt.param_groups:
            g["lr"] = lr * max(scale, 0.02)
        model.train()
        terms = losses(model, *(torch.from_numpy(np.asarray(a)) for a in arrays))
        loss = sum(w * t for w, t in zip(weights, terms, strict=True))
        opt.zero_grad()
        loss.backward()
        opt.step()
        now = np.array([t.item() for t in terms])
        running = 0.95 * running + 0.05 * now if step > 1 else now
        if step % 50 == 0 or step == 1:
            rec = {"step": step, "seconds": round(elapsed, 1), "lr": round(lr * scale, 6)}
            rec.update(dict(zip(names, np.round(running, 4).tolist(), strict=True)))
            history.append(rec)
            log.info("%s", rec)
        if (max_steps and step >= max_steps) or (not max_steps and elapsed >= budget):
            break
    return {
        "steps": step,
        "seconds": round(time.monotonic() - t0, 1),
        "final_losses": dict(zip(names, np.round(running, 4).tolist(), strict=True)),
        "history": history,
    }


def export_onnx(model, out: Path) -> None:
    """``model`` to ONNX at ``out`` (input ``image`` N x 3 x H x W, output ``maps``), atomically."""
    import torch

    model.eval()
    tmp = out.with_suffix(".tmp.onnx")
    dummy = torch.zeros(1, 3, 192, 320)
    kwargs = {
        "input_names": ["image"],
        "output_names": ["maps"],
        "dynamic_axes": {"image": {0: "n", 2: "h", 3: "w"}, "maps": {0: "n", 2: "h4", 3: "w4"}},
        "opset_version": 17,
    }
    try:
        torch.onnx.export(model, dummy, str(tmp), dynamo=False, **kwargs)
    except TypeError:  # torch without the dynamo switch
        torch.onnx.export(model, dummy, str(tmp), **kwargs)
    os.replace(tmp, out)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save(model, recipe: Recipe, done: dict, details: dict, module: str) -> dict:
    """Export ``model`` to ``recipe.out`` and write its training record (the recipe, what
    :func:`fit` returned as ``done``, the net's ``details``, torch version, sha256, command) as
    ``<out>.json``, atomically. Returns the record."""
    import torch

    out = recipe.out
    out.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(model, out)
    record = {
        "model": f"{type(model).__module__}.{type(model).__name__}",
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "steps": done["steps"],
        "batch": recipe.batch,
        "threads": torch.get_num_threads(),
        "workers": recipe.workers,
        "seconds": done["seconds"],
        "seed": recipe.seed,
        "lr": recipe.lr,
        **details,
        "final_losses": done["final_losses"],
        "history": done["history"],
        "torch": torch.__version__,
        "sha256": sha256(out),
        "command": " ".join([f"python -m {module}", *sys.argv[1:]]),
    }
    tmp = out.with_name(out.name + ".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out.with_name(out.name + ".json"))
    return record


def start(recipe: Recipe) -> None:
    """Seed torch and set its threads for a run."""
    import torch

    torch.manual_seed(recipe.seed)
    if recipe.threads:
        torch.set_num_threads(recipe.threads)


def arguments(doc: str, defaults: Recipe) -> argparse.ArgumentParser:
    """The command line both training scripts take (their defaults differ)."""
    d = defaults
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--out", type=Path, default=d.out, help="ONNX file to write")
    ap.add_argument("--minutes", type=float, default=d.minutes, help="training time budget")
    ap.add_argument("--max-steps", type=int, default=None, help="stop after N steps instead")
    ap.add_argument("--art", choices=("pool", "renpy", "procedural"), default=d.art)
    ap.add_argument(
        "--pool", type=Path, default=d.pool, help="sprite pool: sprites/ + backgrounds/"
    )
    ap.add_argument(
        "--pool-folders", nargs="+", default=list(d.pool_folders), metavar="FOLDER",
        help="folders of the pool's sprites/ and backgrounds/ to use (default: the MIT ones; "
        "others change the weights' licence)",
    )  # fmt: skip
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--batch", type=int, default=d.batch)
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: all cores)")
    ap.add_argument("--workers", type=int, default=1, help="scene-making processes (0: none)")
    return ap


def run(argv: list[str] | None, doc: str, defaults: Recipe, train: Callable[[Recipe], dict]) -> int:
    """Parse the command line (:func:`arguments` with ``defaults``) and ``train`` the recipe;
    prints the record without its history. Exit 2 with one line without torch."""
    args = arguments(doc, defaults).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        import torch  # noqa: F401
    except ImportError:
        print("error: training needs torch: pip install -e '.[torch]'", file=sys.stderr)
        return 2
    rec = train(Recipe(**{**vars(args), "pool_folders": tuple(args.pool_folders)}))
    print(json.dumps({k: v for k, v in rec.items() if k != "history"}, indent=2))
    return 0
