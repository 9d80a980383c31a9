"""The real DVC pipeline in a scratch copy of this repo (slow: several `dvc` runs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.common import copy_tracked_tree

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-4000:]}"
    return out


@pytest.fixture
def project(tmp_path, sample_images) -> tuple[Path, dict]:
    """A git+DVC checkout of the current tree with the sample images as data/input."""
    repo = copy_tracked_tree(tmp_path / "repo")
    shutil.copytree(sample_images, repo / "data" / "input")
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(repo)
    env.setdefault("GIT_AUTHOR_NAME", "test")
    env.setdefault("GIT_AUTHOR_EMAIL", "test@example.invalid")
    env.setdefault("GIT_COMMITTER_NAME", "test")
    env.setdefault("GIT_COMMITTER_EMAIL", "test@example.invalid")
    _run(["git", "init", "-q"], repo, env)
    dvc(repo, env, "add", "-q", "data/input")  # as `make demo` does
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "init"], repo, env)
    return repo, env


def dvc(repo: Path, env: dict, *args: str) -> str:
    return _run([sys.executable, "-m", "dvc", *args], repo, env)


def test_repro_noop_rerun_and_exp_run(project):
    repo, env = project
    first = dvc(repo, env, "repro")
    assert "computed" in first
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    assert metrics["processed"] >= 1 and metrics["iou"] is not None  # headline names (#15)
    assert (repo / "data" / "output" / "extraction_results.json").exists()
    assert (repo / "data" / "eval" / "dashboard.html").exists()

    assert "up to date" in dvc(repo, env, "repro").lower()

    # merge forced to run again with its outputs deleted: our cache serves every image
    shutil.rmtree(repo / "data" / "output")
    rerun = dvc(repo, env, "repro", "--force", "--single-item", "merge")
    assert "merge: computed 0," in rerun

    # a merge-only param: the stages before merge are not re-run
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["merge"]["crop_padding"] = 0.1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = dvc(repo, env, "status")
    assert "merge:" in status and "detect:" not in status and "preprocess:" not in status
    _run(["git", "checkout", "params.yaml"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "baseline run"], repo, env)

    exp = dvc(repo, env, "exp", "run", "-S", "detect.scales=[0.75,1.0,1.25]")
    assert "Stage 'preprocess' didn't change, skipping" in exp
    assert "detect: computed" in exp
    shown = json.loads(dvc(repo, env, "exp", "show", "--json"))
    text = json.dumps(shown)
    assert '"iou"' in text and '"face_rate"' in text
    # the README's line: the changed parameter beside the headline metrics, in 120 columns
    table = _run(
        [sys.executable, "-m", "dvc", "exp", "show", "--no-pager", "--only-changed",
         "--drop", "Created|.*/", "--keep", "iou$"],
        repo, {**env, "COLUMNS": "120"},
    )  # fmt: skip
    assert "detect.scales" in table and "iou" in table and "…" not in table, table
    assert max(len(line.rstrip()) for line in table.splitlines()) <= 120


def _counts(log: str, step: str) -> tuple[int, int]:
    """(computed, reused) from a stage's ``step: computed N, reused M, skipped K`` line."""
    line = next(x for x in log.splitlines() if x.startswith(f"{step}: computed"))
    computed = int(line.split("computed ")[1].split(",")[0])
    reused = int(line.split("reused ")[1].split(",")[0])
    return computed, reused


def _ran(log: str, step: str) -> bool:
    """Whether an experiment's log shows ``step`` run (False: DVC restored it from its run
    cache because the other experiment had already run it with the same deps and params)."""
    if any(x.startswith(f"{step}: computed") for x in log.splitlines()):
        return True
    assert f"Stage '{step}' is cached - skipping run" in log, (step, log[-3000:])
    return False


def _exp_metrics(shown: list) -> dict[str, dict]:
    """experiment name -> metrics dict, from `dvc exp show --json`."""
    out = {}
    for entry in shown:
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs", []):
                data = rev.get("data") or {}
                files = (data.get("metrics") or {}).get("reports/metrics.json") or {}
                if rev.get("name") and files.get("data"):
                    out[rev["name"]] = files["data"]
    return out


def test_two_queued_experiments_share_the_cache(project):
    """`dvc exp run --queue` twice + `dvc queue start -j 2`: both run at once in temp copies of
    the repo, share <repo>/cache (no KIRIDASHI_CACHE_DIR), compute every shared key once, and
    give the metrics of a sequential run."""
    import time

    repo, env = project
    env = {k: v for k, v in env.items() if k != "KIRIDASHI_CACHE_DIR"}
    n_images = len(list((repo / "data" / "input").glob("*.jpg")))
    # two experiments that differ only in a merge param: every earlier key is shared
    for name, pad in (("pad-a", "0.06"), ("pad-b", "0.07")):
        dvc(repo, env, "exp", "run", "--queue", "-n", name, "-S", f"merge.crop_padding={pad}")
    dvc(repo, env, "queue", "start", "-j", "2")
    deadline = time.time() + 900
    while time.time() < deadline:
        status = dvc(repo, env, "queue", "status")
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    logs = {name: dvc(repo, env, "queue", "logs", name) for name in ("pad-a", "pad-b")}
    assert "Failed" not in status, status + "\n".join(v[-3000:] for v in logs.values())
    for step in ("preprocess", "detect", "segment"):
        # the two usually run a stage at the same time; when one finishes a stage before the
        # other starts it, DVC restores it in the second from its run cache instead of running it
        counts = [_counts(log, step) for log in logs.values() if _ran(log, step)]
        assert sum(c for c, _ in counts) == n_images, (step, counts)  # each key computed once
        assert all(c + r == n_images for c, r in counts), (step, counts)  # ... the rest reused
    assert (repo / "cache").is_dir() and not (repo / ".dvc" / "tmp" / "exps" / "cache").exists()

    shown = _exp_metrics(json.loads(dvc(repo, env, "exp", "show", "--json")))
    assert {"pad-a", "pad-b"} <= shown.keys(), shown.keys()
    # the same experiment again, one at a time, every stage forced to run: all from our cache
    sequential = dvc(
        repo, env, "exp", "run", "--force", "-n", "pad-seq", "-S", "merge.crop_padding=0.06"
    )
    for step in ("preprocess", "detect", "segment", "merge"):
        assert _counts(sequential, step) == (0, n_images), step
    shown = _exp_metrics(json.loads(dvc(repo, env, "exp", "show", "--json")))
    for key in ("iou", "boundary_f", "recall", "processed"):
        assert shown["pad-a"][key] == shown["pad-b"][key] == shown["pad-seq"][key], key


def test_export_stage_reruns_alone_after_a_side_change(project):
    """With the export stage enabled, `dvc exp run -S export.side=768` runs only `export`.

    (The issue asked for `export.size`: DVC's run cache drops params named `size` from its key,
    so such an experiment would restore the old dataset; see test_config.)
    """
    from PIL import Image

    repo, env = project
    conf = repo / "conf" / "export" / "default.yaml"
    conf.write_text(conf.read_text().replace("enabled: false", "enabled: true", 1))
    _run([sys.executable, "-m", "kiridashi.cli", "params"], repo, env)
    first = dvc(repo, env, "repro")
    assert "export.image: computed" in first, first[-3000:]
    folder = repo / "data" / "dataset" / "10_demo"
    images = sorted(folder.glob("*.png"))
    assert images and len(images) == len(sorted(folder.glob("*.txt")))
    assert all(Image.open(p).size == (1024, 1024) for p in images)
    report = json.loads((repo / "data" / "dataset" / "export_report.json").read_text())
    assert report["summary"]["kept"] == len(images)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "export enabled"], repo, env)

    exp = dvc(repo, env, "exp", "run", "-S", "export.side=768")
    for stage in ("preprocess", "detect", "segment", "merge", "evaluate"):
        assert f"Stage '{stage}' didn't change, skipping" in exp, (stage, exp[-3000:])
    assert "Running stage 'export'" in exp
    images = sorted(folder.glob("*.png"))
    assert images and all(Image.open(p).size == (768, 768) for p in images)
