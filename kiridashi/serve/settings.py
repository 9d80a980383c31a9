"""The server's settings: the ``serve`` config section and the command-line options, checked once."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from kiridashi.cache import REPO_ROOT, main_repo_root
from kiridashi.config import ConfigError

TOKEN_ENV = "KIRIDASHI_TOKEN"
MULTIPART_SLACK = 64 * 1024  # boundaries and the small fields around an upload of the limit


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def repo_path(text: str) -> Path:
    """A configured folder: relative paths are relative to the repo root."""
    path = Path(text).expanduser()
    return path if path.is_absolute() else (main_repo_root() or REPO_ROOT) / path


@dataclass(frozen=True)
class ServeSettings:
    host: str
    port: int
    token: str | None
    dir: Path  # results/ (uploads' cut-outs) and jobs/
    roots: tuple[Path, ...]  # resolved
    max_upload_bytes: int
    max_unzip_bytes: int
    request_timeout_s: float
    jobs: int  # worker processes

    @property
    def results_dir(self) -> Path:
        return self.dir / "results"

    @property
    def jobs_dir(self) -> Path:
        return self.dir / "jobs"

    @property
    def max_body_bytes(self) -> int:
        return self.max_upload_bytes + MULTIPART_SLACK

    def __repr__(self) -> str:  # the token never appears in a log line or a traceback
        return f"ServeSettings(host={self.host!r}, port={self.port}, token={'set' if self.token else None})"


def load_settings(
    cfg: dict, host: str | None = None, port: int | None = None, token: str | None = None
) -> ServeSettings:
    """The settings of ``cfg["serve"]`` with the command line's ``host``, ``port`` and ``token``
    (else ``$KIRIDASHI_TOKEN``) on top. Raises ConfigError when a non-loopback address has no
    token."""
    serve = cfg.get("serve") or {}
    host = host or str(serve.get("host", "127.0.0.1"))
    port = int(port if port is not None else serve.get("port", 8765))
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: expected 0..65535")
    token = token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"binding {host} exposes the server beyond this machine: give a token "
            f"(--token or {TOKEN_ENV}), or bind 127.0.0.1"
        )
    return ServeSettings(
        host=host,
        port=port,
        token=token,
        dir=repo_path(str(serve.get("dir", "serve"))),
        roots=tuple(repo_path(str(r)).resolve() for r in serve.get("roots") or []),
        max_upload_bytes=int(float(serve.get("max_upload_mb", 50)) * 2**20),
        max_unzip_bytes=int(float(serve.get("max_unzip_mb", 2048)) * 2**20),
        request_timeout_s=float(serve.get("request_timeout_s", 600)),
        jobs=max(1, int(cfg.get("jobs", 1))),
    )
