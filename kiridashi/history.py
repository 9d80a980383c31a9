"""Run history and the regression check behind ``kiridashi trend``.

Every evaluation appends one JSON line (time, git revision, DVC experiment name, params digest,
input folder, flat metrics) to the history file: ``$KIRIDASHI_HISTORY``, else
``<repo>/history/runs.jsonl`` (queued experiments' temporary copies map back to the main repo).
DVC experiments can also be read directly from ``dvc exp show --json``, so experiments are ranked
without re-running anything. ``kiridashi trend`` compares runs on the same input folder as the
latest one. All tracked metrics are higher-is-better.

Only runs of the project's own pipeline are recorded: the DVC ``evaluate`` stage, ``kiridashi
check``, and ``kiridashi extract --history``. The latest run is compared with its baseline: an
experiment (``dvc exp run``) with the commit it ran on, never with a sibling experiment; a plain
run with the plain run before it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from kiridashi.cache import main_repo_root

log = logging.getLogger(__name__)

TRACKED = (
    "mean_iou",
    "mean_boundary_f",
    "mean_dice",
    "single_mean_iou",
    "single_mean_boundary_f",
    "multi_mean_iou",
    "character_recall",
    "character_precision",
    "face_detection_rate",
    "pose_detection_rate",
    "pose_landmarks_inside",
)
DEFAULT_TOLERANCE = 0.01
# metrics.json (what `dvc exp show` lists): short name -> name in the report's summary
METRICS_JSON = {
    "iou": "mean_iou",
    "iou_single": "single_mean_iou",
    "iou_multi": "multi_mean_iou",
    "boundary_f": "mean_boundary_f",
    "recall": "character_recall",
    "precision": "character_precision",
    "face_rate": "face_detection_rate",
    "pose_rate": "pose_detection_rate",
    "processed": "processed",
    "skipped": "skipped",
}


def history_path() -> Path:
    env = os.environ.get("KIRIDASHI_HISTORY")
    if env:
        return Path(env)
    return (main_repo_root() or Path.cwd()) / "history" / "runs.jsonl"


def _git_rev(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def make_record(report: dict, label: str | None = None) -> dict:
    summary = report["summary"]
    return {
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "git_rev": _git_rev(),
        "dvc_exp": os.environ.get("DVC_EXP_NAME"),
        "label": label or os.environ.get("DVC_EXP_NAME") or None,
        "params_digest": report.get("params_digest"),
        "output_dir": report.get("output_dir"),
        "input_dir": report.get("input_dir"),
        "metrics": {k: v for k, v in summary.items() if isinstance(v, (int, float))},
    }


def append(record: dict, path: Path | None = None) -> Path:
    """Append one record as a single O_APPEND write (safe with concurrent writers)."""
    path = Path(path or history_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return path


def load(path: Path | None = None) -> list[dict]:
    """History records, oldest first; unreadable lines are skipped with a warning."""
    path = Path(path or history_path())
    if not path.is_file():
        return []
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("%s:%d: unreadable history line skipped", path, n)
    return records


def _find_metrics(node) -> dict:
    """Flat numeric metrics from one ``dvc exp show --json`` revision's ``data``."""
    out: dict = {}
    for file_entry in (node.get("metrics") or {}).values():
        data = (file_entry or {}).get("data") or {}
        out.update(
            {METRICS_JSON.get(k, k): v for k, v in data.items() if isinstance(v, (int, float))}
        )
    return out


def _flat_params(node: dict) -> dict:
    """``{"detect.scales": [1.0], ...}`` from one revision's ``params`` (all params files)."""
    out: dict = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = value

    for file_entry in (node.get("params") or {}).values():
        walk("", (file_entry or {}).get("data") or {})
    return out


def parse_dvc_exp_show(doc) -> list[dict]:
    """History-like records from ``dvc exp show --json`` (DVC 3.x) output, oldest first.

    The document lists the workspace, then each baseline commit with its ``experiments`` (each
    ``{"revs": [...], "name"}``). Records are ordered by timestamp; the workspace (no timestamp)
    comes last unless it only repeats a committed run or experiment (same params and metrics).
    """
    records: list[dict] = []

    def visit(entry: dict, baseline: str | None) -> None:
        data = entry.get("data") or {}
        metrics = _find_metrics(data)
        name = entry.get("name") or data.get("name") or entry.get("rev") or data.get("rev")
        if metrics:
            records.append(
                {
                    "time": data.get("timestamp"),
                    "git_rev": (entry.get("rev") or data.get("rev") or "")[:7] or None,
                    "dvc_exp": name,
                    "label": name,
                    "baseline": baseline,
                    "params": _flat_params(data),
                    "metrics": metrics,
                }
            )
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs") or []:
                visit(rev, name)

    for entry in doc if isinstance(doc, list) else [doc]:
        visit(entry, None)
    dated = sorted((r for r in records if r["time"]), key=lambda r: r["time"])
    same = {(json.dumps(r["params"], sort_keys=True), json.dumps(r["metrics"], sort_keys=True))
            for r in dated}  # fmt: skip
    undated = [
        r
        for r in records
        if not r["time"]
        and (json.dumps(r["params"], sort_keys=True), json.dumps(r["metrics"], sort_keys=True))
        not in same
    ]
    return dated + undated


def read_dvc_experiments(repo_dir: Path | None = None) -> list[dict]:
    """Records of the workspace, its commits and experiments, from ``dvc exp show --json``."""
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "exp", "show", "--json"],
        cwd=repo_dir or main_repo_root(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"dvc exp show failed: {proc.stderr.strip().splitlines()[-1:]}")
    return parse_dvc_exp_show(json.loads(proc.stdout or "[]"))


@dataclass
class TrendResult:
    metrics: tuple[str, ...]
    latest: dict | None
    previous: dict | None
    best: dict[str, dict] = field(default_factory=dict)
    regressions: list[str] = field(default_factory=list)
    better: str | None = None  # label of the better of latest/previous (its baseline)
    below_best: list[str] = field(default_factory=list)  # latest vs the best, per metric
    best_overall: str | None = None  # the run that is best in the most metrics

    @property
    def ok(self) -> bool:
        return not self.regressions


def _label(rec: dict | None, i: int | None = None) -> str:
    if rec is None:
        return "-"
    name = rec.get("label") or rec.get("dvc_exp")
    if name:
        return str(name)
    rev, when = rec.get("git_rev"), rec.get("time")
    if rev and when:  # several runs of one revision stay apart
        return f"{rev}@{str(when)[5:16]}"
    return str(rev or when or i)


def is_experiment(rec: dict) -> bool:
    """A DVC experiment's record rather than a plain run: ``dvc exp show`` records name their
    baseline commit (None for commits); history-file records carry the experiment's name."""
    if "baseline" in rec:
        return rec["baseline"] is not None
    return bool(rec.get("dvc_exp"))


def baseline_of(history: list[dict], latest: dict) -> dict | None:
    """The run ``latest`` is compared with: for an experiment, the run of its baseline commit
    (``dvc exp show``: the commit it hangs under; the history file: the latest plain run of the
    same revision, else the latest plain run); for a plain run, the plain run before it. Sibling
    experiments are never each other's baseline."""
    earlier = history[: next(i for i, r in enumerate(history) if r is latest)]
    plain = [r for r in earlier if not is_experiment(r)]
    if base := latest.get("baseline"):
        named = [r for r in plain if base in (r.get("label"), r.get("dvc_exp"), r.get("git_rev"))]
        named = named or [
            r for r in history if r is not latest and not is_experiment(r) and _label(r) == base
        ]
        return named[-1] if named else None
    if latest.get("dvc_exp"):
        same_rev = [r for r in plain if r.get("git_rev") == latest.get("git_rev")]
        return (same_rev or plain or [None])[-1]
    return plain[-1] if plain else None


def changed_params(rec: dict, base: dict | None) -> dict:
    """The params of ``rec`` that differ from ``base``'s (records that carry params)."""
    if not base or not rec.get("params") or not base.get("params"):
        return {}
    a, b = rec["params"], base["params"]
    return {k: a.get(k) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


def same_dataset(history: list[dict], input_dir: str | None = None) -> list[dict]:
    """Records made on ``input_dir`` (default: the latest record's); records without one stay."""
    wanted = input_dir or (history[-1].get("input_dir") if history else None)
    if not wanted:
        return history
    return [r for r in history if r.get("input_dir") in (None, wanted)]


def trend(
    history: list[dict],
    tolerance: float | dict[str, float] = DEFAULT_TOLERANCE,
    metrics=TRACKED,
) -> TrendResult:
    """Compare the latest record with its baseline (:func:`baseline_of`) and with the best of
    each metric.

    A regression is a metric of the latest run more than ``tolerance`` (absolute, per metric when
    a dict) below the baseline's. Equal values are never "below".
    """
    metrics = tuple(m for m in metrics if any(m in r.get("metrics", {}) for r in history))
    latest = history[-1] if history else None
    previous = baseline_of(history, latest) if latest is not None else None
    res = TrendResult(metrics, latest, previous)
    for m in metrics:
        scored = [r for r in history if isinstance(r.get("metrics", {}).get(m), (int, float))]
        if scored:
            res.best[m] = max(scored, key=lambda r: r["metrics"][m])
    wins_by_run: dict[int, int] = {}
    for m, rec in res.best.items():
        wins_by_run[id(rec)] = wins_by_run.get(id(rec), 0) + 1
        value = (latest or {}).get("metrics", {}).get(m)
        best = rec["metrics"][m]
        if rec is not latest and isinstance(value, (int, float)) and value < best:
            res.below_best.append(f"{m} {value:.4f} vs best {best:.4f} ({_label(rec)})")
    if wins_by_run:
        top = max(history, key=lambda r: wins_by_run.get(id(r), 0))
        res.best_overall = _label(top)
    if latest is None or previous is None:
        return res
    wins = 0
    for m in metrics:
        a, b = latest["metrics"].get(m), previous["metrics"].get(m)
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
            continue
        tol = (
            tolerance.get(m, DEFAULT_TOLERANCE) if isinstance(tolerance, dict) else float(tolerance)
        )
        wins += (a > b) - (a < b)
        if a < b - tol:
            res.regressions.append(f"{m} dropped {b:.4f} -> {a:.4f} (tolerance {tol})")
    res.better = _label(latest) if wins >= 0 else _label(previous)
    return res


def format_trend(history: list[dict], res: TrendResult) -> str:
    lines = []
    for m in res.metrics:
        series = " ".join(
            f"{r['metrics'][m]:.3f}" if isinstance(r["metrics"].get(m), (int, float)) else "-"
            for r in history
        )
        best = res.best.get(m)
        best_txt = f"best {best['metrics'][m]:.4f} ({_label(best)})" if best else ""
        lines.append(f"{m:22s} {series}   {best_txt}")
    runs = ", ".join(_label(r, i) for i, r in enumerate(history))
    lines.insert(0, f"{len(history)} runs: {runs}")
    lines += _param_differences(history)
    if res.best_overall:
        lines.append(f"best run: {res.best_overall} (best in the most metrics)")
    lines += [f"latest below best: {b}" for b in res.below_best]
    if res.previous is not None:
        lines.append(f"latest {_label(res.latest)} vs baseline {_label(res.previous)}: "
                     f"better = {res.better}")  # fmt: skip
    elif res.latest is not None and len(history) > 1:
        lines.append(f"latest {_label(res.latest)}: no baseline run to compare with")
    lines += [f"REGRESSION: {r}" for r in res.regressions]
    if res.previous is not None and res.ok:
        lines.append("no regression")
    return "\n".join(lines)


def _param_differences(history: list[dict]) -> list[str]:
    """What each run changed (DVC records carry params): an experiment against its baseline,
    other runs in the params that vary between runs."""
    with_params = [r for r in history if r.get("params")]
    keys = sorted({k for r in with_params for k in r["params"]})
    varying = [k for k in keys if len({json.dumps(r["params"].get(k)) for r in with_params}) > 1]
    lines = []
    for r in with_params:
        base = baseline_of(history, r) if r.get("baseline") else None
        if base is not None:
            changed = changed_params(r, base)
            shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in changed.items()) or "nothing"
            lines.append(f"  {_label(r)} (vs {_label(base)}): {shown}")
        elif varying:
            shown = ", ".join(f"{k}={json.dumps(r['params'].get(k))}" for k in varying)
            lines.append(f"  {_label(r)}: {shown}")
    return lines


def configured_tolerance() -> float:
    """``evaluate.regression_tolerance`` of the composed config (conf/), else 0.01."""
    try:
        from kiridashi.config import compose

        return float(compose([])["evaluate"].get("regression_tolerance", DEFAULT_TOLERANCE))
    except Exception as exc:  # noqa: BLE001 - a broken config must not hide the history
        log.warning("regression tolerance from conf/ unavailable (%s): using 0.01", exc)
        return DEFAULT_TOLERANCE


def format_ranking(history: list[dict], metric: str) -> str:
    """Runs ordered best first by ``metric`` (runs without it last)."""
    ranked = sorted(
        history,
        key=lambda r: (
            -r["metrics"][metric]
            if isinstance(r["metrics"].get(metric), (int, float))
            else float("inf")
        ),
    )
    lines = [f"ranking by {metric} (best first):"]
    for i, r in enumerate(ranked, 1):
        value = r["metrics"].get(metric)
        shown = f"{value:.4f}" if isinstance(value, (int, float)) else "-"
        lines.append(f"{i:3d}. {_label(r):24s} {shown}")
    return "\n".join(lines + _param_differences(ranked))


def cmd_trend(args: argparse.Namespace) -> int:
    if args.dvc:
        history = read_dvc_experiments(Path(args.repo) if args.repo else None)
    else:
        history = load(Path(args.history) if args.history else None)
        if not args.all_inputs:
            history = same_dataset(history)
    if not history:
        print("no runs recorded yet")
        return 0
    if args.rank:
        print(format_ranking(history, args.rank))
        return 0
    tolerance = configured_tolerance() if args.tolerance is None else args.tolerance
    res = trend(history, tolerance, tuple(args.metric) if args.metric else TRACKED)
    print(format_trend(history, res))
    return 0 if res.ok else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trend", help="metric history; exits 1 when the latest run regressed")
    p.add_argument("--history", help="history file (default: history/runs.jsonl of the repo)")
    p.add_argument(
        "--tolerance",
        type=float,
        help="allowed drop per metric (default: evaluate.regression_tolerance, 0.01)",
    )
    p.add_argument(
        "--all-inputs",
        action="store_true",
        help="compare runs on every input folder (default: the latest run's only)",
    )
    p.add_argument("--metric", action="append", help="metric to check (repeatable)")
    p.add_argument("--dvc", action="store_true", help="read DVC experiments (dvc exp show)")
    p.add_argument("--rank", help="only list the runs ordered by this metric, best first")
    p.add_argument("--repo", help="with --dvc: repository folder")
    p.set_defaults(func=cmd_trend)
