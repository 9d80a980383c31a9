"""The content-addressed result store.

A key is ``stage name + stage code version + content hash of the input + digest of the params
the result depends on``. Values are pickled and stored behind an xxh3 checksum, so a truncated or
corrupted entry is detected, dropped and recomputed, never served.

Location: ``$KIRIDASHI_CACHE_DIR``, else ``$DVC_ROOT/cache`` (DVC sets it, also for queued
experiments that run in temporary copies of the repo), else ``<repo root>/cache`` when run
inside a checkout of this project, else ``./cache``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import json
import logging
import os
import pickle
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import diskcache
import xxhash

if TYPE_CHECKING:
    from kiridashi.cache_remote import RemoteStore

log = logging.getLogger(__name__)
T = TypeVar("T")

_MAGIC = b"KRD1"
_DIGEST_LEN = 16
REPO_ROOT = Path(__file__).resolve().parent.parent


def content_hash(data: bytes) -> str:
    """xxh3-128 hex digest of raw bytes (the identity of an input image)."""
    return xxhash.xxh3_128_hexdigest(data)


def _canonical(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def params_digest(params: Any) -> str:
    """Stable digest of a JSON-able params structure (key order does not matter)."""
    text = json.dumps(_canonical(params), sort_keys=True, separators=(",", ":"), default=str)
    return xxhash.xxh3_64_hexdigest(text.encode("utf-8"))


def code_version(*modules: ModuleType | str) -> str:
    """Digest of the source code of the given modules or packages (by object or dotted name).

    A package counts with every ``.py`` file below it and the files of its ``data`` folders
    (bundled model files: new weights recompute what they change). A stage's results are keyed by this, so
    editing the code that computes them invalidates exactly those cache entries. Dotted names
    are located with ``importlib.util.find_spec`` and not imported (a warm re-run need not load
    the detectors' heavy dependencies).
    """
    h = hashlib.sha1()
    for mod in modules:
        for file in _source_files(mod):
            h.update(file.name.encode())
            h.update(file.read_bytes())
    return h.hexdigest()[:12]


def _source_files(mod: ModuleType | str) -> list[Path]:
    if isinstance(mod, str):
        spec = importlib.util.find_spec(mod)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(f"no source for module {mod!r}")
        folders = spec.submodule_search_locations
        origin = spec.origin
    else:
        folders = getattr(mod, "__path__", None)
        origin = inspect.getfile(mod)
    if folders:
        # the package's sources and the model files it ships (``data/``: cascade, ONNX nets)
        return sorted(
            p
            for folder in folders
            for p in Path(folder).rglob("*")
            if p.is_file() and (p.suffix == ".py" or "data" in p.relative_to(folder).parts[:-1])
        )
    return [Path(origin)]


def make_key(stage: str, version: str, content: str, params: Any) -> str:
    """``stage/version/content/params-digest``: readable and unique."""
    return f"{stage}/{version}/{content}/{params_digest(params)}"


def find_repo_root(start: Path | None = None) -> Path | None:
    """The nearest folder above ``start`` (default cwd) that holds ``dvc.yaml`` or ``.dvc``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir() or (folder / "dvc.yaml").is_file():
            return folder
    return None


_EXP_TEMP = f"{os.sep}.dvc{os.sep}tmp{os.sep}exps{os.sep}"


def main_repo_root() -> Path | None:
    """The project checkout we run in: ``$DVC_ROOT`` or the nearest repo above cwd.

    Queued DVC experiments run in temporary copies under ``<repo>/.dvc/tmp/exps/``; those map
    back to ``<repo>`` so that every experiment shares one cache and one models folder.
    """
    root = os.environ.get("DVC_ROOT") or find_repo_root()
    if root is None:
        return None
    text = str(Path(root).resolve())
    if _EXP_TEMP in text:
        text = text.split(_EXP_TEMP, 1)[0]
    return Path(text)


def resolve_cache_dir(configured: str | os.PathLike | None = None) -> Path:
    """``$KIRIDASHI_CACHE_DIR``, else ``configured``, else ``<repo>/cache``, else ``./cache``."""
    env = os.environ.get("KIRIDASHI_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    root = main_repo_root()
    if configured:
        path = Path(configured).expanduser()
        return path if path.is_absolute() or root is None else root / path
    return (root / "cache") if root else Path("cache").resolve()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    corrupt: int = 0
    writes: int = 0
    remote_hits: int = 0  # results fetched from cache.remote
    remote_writes: int = 0  # results stored in cache.remote
    remote_corrupt: int = 0  # corrupt remote objects ignored (recomputed and replaced)
    by_kind: dict[str, list[int]] = field(default_factory=dict)  # kind -> [computed, reused]

    def count(self, kind: str, computed: bool) -> None:
        slot = self.by_kind.setdefault(kind, [0, 0])
        slot[0 if computed else 1] += 1


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class OwnedLock:
    """A cross-process lock on one cache key that survives its owner being killed.

    The lock entry holds ``host:pid`` of its owner. A waiter breaks the lock at once when the
    owner is a dead process on this host (``kill -9`` of a run), so a resumed run does not wait;
    ``expire`` (seconds) is the safety net for owners on other hosts (a shared network cache).
    """

    def __init__(self, store: diskcache.Cache, key: str, expire: float = 900.0):
        self.store, self.key, self.expire = store, key, float(expire)
        self.token = f"{socket.gethostname()}:{os.getpid()}"

    def _stale(self, owner: Any) -> bool:
        host, _, pid = str(owner).rpartition(":")
        return host == socket.gethostname() and pid.isdigit() and not _process_alive(int(pid))

    def acquire(self) -> None:
        delay = 0.001
        while not self.store.add(self.key, self.token, expire=self.expire, retry=True):
            owner = self.store.get(self.key, retry=True)
            if owner is not None and self._stale(owner):
                with self.store.transact(retry=True):
                    if self.store.get(self.key) == owner:
                        self.store.delete(self.key)
                        log.info("cache: broke the lock of dead process %s on %s", owner, self.key)
                continue
            time.sleep(delay)
            delay = min(0.05, delay * 2)

    def release(self) -> None:
        with self.store.transact(retry=True):
            if self.store.get(self.key) == self.token:
                self.store.delete(self.key)

    def __enter__(self) -> OwnedLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class ResultCache:
    """A checksummed, size-limited (LRU eviction), multi-process-safe key -> value store.

    Values are any picklable object (numpy arrays, dicts, bytes). ``remote``: the shared tier
    behind it (:mod:`kiridashi.cache_remote`), consulted by :meth:`get_or_compute`.
    """

    def __init__(
        self, directory: Path, size_limit_bytes: int = 20 * 2**30, remote: RemoteStore | None = None
    ):
        self.remote = remote
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.size_limit = int(size_limit_bytes)
        self._store = diskcache.Cache(
            str(self.directory),
            size_limit=int(size_limit_bytes),
            eviction_policy="least-recently-used",
            cull_limit=0,  # evict precisely in set() instead of 10 entries at a time
            timeout=60,
        )
        self.stats = CacheStats()

    # -- raw access -----------------------------------------------------------------------
    @staticmethod
    def _pack(value: Any) -> bytes:
        payload = pickle.dumps(value, protocol=5)
        return _MAGIC + xxhash.xxh3_128_digest(payload) + payload

    @staticmethod
    def _unpack(blob: bytes) -> Any:
        if not isinstance(blob, bytes) or not blob.startswith(_MAGIC):
            raise ValueError("bad header")
        digest = blob[len(_MAGIC) : len(_MAGIC) + _DIGEST_LEN]
        payload = blob[len(_MAGIC) + _DIGEST_LEN :]
        if xxhash.xxh3_128_digest(payload) != digest:
            raise ValueError("checksum mismatch")
        return pickle.loads(payload)

    _MISSING = object()

    def get(self, key: str, default: Any = None) -> Any:
        """The stored value, or ``default`` when absent or corrupt (corrupt entries are deleted)."""
        try:
            blob = self._store.get(key, default=self._MISSING, retry=True)
        except Exception as exc:  # noqa: BLE001 - unreadable file behind the entry
            blob = exc
        if blob is self._MISSING:
            self.stats.misses += 1
            return default
        try:
            value = self._unpack(blob)
        except Exception as exc:  # noqa: BLE001
            self.stats.corrupt += 1
            self.stats.misses += 1
            log.warning("cache: corrupt entry %s (%s): dropped, recomputing", key, exc)
            with contextlib.suppress(Exception):
                self._store.delete(key, retry=True)
            return default
        self.stats.hits += 1
        return value

    def set(self, key: str, value: Any) -> None:
        self._set_blob(key, self._pack(value))

    def _set_blob(self, key: str, blob: bytes) -> None:
        self._store.set(key, blob, retry=True)
        self.stats.writes += 1
        if self._store.volume() > self.size_limit:
            self.evict()

    def evict(self) -> int:
        """Delete least-recently-used entries, one at a time, until under the size limit.

        (diskcache's own cull drops ten entries per round, far too many for large values.)
        """
        select = diskcache.core.EVICTION_POLICY["least-recently-used"]["cull"]
        removed = 0
        while self._store.volume() > self.size_limit:
            rows = self._store._sql(select.format(fields="key"), (64,)).fetchall()  # noqa: SLF001
            victims = [r[0] for r in rows if not str(r[0]).startswith("lock::")]  # locks stay
            if not victims:
                break
            self._store.delete(victims[0], retry=True)
            removed += 1
        return removed

    def __contains__(self, key: str) -> bool:
        return key in self._store

    def get_or_compute(self, key: str, compute: Callable[[], T], kind: str = "") -> tuple[T, bool]:
        """(value, computed?) — computes at most once per key across processes when possible."""
        value = self.get(key, self._MISSING)
        if value is not self._MISSING:
            self.stats.count(kind or key.split("/", 1)[0], computed=False)
            return value, False
        lock = OwnedLock(self._store, f"lock::{key}", expire=900)
        with lock:
            value = self.get(key, self._MISSING)
            if value is not self._MISSING:  # another process computed it while we waited
                self.stats.misses -= 1
                self.stats.count(kind or key.split("/", 1)[0], computed=False)
                return value, False
            value, replace = self._from_remote(key)
            if value is not self._MISSING:
                self.stats.count(kind or key.split("/", 1)[0], computed=False)
                return value, False
            value = compute()
            blob = self._pack(value)
            self._set_blob(key, blob)
            if self.remote is not None and self.remote.put(key, blob, replace=replace):
                self.stats.remote_writes += 1
        self.stats.count(kind or key.split("/", 1)[0], computed=True)
        return value, True

    def _from_remote(self, key: str) -> tuple[Any, bool]:
        """(value, False) from the remote tier, also stored locally; else (missing, corrupt?)."""
        if self.remote is None:
            return self._MISSING, False
        blob = self.remote.get(key)
        if blob is None:
            return self._MISSING, False
        try:
            value = self._unpack(blob)
        except Exception as exc:  # noqa: BLE001
            self.stats.remote_corrupt += 1
            log.warning("cache.remote: corrupt object %s (%s): ignored, recomputing", key, exc)
            return self._MISSING, True
        self.stats.remote_hits += 1
        self._set_blob(key, blob)
        return value, False

    def iter_keys(self) -> Iterable[str]:
        return (k for k in self._store.iterkeys() if not str(k).startswith("lock::"))

    def volume(self) -> int:
        return int(self._store.volume())

    def close(self) -> None:
        self._store.close()


def open_cache(cache_cfg: dict | None = None) -> ResultCache:
    """The result cache of a ``cache`` config section (``dir``, ``size_limit_gb``, ``remote``)."""
    from kiridashi.cache_remote import open_remote

    cache_cfg = cache_cfg or {}
    return ResultCache(
        resolve_cache_dir(cache_cfg.get("dir")),
        int(float(cache_cfg.get("size_limit_gb", 20)) * 2**30),
        open_remote(cache_cfg.get("remote")),
    )


Memo = Callable[[str, dict, Callable[[], T]], T]


class ImageMemo:
    """Per-image sub-result cache handed to detectors/segmenters.

    ``memo(kind, params, compute)`` caches ``compute()`` under (stage, code version, this image's
    content key, kind, params).
    """

    def __init__(self, cache: ResultCache, stage: str, version: str, content: str):
        self.cache, self.stage, self.version, self.content = cache, stage, version, content

    def __call__(self, kind: str, params: dict, compute: Callable[[], T]) -> T:
        key = make_key(f"{self.stage}.{kind}", self.version, self.content, params)
        value, _ = self.cache.get_or_compute(key, compute, kind=f"{self.stage}.{kind}")
        return value
