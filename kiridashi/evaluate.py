"""The unified quality report of an output folder: GT metrics where ground truth exists.

Input is an ``extraction_results.json``; the report (``unified_quality_report.json``) holds one
entry per image and a summary. Every processed image also gets the no-reference checks of
:mod:`kiridashi.checks` (``flags``: suspicious cut-outs, with or without ground truth), the
keypoints that fall outside their character's mask and pose statistics. ``metrics.json`` (DVC metrics) and ``per_image.csv`` (DVC plots)
are flat views of it.

Ground-truth characters for detection metrics come from per-character masks
``NAME_gt_<k>.png`` (beside the GT or in a sibling ``alpha/`` folder) when they exist, else from
the large connected components of the union GT mask.
"""

from __future__ import annotations

import csv
import io as _io
import json
import logging
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import xxhash

from kiridashi import checks as kchecks
from kiridashi import io as kio
from kiridashi import metrics as km
from kiridashi.cache import ResultCache, code_version, make_key
from kiridashi.crops import character_masks
from kiridashi.types import confident

log = logging.getLogger(__name__)

REPORT = "unified_quality_report.json"
SCORE_KEYS = ("iou", "dice", "precision", "recall", "boundary_f")
CHARACTER_MIN_COMPONENT = 0.15  # GT components >= this share of the largest count as characters
POSE_DEFAULTS = {"confidence": 0.5, "min_points": 8}


def gt_character_boxes(gt_path: Path, gt: np.ndarray) -> list[tuple[int, int, int, int]]:
    """XYXY boxes of the ground-truth characters of one image (see module docstring)."""
    by_folder: dict[Path, list[tuple[int, int, int, int]]] = {}
    for part in gt_part_files(gt_path):
        try:
            mask, _ = kio.load_mask(part)
        except kio.BadInput:
            continue
        if mask.shape == gt.shape and (box := km.mask_box(mask)) is not None:
            by_folder.setdefault(part.parent, []).append(box)
    if by_folder:  # the GT's own folder first, then ../alpha
        return next(iter(by_folder.values()))
    n, _, stats, _ = cv2.connectedComponentsWithStats(gt.astype(np.uint8), connectivity=8)
    if n <= 1:
        return []
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.nonzero(areas >= CHARACTER_MIN_COMPONENT * areas.max())[0] + 1
    return [
        (
            int(stats[i, 0]),
            int(stats[i, 1]),
            int(stats[i, 0] + stats[i, 2]),
            int(stats[i, 1] + stats[i, 3]),
        )
        for i in keep
    ]


def gt_part_files(gt_path: Path) -> list[Path]:
    """Per-character GT masks ``NAME_gt_<k>.png`` of a GT file (beside it or in ``../alpha``)."""
    stem = gt_path.stem
    found: list[Path] = []
    for folder in (gt_path.parent, gt_path.parent.parent / "alpha"):
        if folder.is_dir():
            found += sorted(folder.glob(f"{stem}_[0-9]*.png"))
    return found


def entry_inputs_digest(record: dict, out_dir: Path, input_dir: Path) -> str:
    """xxh3-128 of everything :func:`evaluate_image` reads for one record: the record itself,
    the bytes of its source image, mask, crops, GT and per-character GT files (a missing file
    counts as missing). Equal digests (and config) give equal report entries."""
    h = xxhash.xxh3_128()
    h.update(json.dumps(record, sort_keys=True, default=str).encode("utf-8"))
    files: list[Path] = [input_dir / record["source"]]
    if record.get("mask"):
        files.append(out_dir / record["mask"])
    files += [out_dir / c["crop"] for c in record.get("characters", []) if c.get("crop")]
    if record.get("gt"):
        gt_path = Path(record["gt"])
        gt_path = gt_path if gt_path.is_absolute() else input_dir / gt_path
        files += [gt_path, *gt_part_files(gt_path)]
    for path in files:
        h.update(str(path.name).encode("utf-8"))
        try:
            h.update(path.read_bytes())
        except OSError:
            h.update(b"\0missing")
    return h.hexdigest()


def pose_points(character: dict, min_conf: float) -> dict[str, list[float]]:
    """The character's ``pose.*`` keypoints with confidence >= ``min_conf``."""
    return {
        name: p
        for name, p in (character.get("keypoints") or {}).items()
        if name.startswith("pose.") and confident(p, min_conf)
    }


def inspect_characters(
    rgb: np.ndarray, union: np.ndarray, record: dict, out_dir: Path, cfg: dict
) -> dict[str, Any]:
    """No-reference flags, keypoints outside the masks and pose facts of one processed image.

    rgb: HxWx3 uint8; union: HxW bool (the written mask). Returns ``flags`` (list of
    {check, character, score, reason}), ``keypoints_outside`` ({character index: [names]}),
    ``pose`` ({characters, with_pose, points, points_inside}).
    """
    check_cfg = cfg.get("checks") or {}
    pose_cfg = {**POSE_DEFAULTS, **(cfg.get("pose") or {})}
    min_kp = float(check_cfg.get("keypoint_confidence", kchecks.DEFAULTS["keypoint_confidence"]))
    tolerance = round(km.boundary_tolerance(union.shape))
    flags: list[dict] = []
    outside: dict[str, list[str]] = {}
    pose = {"characters": 0, "with_pose": 0, "points": 0, "points_inside": 0}
    chars = record.get("characters", [])
    for ch, mask in zip(chars, character_masks(record, out_dir, union), strict=True):
        k = int(ch.get("index", len(outside)))
        flags += kchecks.check_character(rgb, mask, ch, k, check_cfg)
        names, _ = kchecks.keypoint_names_outside(ch, mask, min_kp, tolerance)
        outside[str(k)] = names
        points = pose_points(ch, float(pose_cfg["confidence"]))
        pose["characters"] += 1
        pose["with_pose"] += len(points) >= int(pose_cfg["min_points"])
        pose["points"] += len(points)
        out_names, _ = kchecks.keypoint_names_outside({"keypoints": points}, mask, 0.0, tolerance)
        pose["points_inside"] += len(points) - len(out_names)
    return {"flags": flags, "keypoints_outside": outside, "pose": pose}


def evaluate_image(
    record: dict,
    out_dir: Path,
    input_dir: Path,
    match_iou: float = 0.5,
    cfg: dict | None = None,
) -> dict[str, Any]:
    """One report entry: no-reference checks, GT metrics (or why there are none), detection facts.

    cfg: the ``evaluate`` config section (``checks`` thresholds, ``pose`` settings).
    """
    entry: dict[str, Any] = {
        "source": record["source"],
        "status": record.get("status"),
        "reason": record.get("reason"),
        "notes": list(record.get("notes", [])),
        "gt": record.get("gt"),
        "mask": record.get("mask"),
        "n_characters": len(record.get("characters", [])),
        "face_found": any(c.get("face_box") for c in record.get("characters", [])),
        "metrics": None,
        "scored": False,
        "flags": [],
    }
    if record.get("status") != "ok":
        entry["gt_note"] = "not processed"
        return entry
    try:
        pred, _ = kio.load_mask(out_dir / record["mask"])
    except (kio.BadInput, FileNotFoundError, KeyError) as exc:
        entry["gt_note"] = f"unreadable mask: {exc}"
        return entry
    try:
        rgb = kio.load_image(input_dir / record["source"]).rgb
    except (kio.BadInput, FileNotFoundError) as exc:
        entry["notes"].append(f"no-reference checks skipped: image unreadable ({exc})")
    else:
        if rgb.shape[:2] == pred.shape:
            entry.update(inspect_characters(rgb, pred, record, out_dir, cfg or {}))
        else:
            entry["notes"].append("no-reference checks skipped: mask and image differ in size")
    if not record.get("gt"):
        entry["gt_note"] = "no GT - not scored"
        return entry
    gt_path = Path(record["gt"])
    gt_path = gt_path if gt_path.is_absolute() else input_dir / gt_path
    try:
        gt, notes = kio.load_mask(gt_path)
    except (kio.BadInput, FileNotFoundError) as exc:
        entry["gt_note"] = f"unreadable GT: {exc}"
        return entry
    entry["notes"] += notes
    if gt.shape != pred.shape:
        entry["gt_note"] = (
            f"GT size {gt.shape[1]}x{gt.shape[0]} differs from image "
            f"{pred.shape[1]}x{pred.shape[0]} - not scored"
        )
        log.warning("%s: %s", record["source"], entry["gt_note"])
        return entry
    entry["metrics"] = {k: round(v, 5) for k, v in km.score_masks(pred, gt).to_dict().items()}
    entry["scored"] = True
    gt_boxes = gt_character_boxes(gt_path, gt)
    # detection is judged on the detector's character box, not on the padded crop box (whose
    # size depends on merge.crop_padding, a cosmetic setting)
    pred_boxes = [c.get("character_box") or c["box"] for c in record.get("characters", [])]
    matches = km.match_boxes(pred_boxes, gt_boxes, match_iou)
    entry["characters_gt"] = len(gt_boxes)
    entry["characters_matched"] = len(matches)
    entry["has_character"] = bool(gt_boxes)
    return entry


def _mean(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return round(float(np.mean(vals)), 5) if vals else None


def summarise(entries: list[dict], results: dict) -> dict[str, Any]:
    scored = [e for e in entries if e["scored"]]
    with_chars = [e for e in scored if e.get("has_character")]
    summary: dict[str, Any] = {
        "images": results.get("summary", {}).get("images", len(entries)),
        "processed": sum(e["status"] == "ok" for e in entries),
        "skipped": len(results.get("skipped", [])),
        "scored": len(scored),
        "unmatched_gt": len(results.get("unmatched_gt", [])),
    }
    for key in SCORE_KEYS:
        summary[f"mean_{key}"] = _mean([e["metrics"][key] for e in with_chars])
    summary["min_iou"] = min((e["metrics"]["iou"] for e in with_chars), default=None)
    # images with one GT character vs several (the union mask is scored in both)
    for group, members in (
        ("single", [e for e in with_chars if e.get("characters_gt") == 1]),
        ("multi", [e for e in with_chars if e.get("characters_gt", 0) >= 2]),
    ):
        summary[f"{group}_images"] = len(members)
        for key in ("iou", "boundary_f"):
            summary[f"{group}_mean_{key}"] = _mean([e["metrics"][key] for e in members])
    gt_chars = sum(e.get("characters_gt", 0) for e in scored)
    matched = sum(e.get("characters_matched", 0) for e in scored)
    predicted = sum(e["n_characters"] for e in scored)
    summary["character_recall"] = round(matched / gt_chars, 5) if gt_chars else None
    summary["character_precision"] = round(matched / predicted, 5) if predicted else None
    summary["face_detection_rate"] = (
        round(sum(e["face_found"] for e in with_chars) / len(with_chars), 5) if with_chars else None
    )
    empties = [e for e in scored if not e.get("has_character")]
    summary["empty_scenes"] = len(empties)
    summary["empty_scenes_clean"] = sum(e["n_characters"] == 0 for e in empties)
    pose = [e["pose"] for e in entries if e.get("pose")]
    n_chars, n_points = sum(p["characters"] for p in pose), sum(p["points"] for p in pose)
    summary["pose_detection_rate"] = (
        round(sum(p["with_pose"] for p in pose) / n_chars, 5) if n_chars else None
    )
    summary["pose_landmarks_inside"] = (
        round(sum(p["points_inside"] for p in pose) / n_points, 5) if n_points else None
    )
    summary["flagged_images"] = sum(bool(e.get("flags")) for e in entries)
    for check in kchecks.CHECKS:
        summary[f"flags_{check}"] = sum(
            f["check"] == check for e in entries for f in e.get("flags", [])
        )
    flagged = [e["metrics"]["iou"] for e in with_chars if e.get("flags")]
    clean = [e["metrics"]["iou"] for e in with_chars if not e.get("flags")]
    summary["mean_iou_flagged"] = _mean(flagged)
    summary["mean_iou_unflagged"] = _mean(clean)
    return summary


def resolve_input_dir(recorded: str | None, results_path: Path) -> Path:
    """The input folder of a results file: as recorded when it exists from here, else relative to
    the repository holding the results (DVC stages record ``data/input``), else as recorded."""
    path = Path(recorded or ".")
    if path.is_absolute() or path.is_dir():
        return path
    from kiridashi.cache import find_repo_root

    root = find_repo_root(results_path.resolve().parent)
    return root / path if root is not None and (root / path).is_dir() else path


# modules whose code defines a report entry (the code version of its cache key)
ENTRY_CODE = ("kiridashi.evaluate", "kiridashi.checks", "kiridashi.metrics", "kiridashi.io")
# evaluate settings that do not change a report entry
NOT_ENTRY_PARAMS = ("history", "regression_tolerance", "overlays")


def build_report(
    results_path: Path, cfg: dict | None = None, cache: ResultCache | None = None
) -> dict[str, Any]:
    """The unified quality report for an ``extraction_results.json`` (cfg: ``evaluate`` section).

    With a ``cache``, each image's entry is stored under the digest of everything it reads
    (:func:`entry_inputs_digest`) + the evaluate settings + the code version, so re-evaluating a
    folder where one image changed computes one entry; ``report["entries"]`` counts them.
    """
    cfg = cfg or {}
    results_path = Path(results_path)
    results = kio.read_document(results_path, "an extraction_results.json", "images")
    out_dir = results_path.parent
    input_dir = resolve_input_dir(results.get("input_dir"), results_path)
    match_iou = float(cfg.get("character_match_iou", 0.5))
    params = {k: v for k, v in cfg.items() if k not in NOT_ENTRY_PARAMS}
    version = code_version(*ENTRY_CODE) if cache is not None else ""
    entries, counts = [], {"computed": 0, "reused": 0}
    for record in results["images"]:

        def compute(record=record) -> dict:
            return evaluate_image(record, out_dir, input_dir, match_iou, cfg)

        if cache is None:
            entries.append(compute())
            counts["computed"] += 1
            continue
        digest = entry_inputs_digest(record, out_dir, input_dir)
        key = make_key("evaluate", version, digest, params)
        entry, computed = cache.get_or_compute(key, compute)
        entries.append(entry)
        counts["computed" if computed else "reused"] += 1
    return {
        "schema_version": 1,
        "results": str(results_path),
        "input_dir": str(input_dir),
        "output_dir": str(out_dir),
        "params_digest": results.get("params_digest"),
        "summary": summarise(entries, results),
        "entries": counts,
        "skipped": results.get("skipped", []),
        "unmatched_gt": results.get("unmatched_gt", []),
        "images": entries,
    }


def flat_metrics(report: dict) -> dict[str, Any]:
    """``metrics.json`` content: the summary's headline numbers under short names, so that
    ``dvc exp show`` fits them and the changed parameters into 120 columns
    (:data:`kiridashi.history.METRICS_JSON`; the rest of the summary is in the report)."""
    from kiridashi.history import METRICS_JSON

    summary = report["summary"]
    return {short: summary.get(name) for short, name in METRICS_JSON.items()}


def per_image_csv(report: dict) -> str:
    """``per_image.csv``: one row per scored image (DVC plots source)."""
    buf = _io.StringIO()
    fields = ["source", *SCORE_KEYS, "n_characters", "face_found"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for e in report["images"]:
        if e["scored"]:
            writer.writerow(
                {
                    "source": e["source"],
                    **{k: e["metrics"][k] for k in SCORE_KEYS},
                    "n_characters": e["n_characters"],
                    "face_found": int(e["face_found"]),
                }
            )
    return buf.getvalue()


def write_report(report: dict, report_path: Path) -> None:
    kio.atomic_write_json(report_path, report)


def summary_text(report: dict) -> str:
    s = report["summary"]

    def f(v):
        return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    return (
        f"scored {s['scored']} of {s['processed']} processed ({s['skipped']} skipped): "
        f"IoU {f(s['mean_iou'])}, Dice {f(s['mean_dice'])}, boundary F {f(s['mean_boundary_f'])}, "
        f"face rate {f(s['face_detection_rate'])}, character recall {f(s['character_recall'])}, "
        f"precision {f(s['character_precision'])}, pose rate {f(s.get('pose_detection_rate'))}, "
        f"pose points inside {f(s.get('pose_landmarks_inside'))}; "
        f"{s.get('flagged_images', 0)} images flagged"
    )


def entries_text(report: dict) -> str:
    """``evaluate: computed N, reused M`` (report entries; see :func:`build_report`)."""
    n = report.get("entries") or {}
    return f"evaluate: computed {n.get('computed', 0)}, reused {n.get('reused', 0)}"


def run_evaluation(
    results_path: Path,
    report_dir: Path | None = None,
    metrics_dir: Path | None = None,
    cfg: dict | None = None,
    dashboard: bool = True,
    label: str | None = None,
    cache: ResultCache | None = None,
    record_history: bool = False,
) -> dict:
    """Report, metrics, plots data, history record and dashboard for one output folder.

    report_dir: where ``unified_quality_report.json`` and ``dashboard.html`` go (default: beside
    the results). metrics_dir: where ``metrics.json`` and ``per_image.csv`` go (default: none).
    cache: per-image report entries are reused from it (see :func:`build_report`).
    record_history: append the run to the history (``kiridashi trend``): the DVC pipeline and
    ``kiridashi check`` do, ``kiridashi extract`` only when asked (``--history``), so ad-hoc
    runs into scratch folders stay out of it. ``evaluate.history: false`` turns it off everywhere.
    """
    from kiridashi import history

    cfg = cfg or {}
    results_path = Path(results_path)
    report_dir = Path(report_dir) if report_dir else results_path.parent
    report = build_report(results_path, cfg, cache)
    write_report(report, report_dir / REPORT)
    if metrics_dir is not None:
        kio.atomic_write_json(Path(metrics_dir) / "metrics.json", flat_metrics(report))
        kio.atomic_write_text(Path(metrics_dir) / "per_image.csv", per_image_csv(report))
    runs = []
    if record_history and cfg.get("history", True) and report["summary"]["processed"]:
        try:
            history.append(history.make_record(report, label))
            runs = history.same_dataset(history.load(), report["input_dir"])
        except OSError as exc:
            log.warning("history not recorded: %s", exc)
    if dashboard:
        from kiridashi.report import HISTORY_RUNS, write_dashboard

        write_dashboard(report, report_dir / "dashboard.html", runs[-HISTORY_RUNS:])
    if cfg.get("overlays", False):
        from kiridashi.overlay import overlay_results

        written = overlay_results(results_path, report_dir / "overlays")
        log.info("%d debug overlays in %s", len(written), report_dir / "overlays")
    return report
