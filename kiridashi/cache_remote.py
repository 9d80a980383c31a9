"""The shared tier of the result cache: content-addressed objects at an fsspec URL.

``cache.remote`` (``file:///mnt/shared/kiridashi``, ``s3://bucket/prefix``, anything fsspec opens)
sits behind the local diskcache (:class:`kiridashi.cache.ResultCache`): a local miss looks here
before computing, and a computed result is stored in both. Machines that share the URL reuse
what any of them computed.

- One object per cache key, at ``URL/v1/<key>``; the key names the step, its code version, the
  input's content hash and the params digest, so an object is never changed once written: two
  machines computing the same key write the same bytes, and no lock is taken across machines.
- Written once: a file system gets a temp file renamed into place (a reader never sees half an
  object); an object store gets one PUT (atomic by itself). An object that exists is not
  written again.
- Checksummed on read (the local cache's framing: magic, xxh3-128 of the payload): a corrupt
  or truncated object is ignored, recomputed and replaced.
- Unreachable storage never fails a run: a failed read is a miss, a failed write is a warning.

Credentials and endpoints come from the usual places of each backend (for S3: the AWS
environment variables or config files; ``AWS_ENDPOINT_URL`` for an S3-compatible server).
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger(__name__)

LAYOUT = "v1"  # the object layout below the URL


def is_url(text: Any) -> bool:
    """True for ``scheme://...`` (a single-letter scheme is a Windows drive, not a URL)."""
    return isinstance(text, str) and len(urlparse(text).scheme) > 1 and "://" in text


class RemoteStore:
    """Blobs by key at an fsspec URL (see the module docstring)."""

    def __init__(self, url: str):
        if problem := url_problem(url):
            raise ValueError(f"cache.remote={url}: {problem}")
        from fsspec.core import url_to_fs

        self.url = url.rstrip("/")
        self.fs, self.root = url_to_fs(self.url)
        self.root = self.root.rstrip("/")
        self.local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple)
                                else (self.fs.protocol,))  # fmt: skip
        self.failures = 0

    def path(self, key: str) -> str:
        return f"{self.root}/{LAYOUT}/{key}"

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when absent or unreadable (never raises)."""
        try:
            return self.fs.cat_file(self.path(key))
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - a remote that fails is a miss, not a crash
            self.failures += 1
            log.warning("cache.remote: cannot read %s (%s): recomputing", key, _first(exc))
            return None

    def put(self, key: str, blob: bytes, replace: bool = False) -> bool:
        """Store ``blob`` unless the object exists (``replace``: a corrupt one is overwritten).
        True when written; a failure is one warning line."""
        path = self.path(key)
        try:
            if not replace and self.fs.exists(path):
                return False
            if self.local:
                self._put_file(path, blob)
            else:
                self.fs.pipe_file(path, blob)  # one PUT
            return True
        except Exception as exc:  # noqa: BLE001
            self.failures += 1
            log.warning("cache.remote: cannot write %s (%s)", key, _first(exc))
            return False

    def _put_file(self, path: str, blob: bytes) -> None:
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(blob)
            os.replace(tmp, path)  # atomic: readers see the old object or the whole new one
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def delete(self, key: str) -> None:
        with contextlib.suppress(Exception):
            self.fs.rm_file(self.path(key))


def url_problem(url: Any) -> str | None:
    """Why ``url`` cannot be a remote tier (not a URL, no fsspec, no backend for its scheme),
    or None. Checked at start-up (:func:`kiridashi.config.check_settings`)."""
    if not is_url(url):
        return "expected a URL such as file:///mnt/shared/kiridashi or s3://bucket/prefix"
    try:
        import fsspec
    except ImportError:
        return "needs fsspec: pip install 'kiridashi[ray]'"
    scheme = urlparse(url).scheme
    try:
        fsspec.get_filesystem_class(scheme)
    except (ImportError, ValueError) as exc:
        return f"no file system for {scheme}:// ({_first(exc)})"
    return None


def _first(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def open_remote(url: str | None) -> RemoteStore | None:
    """The remote tier of a ``cache.remote`` setting (None: no remote tier)."""
    return RemoteStore(url) if url else None
