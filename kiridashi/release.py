"""``make release VERSION=x.y.z``: a version whose CHANGELOG entry says what changed and how good
the cut-outs were at that point.

Steps, each refusing with one ``error:`` line (exit 2) before anything is changed:

1. ``VERSION`` is ``x.y.z``, newer than the package's, and ``vVERSION`` is not a tag yet;
2. the work tree is clean (no change, no untracked file) and no image under ``data/`` is tracked
   by git (inputs and outputs never enter git);
3. the pipeline runs on the demo set (``kiridashi demo``, then ``kiridashi extract`` with a fresh
   cache, so s/image is measured, not reused) and its quality is read from the report;

then the version is written into ``kiridashi/__init__.py``, a ``CHANGELOG.md`` entry (date,
notes of the ``Unreleased`` section, commits since the last tag, measured quality) is prepended,
and the two files are committed and tagged ``vVERSION``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from kiridashi.cache import REPO_ROOT
from kiridashi.io import IMAGE_EXTENSIONS

CHANGELOG = "CHANGELOG.md"
VERSION_FILE = "kiridashi/__init__.py"
UNRELEASED = "## Unreleased"
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
ENTRY_RE = re.compile(r"^## \[(\d+\.\d+\.\d+)\]", re.M)
QUALITY_KEYS = (
    ("mean_iou", "IoU"),
    ("single_mean_iou", "IoU, one character"),
    ("multi_mean_iou", "IoU, several characters"),
    ("mean_boundary_f", "boundary F"),
    ("character_recall", "character recall"),
    ("character_precision", "character precision"),
)


class ReleaseError(Exception):
    """A release cannot be made; the message is one line for the user."""


def git(repo: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise ReleaseError(f"git {' '.join(args)}: {proc.stderr.strip().splitlines()[-1:]}")
    return proc.stdout


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def current_version(repo: Path) -> str:
    match = re.search(r'^__version__ = "([^"]+)"', (repo / VERSION_FILE).read_text(), re.M)
    if not match:
        raise ReleaseError(f"no __version__ in {VERSION_FILE}")
    return match.group(1)


def released_versions(changelog_text: str) -> list[str]:
    """Versions with an entry in CHANGELOG.md, newest (top) first."""
    return ENTRY_RE.findall(changelog_text)


def check_version(repo: Path, version: str) -> None:
    if not VERSION_RE.match(version or ""):
        raise ReleaseError(f"VERSION={version!r}: expected x.y.z, e.g. make release VERSION=0.2.0")
    now = current_version(repo)
    if parse_version(version) <= parse_version(now) and version != now:
        raise ReleaseError(f"VERSION={version}: not newer than the package's {now}")
    if git(repo, "tag", "--list", f"v{version}").strip():
        raise ReleaseError(f"tag v{version} exists already")
    released = released_versions(_read(repo / CHANGELOG))
    if version in released or (released and parse_version(version) <= parse_version(released[0])):
        raise ReleaseError(f"VERSION={version}: CHANGELOG.md has {released[0]} already")


def check_tree(repo: Path) -> None:
    """A clean work tree, and no image under data/ tracked by git."""
    status = git(repo, "status", "--porcelain").splitlines()
    if status:
        raise ReleaseError(
            f"the work tree is not clean ({len(status)} changed or untracked files, e.g. "
            f"{status[0][3:]}): commit or remove them first"
        )
    tracked = [
        p
        for p in git(repo, "ls-files", "-z", "--", "data").split("\0")
        if p and Path(p).suffix.lower() in IMAGE_EXTENSIONS
    ]
    if tracked:
        raise ReleaseError(
            f"{len(tracked)} images under data/ are tracked by git (e.g. {tracked[0]}): "
            "inputs and outputs never enter git (git rm --cached them)"
        )


def measure_quality(repo: Path, demo_n: int, workdir: Path) -> dict:
    """Run the demo set through ``kiridashi extract`` (fresh cache, private history) and return
    ``{"images", "seconds_per_image", key: value for QUALITY_KEYS}``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]).strip(
            os.pathsep
        ),
        "KIRIDASHI_CACHE_DIR": str(workdir / "cache"),
        "KIRIDASHI_HISTORY": str(workdir / "history.jsonl"),
        "PUSHOVER_TOKEN": "",
        "PUSHOVER_USER": "",
    }
    demo, out = workdir / "demo", workdir / "out"
    for args in (["demo", str(demo), "--n", str(demo_n)], ["extract", str(demo), str(out)]):
        proc = subprocess.run(
            [sys.executable, "-m", "kiridashi.cli", *args],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise ReleaseError(f"kiridashi {args[0]} on the demo set failed: {tail}")
    summary = json.loads((out / "unified_quality_report.json").read_text())["summary"]
    results = json.loads((out / "extraction_results.json").read_text())["summary"]
    quality = {k: summary.get(k) for k, _ in QUALITY_KEYS}
    quality["images"] = results["images"]
    quality["processed"] = results["processed"]
    quality["seconds_per_image"] = round(results["seconds"] / max(1, results["images"]), 3)
    return quality


def changes_since_last_tag(repo: Path) -> tuple[str | None, list[str]]:
    """(the last release tag or None, commit subjects since it, oldest first)."""
    last = git(repo, "describe", "--tags", "--abbrev=0", "--match", "v*", check=False).strip()
    span = f"{last}..HEAD" if last else "HEAD"
    subjects = git(repo, "log", "--no-merges", "--reverse", "--format=%s", span).splitlines()
    return (last or None), subjects


def _short(subject: str, limit: int = 140) -> str:
    return subject if len(subject) <= limit else subject[: limit - 1].rstrip() + "…"


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def entry_text(
    version: str,
    date: str,
    notes: str,
    last_tag: str | None,
    subjects: list[str],
    quality: dict,
    demo_n: int,
) -> str:
    """The CHANGELOG entry of one release (Markdown)."""
    lines = [f"## [{version}] - {date}", ""]
    if notes.strip():
        lines += [notes.strip(), ""]
    if last_tag:
        lines += [f"Changes since {last_tag} ({len(subjects)} commits):", ""]
        lines += [f"- {_short(s)}" for s in subjects] or ["- (none)"]
    else:
        lines += [f"First release: {len(subjects)} commits of development."]
    lines += [
        "",
        f"Quality on the demo set (`kiridashi demo --n {demo_n}`, {quality['processed']} of "
        f"{quality['images']} images processed, fresh cache):",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    lines += [f"| {label} | {_fmt(quality.get(key))} |" for key, label in QUALITY_KEYS]
    lines += [f"| s/image | {_fmt(quality.get('seconds_per_image'))} |", ""]
    return "\n".join(lines)


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""


HEADER = """# Changelog

Every release of kiridashi: what changed and how good the cut-outs were at that point, measured
by `make release` on the demo set. Notes for the next release go under "Unreleased".

"""


def split_unreleased(text: str) -> tuple[str, str, str]:
    """(text before the Unreleased section, its notes, the released entries after it)."""
    if not text.strip():
        return HEADER, "", ""
    start = text.find(UNRELEASED)
    first_entry = ENTRY_RE.search(text)
    if start < 0:
        cut = first_entry.start() if first_entry else len(text)
        return text[:cut], "", text[cut:]
    body_start = start + len(UNRELEASED)
    end = first_entry.start() if first_entry and first_entry.start() > start else len(text)
    return text[:start], text[body_start:end].strip(), text[end:]


def write_changelog(repo: Path, entry: str) -> None:
    head, _notes, released = split_unreleased(_read(repo / CHANGELOG))
    text = f"{head.rstrip()}\n\n{UNRELEASED}\n\n{entry.rstrip()}\n\n{released.lstrip()}"
    (repo / CHANGELOG).write_text(text.rstrip() + "\n", encoding="utf-8")


def write_version(repo: Path, version: str) -> None:
    path = repo / VERSION_FILE
    text = re.sub(r'^__version__ = "[^"]+"', f'__version__ = "{version}"', path.read_text(),
                  count=1, flags=re.M)  # fmt: skip
    path.write_text(text)


def release(repo: Path, version: str, demo_n: int = 16, date: str | None = None) -> str:
    """Make the release; returns its CHANGELOG entry."""
    check_version(repo, version)
    check_tree(repo)
    with tempfile.TemporaryDirectory(prefix="kiridashi-release-") as tmp:
        quality = measure_quality(repo, demo_n, Path(tmp))
    _head, notes, _released = split_unreleased(_read(repo / CHANGELOG))
    last_tag, subjects = changes_since_last_tag(repo)
    day = date or _dt.date.today().isoformat()
    entry = entry_text(version, day, notes, last_tag, subjects, quality, demo_n)
    write_version(repo, version)
    write_changelog(repo, entry)
    git(repo, "add", "--", VERSION_FILE, CHANGELOG)
    git(repo, "commit", "-q", "-m", f"Release v{version}")
    git(repo, "tag", "-a", f"v{version}", "-m", f"kiridashi {version}")
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kiridashi.release", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("version", nargs="?", default="", help="the new version, x.y.z")
    parser.add_argument("--demo-n", type=int, default=16, help="demo images to measure on")
    parser.add_argument("--repo", default=str(REPO_ROOT), help="repository (default: this one)")
    args = parser.parse_args(argv)
    try:
        entry = release(Path(args.repo), args.version, args.demo_n)
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(entry)
    print(
        f"released v{args.version}: commit and tag made (push them with `git push --follow-tags`)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
