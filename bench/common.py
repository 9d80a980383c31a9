"""Helpers shared by the benchmarks (and the DVC tests): scratch checkouts, measured runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Runs a command and prints the peak RSS (KiB) of its process tree's largest process.
_MEASURE = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.run(sys.argv[1:]).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


def copy_tracked_tree(dst: Path, src: Path = REPO) -> Path:
    """Copy the files git tracks (and untracked, not ignored ones) of ``src`` to ``dst``,
    without data/ and cache/ contents: a scratch project to run DVC in."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=src,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for rel in files:
        path = src / rel
        keep = rel in ("cache/.gitignore", "data/.gitkeep") or not rel.startswith(
            ("data/", "cache/")
        )
        if keep and path.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dst / rel)
    (dst / "data").mkdir(parents=True, exist_ok=True)
    return dst


def scratch_dvc_repo(work: Path, images: Path, env: dict) -> tuple[Path, dict]:
    """A git + DVC copy of this repo in ``work/repo`` with ``images`` as ``data/input``
    (``dvc add``, committed); returns it and the environment to run ``dvc`` in it."""
    repo = work / "repo"
    copy_tracked_tree(repo)
    shutil.copytree(images, repo / "data" / "input")
    denv = dict(env, PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")
    denv["PYTHONPATH"] = str(repo)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    for cmd in (
        ["git", "init", "-q"],
        [sys.executable, "-m", "dvc", "add", "-q", "data/input"],
        ["git", "add", "-A"],
        [*git, "commit", "-qm", "bench"],
    ):
        subprocess.run(cmd, cwd=repo, env=denv, check=True, capture_output=True)
    return repo, denv


def measured_run(cmd: list[str], env: dict, cwd: Path) -> dict:
    """Run ``cmd``; wall seconds, peak RSS (MiB) and output. Raises on a non-zero exit."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, *cmd], env=env, cwd=cwd, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    rss_kib = int(proc.stderr.strip().splitlines()[-1])
    return {
        "wall_s": round(wall, 2),
        "peak_rss_mib": round(rss_kib / 1024, 1),
        "stdout": proc.stdout,
        "stderr": proc.stderr,
    }
