"""Releases: `make release VERSION=x.y.z` in a temporary clone (never in the real repository:
tags are shared), its refusals, and `kiridashi --version` against CHANGELOG.md."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kiridashi import __version__, release

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent


def test_version_matches_the_newest_changelog_entry():
    text = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    released = release.released_versions(text)
    if released:
        assert released[0] == __version__, (released[0], __version__)
    else:  # before the first release: notes wait under Unreleased
        assert release.UNRELEASED in text


def test_the_repo_has_a_licence_and_notices():
    assert "MIT License" in (REPO / "LICENSE").read_text()
    assert "see LICENSE" in (REPO / "NOTICE").read_text()
    assert (REPO / "kiridashi" / "detectors" / "data" / "NOTICE").is_file()


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def clone(tmp_path) -> Path:
    """A clone of this repository's HEAD, plus the work tree's uncommitted files (so the test
    checks the code under test), committed."""
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(repo)], check=True)
    changed = _git(REPO, "ls-files", "-m", "-o", "--exclude-standard").split()
    for rel in changed:
        src = REPO / rel
        if src.is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo / rel).write_bytes(src.read_bytes())
    _git(repo, "add", "-A")
    if _git(repo, "status", "--porcelain").strip():
        _git(repo, "commit", "-qm", "work tree under test")
    for tag in _git(repo, "tag", "--list").split():  # a clean slate: no earlier release
        _git(repo, "tag", "-d", tag)
    return repo


def _make_release(repo: Path, version: str, demo_n: int = 3) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(repo), "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    return subprocess.run(
        ["make", "-s", "release", f"VERSION={version}", f"VENV={VENV}",
         f"RELEASE_DEMO_N={demo_n}"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip


def test_release_refuses_a_dirty_tree_a_tracked_image_and_a_bad_version(clone):
    proc = _make_release(clone, "1.2")
    assert proc.returncode != 0 and "error: VERSION='1.2': expected x.y.z" in proc.stderr
    (clone / "scratch.txt").write_text("x")
    proc = _make_release(clone, "0.2.0")
    assert proc.returncode != 0 and "error: the work tree is not clean" in proc.stderr
    (clone / "scratch.txt").unlink()
    (clone / "data").mkdir(exist_ok=True)
    (clone / "data" / "leak.png").write_bytes(b"\x89PNG")
    _git(clone, "add", "-f", "data/leak.png")
    _git(clone, "commit", "-qm", "an image in git")
    proc = _make_release(clone, "0.2.0")
    assert proc.returncode != 0 and "images under data/ are tracked by git" in proc.stderr
    assert not _git(clone, "tag", "--list").strip()


@pytest.mark.slow
def test_make_release_measures_writes_commits_and_tags(clone):
    proc = _make_release(clone, "0.2.0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _git(clone, "tag", "--list").split() == ["v0.2.0"]
    assert _git(clone, "log", "-1", "--format=%s").strip() == "Release v0.2.0"
    assert not _git(clone, "status", "--porcelain").strip()
    text = (clone / "CHANGELOG.md").read_text()
    assert release.released_versions(text)[0] == "0.2.0"
    entry = text[text.index("## [0.2.0]") :]
    for label in ("IoU", "boundary F", "character recall", "character precision", "s/image"):
        assert f"| {label} |" in entry, label
    assert "| IoU | n/a |" not in entry  # measured, not left empty
    assert text.index(release.UNRELEASED) < text.index("## [0.2.0]")
    version = subprocess.run(
        [sys.executable, "-m", "kiridashi.cli", "--version"],
        cwd=clone, env={**os.environ, "PYTHONPATH": str(clone)},
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert version == "kiridashi 0.2.0"
    # the next release lists the commits since v0.2.0
    (clone / "NOTES.txt").write_text("x")
    _git(clone, "add", "NOTES.txt")
    _git(clone, "commit", "-qm", "a change after 0.2.0")
    proc = _make_release(clone, "0.2.1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = (clone / "CHANGELOG.md").read_text()
    # newest first, above the releases the repo already had (v0.1.0 and later)
    assert release.released_versions(text)[:2] == ["0.2.1", "0.2.0"]
    assert "Changes since v0.2.0 (1 commits):\n\n- a change after 0.2.0" in text
