"""Run history and the regression check behind ``kiridashi trend``.

Every evaluation appends one JSON line (time, git revision, DVC experiment name, params digest,
flat metrics) to the history file: ``$KIRIDASHI_HISTORY``, else ``<repo>/history/runs.jsonl``
(queued experiments' temporary copies map back to the main repo). DVC experiments can also be
read directly from ``dvc exp show --json``. All metrics here are higher-is-better.
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
    "character_recall",
    "character_precision",
    "face_detection_rate",
)


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
        out.update({k: v for k, v in data.items() if isinstance(v, (int, float))})
    return out


def parse_dvc_exp_show(doc) -> list[dict]:
    """History-like records from ``dvc exp show --json`` (DVC 3.x) output."""
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
                    "metrics": metrics,
                }
            )
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs") or []:
                visit(rev, name)

    for entry in doc if isinstance(doc, list) else [doc]:
        visit(entry, None)
    return records


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
    better: str | None = None  # label of the better of latest/previous

    @property
    def ok(self) -> bool:
        return not self.regressions


def _label(rec: dict | None, i: int | None = None) -> str:
    if rec is None:
        return "-"
    return str(rec.get("label") or rec.get("dvc_exp") or rec.get("git_rev") or rec.get("time") or i)


def trend(
    history: list[dict], tolerance: float | dict[str, float] = 0.01, metrics=TRACKED
) -> TrendResult:
    """Compare the latest record with the previous one and with the best of each metric."""
    metrics = tuple(m for m in metrics if any(m in r.get("metrics", {}) for r in history))
    latest = history[-1] if history else None
    previous = history[-2] if len(history) > 1 else None
    res = TrendResult(metrics, latest, previous)
    for m in metrics:
        scored = [r for r in history if isinstance(r.get("metrics", {}).get(m), (int, float))]
        if scored:
            res.best[m] = max(scored, key=lambda r: r["metrics"][m])
    if latest is None or previous is None:
        return res
    wins = 0
    for m in metrics:
        a, b = latest["metrics"].get(m), previous["metrics"].get(m)
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
            continue
        tol = tolerance.get(m, 0.01) if isinstance(tolerance, dict) else float(tolerance)
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
    if res.previous is not None:
        lines.append(f"latest {_label(res.latest)} vs previous {_label(res.previous)}: "
                     f"better = {res.better}")  # fmt: skip
    lines += [f"REGRESSION: {r}" for r in res.regressions]
    if res.previous is not None and res.ok:
        lines.append("no regression")
    return "\n".join(lines)


def cmd_trend(args: argparse.Namespace) -> int:
    if args.dvc:
        history = read_dvc_experiments(Path(args.repo) if args.repo else None)
        if args.rank:
            m = args.rank
            history.sort(key=lambda r: r["metrics"].get(m, float("-inf")))
    else:
        history = load(Path(args.history) if args.history else None)
    if not history:
        print("no runs recorded yet")
        return 0
    res = trend(history, args.tolerance, tuple(args.metric) if args.metric else TRACKED)
    print(format_trend(history, res))
    return 0 if res.ok else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trend", help="metric history; exits 1 when the latest run regressed")
    p.add_argument("--history", help="history file (default: history/runs.jsonl of the repo)")
    p.add_argument("--tolerance", type=float, default=0.01, help="allowed drop per metric")
    p.add_argument("--metric", action="append", help="metric to check (repeatable)")
    p.add_argument("--dvc", action="store_true", help="read DVC experiments (dvc exp show)")
    p.add_argument("--rank", help="with --dvc: order experiments by this metric (best last)")
    p.add_argument("--repo", help="with --dvc: repository folder")
    p.set_defaults(func=cmd_trend)
