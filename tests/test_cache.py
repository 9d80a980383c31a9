"""The content-addressed store: keys, checksums, corruption, eviction, locations."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kiridashi.cache import (
    ImageMemo,
    ResultCache,
    main_repo_root,
    make_key,
    params_digest,
    resolve_cache_dir,
)


def test_params_digest_ignores_key_order_but_not_values():
    assert params_digest({"a": 1, "b": [1.0, 2.0]}) == params_digest({"b": [1.0, 2.0], "a": 1})
    assert params_digest({"a": 1}) != params_digest({"a": 2})
    assert make_key("detect", "v1", "abc", {"x": 1}).startswith("detect/v1/abc/")


def test_roundtrip_and_compute_once(tmp_path):
    cache = ResultCache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"image": np.arange(12, dtype=np.uint8).reshape(3, 4)}

    v1, computed1 = cache.get_or_compute("k", compute)
    v2, computed2 = cache.get_or_compute("k", compute)
    assert computed1 and not computed2 and len(calls) == 1
    assert (v1["image"] == v2["image"]).all()


def test_corrupt_entry_is_detected_recomputed_and_reported(tmp_path):
    cache = ResultCache(tmp_path, size_limit_bytes=2**30)
    big = np.random.default_rng(0).integers(0, 255, 200_000, dtype=np.uint8)  # stored as a file
    cache.set("big", big)
    files = [p for p in Path(tmp_path).rglob("*.val")]
    assert files, "large values live in files"
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) // 2])  # truncate it
    assert cache.get("big") is None
    assert cache.stats.corrupt == 1
    value, computed = cache.get_or_compute("big", lambda: big)
    assert computed and (value == big).all()


def test_lru_eviction_respects_size_limit(tmp_path):
    cache = ResultCache(tmp_path, size_limit_bytes=1_000_000)
    blob = np.zeros(300_000, np.uint8)
    for i in range(10):
        cache.set(f"k{i}", blob + i)
        cache.get("k0")  # keep k0 recently used
    assert cache.volume() <= 1_400_000  # limit plus at most one entry in flight
    assert cache.get("k0") is not None
    assert cache.get("k1") is None


def test_image_memo_keys_by_kind_and_params(tmp_path):
    cache = ResultCache(tmp_path)
    memo = ImageMemo(cache, "detect", "v", "img")
    n = []
    memo("lbp", {"scale": 1.0}, lambda: n.append(1) or [1])
    memo("lbp", {"scale": 1.0}, lambda: n.append(1) or [1])
    memo("lbp", {"scale": 0.75}, lambda: n.append(1) or [2])
    assert len(n) == 2


def test_cache_location_rules(tmp_path, monkeypatch):
    monkeypatch.setenv("KIRIDASHI_CACHE_DIR", str(tmp_path / "c"))
    assert resolve_cache_dir("ignored") == tmp_path / "c"
    monkeypatch.delenv("KIRIDASHI_CACHE_DIR")
    repo = tmp_path / "repo"
    exp = repo / ".dvc" / "tmp" / "exps" / "tmpabc123"
    exp.mkdir(parents=True)
    monkeypatch.setenv("DVC_ROOT", str(exp))
    assert main_repo_root() == repo.resolve()
    assert resolve_cache_dir("cache") == repo.resolve() / "cache"


def test_lock_of_a_killed_process_is_broken_at_once(tmp_path):
    """kill -9 during a compute leaves its key locked; the next run must not wait for it."""
    import subprocess
    import sys
    import time

    from kiridashi.cache import OwnedLock

    cache = ResultCache(tmp_path / "c")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    lock = OwnedLock(cache._store, "lock::k")  # noqa: SLF001
    cache._store.set("lock::k", f"{lock.token.rsplit(':', 1)[0]}:{dead.stdout.strip()}")  # noqa: SLF001
    t0 = time.perf_counter()
    value, computed = cache.get_or_compute("k", lambda: 42)
    assert (value, computed) == (42, True)
    assert time.perf_counter() - t0 < 5
    assert "lock::k" not in cache._store  # noqa: SLF001 - released after computing


def test_live_lock_is_waited_for_and_eviction_keeps_locks(tmp_path):
    import threading
    import time

    from kiridashi.cache import OwnedLock

    base = ResultCache(tmp_path / "c").volume()  # an empty store's own size (SQLite file)
    cache = ResultCache(tmp_path / "c", size_limit_bytes=base + 16384)
    holder = OwnedLock(cache._store, "lock::k")  # noqa: SLF001 - this process: alive
    holder.acquire()
    threading.Timer(0.3, lambda: (cache.set("k", 7), holder.release())).start()
    t0 = time.perf_counter()
    value, computed = cache.get_or_compute("k", lambda: 99)
    assert (value, computed) == (7, False) and time.perf_counter() - t0 >= 0.25
    other = OwnedLock(cache._store, "lock::other")  # noqa: SLF001
    other.acquire()
    for i in range(40):  # far over the size limit: values evicted, the held lock kept
        cache.set(f"v{i}", b"x" * 2048)
    assert cache.volume() <= base + 16384 + 4096
    assert "lock::other" in cache._store  # noqa: SLF001
    other.release()


# kiridashi modules a step may import without counting in its code version: cache, config and
# model-file plumbing that moves no result, and the demo art the figure nets' training reads
PLUMBING = ("kiridashi.cache", "kiridashi.config", "kiridashi.models", "kiridashi.quiet",
            "kiridashi.errors", "kiridashi.demo")  # fmt: skip


def _kiridashi_imports(path: Path) -> set[str]:
    """The kiridashi modules (and names in them) that a source file imports, at any depth."""
    import ast

    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {name for name in out if name.split(".")[0] == "kiridashi"}


def test_each_steps_code_version_covers_the_code_it_runs():
    """Editing a module a step imports must change that step's cache key: every kiridashi
    module a step's code imports is in its ``STEP_CODE`` (or an earlier step's, whose key its
    own chains), except the plumbing."""
    from kiridashi.cache import _source_files
    from kiridashi.runner import STEP_CODE, STEPS

    def inside(name: str, prefixes) -> bool:
        return any(name == p or name.startswith(p + ".") for p in prefixes)

    covered: set[str] = set()
    for step in STEPS:
        covered |= set(STEP_CODE[step])
        missing = {
            (name, f.name)
            for module in STEP_CODE[step]
            for f in _source_files(module)
            if f.suffix == ".py"
            for name in _kiridashi_imports(f)
            if not inside(name, covered) and not inside(name, PLUMBING)
        }
        assert not missing, f"{step}: imports outside its code version: {sorted(missing)}"


def test_each_dvc_stage_depends_on_its_steps_code():
    """``dvc repro`` reruns a stage only when a dependency changed: each pipeline stage of
    dvc.yaml lists the code its step's cache key counts (``STEP_CODE``)."""
    import yaml

    from kiridashi.runner import STEP_CODE

    stages = yaml.safe_load((Path(__file__).parents[1] / "dvc.yaml").read_text())["stages"]
    for step, modules in STEP_CODE.items():
        deps = set(stages[step]["deps"])
        for module in modules:
            path = module.replace(".", "/")
            assert path in deps or f"{path}.py" in deps, f"dvc.yaml {step}: no dependency {path}"
