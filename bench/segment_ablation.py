"""What each step of the default segmenter adds, from real `dvc exp run -S` experiments.

    python -m bench.segment_ablation [--images DIR] [--steps selfie colour ...] [--jobs 2]
        [--change NAME=OVERRIDE[;OVERRIDE...] ...] [--out bench/results/segment_ablation.json]

A scratch git + DVC copy of this repo gets the images (default: the dev set) as ``data/input``.
``dvc exp run -n baseline`` runs the default pipeline, then one experiment per step,
``dvc exp run -n no-STEP -S segment.STEP.enabled=false``; every experiment shares one result
cache, so preprocess and detect are computed once and each experiment recomputes only segment,
merge and evaluate. The dev set's ``alpha/`` folder (per-character masks of the multi images) is copied beside
``data/input`` so the evaluate stage counts their characters. The table (``dvc exp show --json``) lists, per experiment, the single-character
mean IoU and boundary F, the multi-character mean union IoU and the worst image IoU, and the
change against the baseline: a step's "adds" is baseline minus its experiment.

``--change NAME=OVERRIDES`` adds an experiment ``no-NAME`` with any ``-S`` overrides (``;``
between them), for refinements that are a setting rather than a step, e.g.
``--change 'holes=merge.max_hole_fraction=0.01'``.

Steps default to every ``segment.<step>`` section of the composed config that has
``enabled: true``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO, scratch_dvc_repo
from kiridashi.history import read_dvc_experiments

DEV = REPO.parent / "shared" / "datasets" / "dev" / "images"
METRICS = ("single_mean_iou", "single_mean_boundary_f", "multi_mean_iou", "mean_iou", "min_iou")


def default_steps() -> list[str]:
    from kiridashi.config import compose

    seg = compose()["segment"]
    return [k for k, v in seg.items() if isinstance(v, dict) and v.get("enabled") is True]


def markdown(rows: list[dict]) -> str:
    head = "| experiment | " + " | ".join(METRICS) + " |"
    lines = [head, "|" + "---|" * (len(METRICS) + 1)]
    for r in rows:
        cells = []
        for m in METRICS:
            v, d = r.get(m), r.get(f"delta_{m}")
            cells.append("-" if v is None else f"{v:.3f}" + ("" if d is None else f" ({d:+.3f})"))
        lines.append(f"| {r['experiment']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, default=DEV)
    parser.add_argument("--steps", nargs="*", default=None)
    parser.add_argument("--change", action="append", default=[], metavar="NAME=OVERRIDES")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/segment_ablation.json")
    parser.add_argument("--keep", action="store_true", help="keep the scratch repo")
    args = parser.parse_args()
    steps = args.steps if args.steps is not None else default_steps()
    work = Path(tempfile.mkdtemp(prefix="kiridashi-ablation-"))
    env = dict(os.environ, KIRIDASHI_CACHE_DIR=str(work / "cache"), KIRIDASHI_LOG="WARNING")
    repo, denv = scratch_dvc_repo(work, args.images, env)
    alpha = args.images.parent / "alpha"  # per-character GT of multi images (dev layout)
    if alpha.is_dir():
        shutil.copytree(alpha, repo / "data" / "alpha")
    dvc = [sys.executable, "-m", "dvc", "exp", "run"]
    runs = [("baseline", [])] + [
        (f"no-{step}", ["-S", f"segment.{step}.enabled=false"]) for step in steps
    ]
    for change in args.change:
        name, _, overrides = change.partition("=")
        if not name or not overrides:
            raise SystemExit(f"--change needs NAME=OVERRIDE[;OVERRIDE...], got {change!r}")
        runs.append((f"no-{name}", [a for o in overrides.split(";") for a in ("-S", o)]))
    seconds = {}
    for name, extra in runs:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [*dvc, "-n", name, "-S", f"jobs={args.jobs}", *extra],
            cwd=repo,
            env=denv,
            capture_output=True,
            text=True,
        )
        seconds[name] = round(time.perf_counter() - t0, 1)
        if proc.returncode != 0:
            raise SystemExit(f"dvc exp run {name} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
        print(f"{name}: {seconds[name]} s", flush=True)
    metrics = {r["dvc_exp"]: r["metrics"] for r in read_dvc_experiments(repo)}
    base = metrics["baseline"]
    rows = []
    for name, extra in runs:
        m = metrics[name]
        row = {"experiment": name, "command": " ".join(["dvc exp run -n", name, *extra])}
        for k in METRICS:
            row[k] = m.get(k)
            if name != "baseline" and m.get(k) is not None and base.get(k) is not None:
                row[f"delta_{k}"] = round(m[k] - base[k], 5)
        row["seconds"] = seconds[name]
        rows.append(row)
    doc = {
        "images": str(args.images),
        "steps": steps,
        "rows": rows,
        "note": "delta = experiment - baseline: a step adds -delta",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(markdown(rows))
    if args.keep:
        print(f"scratch repo kept at {repo}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
