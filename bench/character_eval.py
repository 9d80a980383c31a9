"""Character recall / precision and cut-out quality of ``kiridashi extract``, per image set
(issue #13's acceptance benchmark).

    python -m bench.character_eval [--sets dev dev2] [--images DIR ...] [--out-dir DIR]
                                   [--jobs N] [--set KEY=VALUE ...] [--name NAME]
    python -m bench.character_eval --results-only OUTDIR [OUTDIR ...] [--name NAME]

For each set (``--sets NAME``: ``../shared/datasets/NAME/images`` beside the repo; default dev
and dev2; ``--images DIR``: any folder of images with ``NAME_gt.png`` beside them) this runs
the command a user runs from a fresh clone, as a subprocess from the repo root::

    kiridashi extract IMAGES OUT [jobs=N] [--set overrides]

(the console script next to ``sys.executable``) with ``KIRIDASHI_MODELS_DIR`` removed from the
environment and a fresh private ``KIRIDASHI_CACHE_DIR`` (cold run: nothing reused). The run
history goes to a private ``KIRIDASHI_HISTORY`` file too, so the benchmark does not add lines
to the checkout's ``history/runs.jsonl``. OUT is ``--out-dir/SET`` (default
``bench/work/character_eval/SET``, git-ignored; an old output there is replaced).
``--results-only`` scores existing output folders instead (no run; timing is the pipeline's
own ``summary.seconds``). ``--rev REV`` runs a fresh ``git clone`` of a committed revision
instead of the work tree (its code first on ``PYTHONPATH``, cwd in the clone): numbers that
belong to one commit even while the work tree has uncommitted edits.

Scored per set from ``OUT/extraction_results.json`` and the ground truth the run recorded:

- GT characters per image: :func:`kiridashi.evaluate.gt_character_boxes` (the per-character
  masks ``alpha/NAME_gt_<i>.png`` when present, else the large components of ``NAME_gt.png``),
- predicted characters: the records' ``characters`` (each one crop), matched by their crop
  ``box`` (XYXY, original px) one-to-one at IoU >= 0.5 (:func:`kiridashi.metrics.match_boxes`,
  ``bench.detect_eval.MATCH_IOU``). The quality report's own ``character_recall`` /
  ``character_precision`` match the detector's ``character_box`` instead; both are kept,
- recall, precision, ``crops_equal_characters`` (share of images whose number of crops equals
  their number of GT characters, background-only scenes included), the images with a missed
  GT character, those among them with no crop at all, the images with an extra crop and the
  background-only scenes with a crop,
- from ``OUT/unified_quality_report.json`` (not recomputed): ``single_mean_iou``,
  ``single_mean_boundary_f``, ``multi_mean_iou`` (union mask), and the images with a character
  whose IoU is below 0.80,
- seconds per image (wall time of the whole command, start-up and report included).

Prints a markdown table (sets side by side) and the lists; writes
``bench/results/character_eval.json`` (``character_eval_NAME.json`` with ``--name``) with the
command, git revision (and uncommitted changes to the code), date and overrides.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.detect_eval import MATCH_IOU, kind_of
from kiridashi import io as kio
from kiridashi.evaluate import REPORT, gt_character_boxes
from kiridashi.metrics import match_boxes

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
DEFAULT_SETS = ("dev", "dev2")
RESULTS = "extraction_results.json"
LOW_IOU = 0.80
# code and config a run depends on: uncommitted changes there are recorded with the results
CODE_PATHS = ("kiridashi", "conf", "params.yaml", "pyproject.toml")

Box = tuple[float, float, float, float]


# ---------------------------------------------------------------------------- scoring (pure)


def score_image(pred: list[Box], gt: list[Box]) -> dict:
    """Counts for one image: pred / gt XYXY boxes, matched one-to-one at IoU >= MATCH_IOU."""
    matches = match_boxes(pred, gt, MATCH_IOU)
    return {
        "gt": len(gt),
        "pred": len(pred),
        "matched": len(matches),
        "ious": [round(float(v), 3) for _, _, v in sorted(matches, key=lambda m: m[1])],
    }


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _group(n_gt: int) -> str:
    return "empty" if n_gt == 0 else "single" if n_gt == 1 else "multi"


def score_set(results: dict, gt_boxes: dict[str, list[Box]], report: dict | None = None) -> dict:
    """Scores of one output folder.

    results: the ``extraction_results.json`` content; gt_boxes: source name -> GT character
    boxes (XYXY) of every image with ground truth (others are not scored); report: the
    ``unified_quality_report.json`` content (quality numbers), or None.
    """
    rows = []
    for rec in results.get("images", []):
        name = rec["source"]
        if name not in gt_boxes:
            continue
        ok = rec.get("status") == "ok"
        pred = [tuple(c["box"]) for c in rec.get("characters", [])] if ok else []
        row = {"image": name, "status": rec.get("status"), **score_image(pred, gt_boxes[name])}
        row["kind"] = _group(row["gt"])
        rows.append(row)
    quality = _quality(report, {r["image"] for r in rows}) if report else {}
    for row in rows:
        row["iou"] = quality.get("iou", {}).get(row["image"])

    gt = sum(r["gt"] for r in rows)
    pred = sum(r["pred"] for r in rows)
    matched = sum(r["matched"] for r in rows)
    with_chars = [r for r in rows if r["gt"]]
    empties = [r for r in rows if not r["gt"]]
    crops_equal = sum(r["pred"] == r["gt"] for r in rows)
    out = {
        "images": len(rows),
        "single": sum(r["kind"] == "single" for r in rows),
        "multi": sum(r["kind"] == "multi" for r in rows),
        "empty": len(empties),
        "gt_characters": gt,
        "predicted_characters": pred,
        "matched": matched,
        "recall": _ratio(matched, gt),
        "precision": _ratio(matched, pred),
        "crops_equal_characters": _ratio(crops_equal, len(rows)),
        "crops_equal_characters_images": crops_equal,
        "images_with_missed_character": [r["image"] for r in with_chars if r["matched"] < r["gt"]],
        "images_without_output": [r["image"] for r in with_chars if r["pred"] == 0],
        "images_with_extra_character": [r["image"] for r in with_chars if r["pred"] > r["matched"]],
        "empty_scenes_with_crop": [r["image"] for r in empties if r["pred"]],
        "not_processed": [r["image"] for r in rows if r["status"] != "ok"],
        # images whose GT character count disagrees with their name (single / multi / empty)
        "gt_count_differs_from_name": [
            r["image"] for r in rows if kind_of(Path(r["image"]).name) != r["kind"]
        ],
    }
    for kind in ("single", "multi"):
        sub = [r for r in rows if r["kind"] == kind]
        g, m = sum(r["gt"] for r in sub), sum(r["matched"] for r in sub)
        out[f"{kind}_recall"] = _ratio(m, g)
    out.update({k: v for k, v in quality.items() if k != "iou"})
    out["low_iou_images"] = sorted(
        ({"image": r["image"], "iou": r["iou"]} for r in with_chars
         if r["iou"] is not None and r["iou"] < LOW_IOU),
        key=lambda d: d["iou"],
    )  # fmt: skip
    out["per_image"] = rows
    return out


def _quality(report: dict, names: set[str]) -> dict:
    """The report's quality numbers (as it computed them) and its per-image IoU."""
    s = report.get("summary", {})
    keys = (
        "single_images",
        "single_mean_iou",
        "single_mean_boundary_f",
        "multi_images",
        "multi_mean_iou",
        "multi_mean_boundary_f",
        "mean_iou",
        "character_recall",
        "character_precision",
        "face_detection_rate",
        "empty_scenes",
        "empty_scenes_clean",
    )
    out = {f"report_{k}" if k.startswith(("character_", "mean_")) else k: s.get(k) for k in keys}
    out["iou"] = {
        e["source"]: e["metrics"]["iou"]
        for e in report.get("images", [])
        if e.get("scored") and e["source"] in names
    }
    return out


# ---------------------------------------------------------------------------- inputs, runs


def load_gt(results: dict, input_dir: Path) -> dict[str, list[Box]]:
    """source -> GT character boxes, for every record with a readable GT file."""
    out = {}
    for rec in results.get("images", []):
        if not rec.get("gt"):
            continue
        path = Path(rec["gt"])
        path = path if path.is_absolute() else input_dir / path
        try:
            union = kio.load_mask(path)[0] > 0
        except (kio.BadInput, FileNotFoundError):
            continue
        out[rec["source"]] = [tuple(map(float, b)) for b in gt_character_boxes(path, union)]
    return out


def set_key(images: Path) -> str:
    images = images.resolve()
    return images.parent.name if images.name == "images" else images.name


def _rel(path: Path) -> str:
    """``path`` relative to the repo root when it is in it or beside it (as a user types it,
    e.g. ``../shared/datasets/dev/images``), else absolute."""
    rel = os.path.relpath(path.resolve(), REPO)
    return str(path.resolve()) if rel.startswith(os.path.join(os.pardir, os.pardir)) else rel


def clean_env(cache_dir: Path, history: Path) -> dict:
    """The caller's environment without ``KIRIDASHI_MODELS_DIR``, with a private cache and
    history file."""
    env = {k: v for k, v in os.environ.items() if k != "KIRIDASHI_MODELS_DIR"}
    env["KIRIDASHI_CACHE_DIR"] = str(cache_dir)
    env["KIRIDASHI_HISTORY"] = str(history)
    return env


def run_extract(images: Path, out: Path, overrides: list[str], rev: str | None = None) -> dict:
    """``kiridashi extract images out *overrides``, cold; wall seconds.

    Run from the repo root (the work tree's code), or with ``rev`` from a fresh ``git clone``
    of that revision in a temp folder (its code first on ``PYTHONPATH``, cwd there: its own
    ``models/``, none).
    """
    exe = Path(sys.executable).parent / "kiridashi"
    if out.exists():
        if not (out / RESULTS).is_file() and any(out.iterdir()):
            raise SystemExit(
                f"{out} exists and is not a kiridashi output folder - not replacing it"
            )
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    log_path = out.parent / f"{out.name}.log"
    with tempfile.TemporaryDirectory(prefix="kiridashi-bench-") as tmp:
        env = clean_env(Path(tmp) / "cache", Path(tmp) / "history.jsonl")
        cwd, where = REPO, "work tree"
        if rev is not None:
            cwd = clone_revision(rev, Path(tmp) / "clone")
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(cwd), env.get("PYTHONPATH")]))
            where = f"fresh clone of {rev} ({git_sha(rev)[:12]})"
        paths = (
            (_rel(images), _rel(out))
            if rev is None
            else (str(images.resolve()), str(out.resolve()))
        )
        cmd = [str(exe), "extract", *paths, *overrides]
        shown = ["kiridashi", *cmd[1:]]
        code = subprocess.run(
            [sys.executable, "-c", "import kiridashi; print(kiridashi.__file__)"],
            cwd=cwd, env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        print(f"$ {shlex.join(shown)}  ({where}: {code})", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        with open(log_path, "w", encoding="utf-8") as log:
            proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise SystemExit(f"{shlex.join(shown)} exited {proc.returncode}:\n{tail}")
    return {
        "command": shlex.join(shown),
        "code": where,
        "wall_seconds": round(wall, 2),
        "log": _rel(log_path),
    }


def git_sha(rev: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def clone_revision(rev: str, dst: Path) -> Path:
    """A fresh clone of this repo at ``rev`` (objects shared, the source repo untouched)."""
    sha = git_sha(rev)
    for cmd in (
        ["git", "clone", "--quiet", "--shared", "--no-checkout", str(REPO), str(dst)],
        ["git", "-C", str(dst), "checkout", "--quiet", "--detach", sha],
    ):
        subprocess.run(cmd, check=True, capture_output=True)
    return dst


def score_output(out: Path) -> dict:
    results = kio.read_json(out / RESULTS)
    input_dir = Path(results.get("input_dir") or ".")
    if not input_dir.is_absolute():
        input_dir = REPO / input_dir  # the run's cwd
    report_path = out / REPORT
    report = kio.read_json(report_path) if report_path.is_file() else None
    scores = score_set(results, load_gt(results, input_dir), report)
    scores["input_dir"] = _rel(input_dir)
    scores["output_dir"] = _rel(out)
    scores["params_digest"] = results.get("params_digest")
    summary = results.get("summary", {})
    scores["pipeline_seconds"] = summary.get("seconds")
    scores["processed"] = summary.get("processed")
    scores["skipped_files"] = results.get("skipped", [])
    return scores


def git_state() -> dict:
    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return proc.stdout.rstrip()

    return {
        "revision": git("rev-parse", "HEAD"),
        "uncommitted_code": git("status", "--porcelain", "--", *CODE_PATHS).splitlines(),
    }


# ---------------------------------------------------------------------------- output


def _f(v, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def table(sets: dict[str, dict]) -> str:
    head = (
        "| set | recall | precision | crops=chars | images with a missed char "
        "| empty scenes with a crop | single IoU | single BF | multi IoU | < 0.80 | s/image |"
    )
    lines = [head, "|" + "---|" * 11]
    for key, s in sets.items():
        with_chars = s["single"] + s["multi"]
        cells = [
            key,
            f"{_f(s['recall'])} ({s['matched']}/{s['gt_characters']})",
            f"{_f(s['precision'])} ({s['matched']}/{s['predicted_characters']})",
            f"{_f(s['crops_equal_characters'])} ({s['crops_equal_characters_images']}/{s['images']})",
            f"{len(s['images_with_missed_character'])}/{with_chars}"
            f" ({len(s['images_without_output'])} without a crop)",
            f"{len(s['empty_scenes_with_crop'])}/{s['empty']}",
            _f(s.get("single_mean_iou")),
            _f(s.get("single_mean_boundary_f")),
            _f(s.get("multi_mean_iou")),
            f"{len(s['low_iou_images'])}/{with_chars}",
            _f(s.get("seconds_per_image"), 2),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def lists(sets: dict[str, dict]) -> str:
    lines = []
    for key, s in sets.items():
        lines.append(
            f"\n{key}: {s['images']} images ({s['single']} single, {s['multi']} multi, "
            f"{s['empty']} background-only), {s['gt_characters']} GT characters, "
            f"{s['predicted_characters']} crops; single recall {_f(s['single_recall'])}, "
            f"multi recall {_f(s['multi_recall'])}; report (character_box) recall "
            f"{_f(s.get('report_character_recall'))} precision "
            f"{_f(s.get('report_character_precision'))}; "
            f"{_f(s.get('wall_seconds'), 1)} s wall"
        )
        rows = {r["image"]: r for r in s["per_image"]}

        def item(name: str, rows=rows) -> str:
            r = rows[name]
            return f"  - {name} (gt {r['gt']}, crops {r['pred']}, matched {r['matched']})"

        for label, field in (
            ("missed a character", "images_with_missed_character"),
            ("no crop at all", "images_without_output"),
            ("extra crop", "images_with_extra_character"),
            ("background-only scene with a crop", "empty_scenes_with_crop"),
            ("not processed", "not_processed"),
            ("GT count differs from the name", "gt_count_differs_from_name"),
        ):
            if s[field]:
                lines.append(f"- {label} ({len(s[field])}):")
                lines += [item(n) for n in s[field]]
        if s["low_iou_images"]:
            lines.append(f"- IoU < {LOW_IOU:.2f} ({len(s['low_iou_images'])}):")
            lines += [f"  - {d['image']}: {d['iou']:.4f}" for d in s["low_iou_images"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sets", nargs="*", default=None, help="dataset names (default dev dev2)")
    parser.add_argument("--images", nargs="*", type=Path, default=[], help="image folders")
    parser.add_argument("--out-dir", type=Path, default=REPO / "bench" / "work" / "character_eval")
    parser.add_argument("--jobs", type=int, default=None, help="passed as jobs=N")
    parser.add_argument(
        "--results-only", nargs="+", type=Path, default=None, metavar="OUTDIR",
        help="score existing output folders, no run",
    )  # fmt: skip
    parser.add_argument(
        "--set", nargs="*", action="extend", default=[], help="Hydra overrides (repeatable)"
    )
    parser.add_argument("--name", default=None, help="results file character_eval_NAME.json")
    parser.add_argument(
        "--rev", default=None,
        help="run a fresh git clone of this revision (default: the work tree's code)",
    )  # fmt: skip
    args = parser.parse_args(argv)

    overrides = list(args.set) + ([f"jobs={args.jobs}"] if args.jobs is not None else [])
    sets: dict[str, dict] = {}
    if args.results_only:
        for out in args.results_only:
            scores = score_output(out)
            n = scores["processed"] or scores["images"]
            secs = scores["pipeline_seconds"]
            scores["seconds_per_image"] = round(secs / n, 3) if secs is not None and n else None
            scores["timing"] = "pipeline summary.seconds (results-only: no run)"
            sets[set_key(REPO / scores["input_dir"])] = scores
    else:
        names = args.sets if args.sets is not None else ([] if args.images else DEFAULT_SETS)
        folders = [DATASETS / n / "images" for n in names] + list(args.images)
        for images in folders:
            if not images.is_dir():
                raise SystemExit(f"no image folder {images}")
            key = set_key(images)
            run = run_extract(images, args.out_dir / key, overrides, args.rev)
            scores = score_output(args.out_dir / key)
            n = scores["processed"] or scores["images"]
            scores.update(run)
            scores["seconds_per_image"] = round(run["wall_seconds"] / n, 3) if n else None
            scores["timing"] = "wall seconds of the command (start-up and report included)"
            sets[key] = scores
            print(table({key: scores}), file=sys.stderr, flush=True)

    md = table(sets)
    print(md)
    print(lists(sets))
    name = f"character_eval_{args.name}.json" if args.name else "character_eval.json"
    out_path = REPO / "bench" / "results" / name
    out_path.parent.mkdir(parents=True, exist_ok=True)
    state = git_state()
    if args.rev:  # the run used a clean clone: the work tree's edits are not in the numbers
        state = {
            "revision": git_sha(args.rev),
            "uncommitted_code": [],
            "work_tree_edits_not_used": state["uncommitted_code"],
        }
    doc = {
        "command": shlex.join(["python", "-m", "bench.character_eval", *(argv or sys.argv[1:])]),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **state,
        "code": f"fresh clone of {args.rev} ({git_sha(args.rev)})" if args.rev else "work tree",
        "overrides": overrides,
        "env": "KIRIDASHI_MODELS_DIR unset, fresh KIRIDASHI_CACHE_DIR and KIRIDASHI_HISTORY",
        "models_dir_contents": sorted(p.name for p in (REPO / "models").glob("*")),
        "match_iou": MATCH_IOU,
        "low_iou": LOW_IOU,
        "table": md.splitlines(),
        "sets": sets,
    }
    out_path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"\nwrote {_rel(out_path)}")


if __name__ == "__main__":
    main()
