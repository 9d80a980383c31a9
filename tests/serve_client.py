"""A real ``kiridashi serve`` in a subprocess and a small stdlib HTTP client for the tests."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for name, (filename, data) in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self):
        return json.loads(self.body)


@dataclass
class Server:
    port: int
    proc: subprocess.Popen
    log: Path
    token: str | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict | None = None,
        token: bool = True,
        timeout: float = 300,
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        hdrs = dict(headers or {})
        if token and self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return Reply(resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()})
        finally:
            conn.close()

    def get(self, path: str, **kw) -> Reply:
        return self.request("GET", path, **kw)

    def post_json(self, path: str, doc, **kw) -> Reply:
        return self.request(
            "POST", path, json.dumps(doc).encode(), {"Content-Type": "application/json"}, **kw
        )

    def upload(self, path: str, field_name: str, filename: str, data: bytes, **fields) -> Reply:
        body, ctype = multipart(fields, {field_name: (filename, data)})
        return self.request("POST", path, body, {"Content-Type": ctype})

    def wait_ready(self, timeout: float = 300) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.log.read_text()}")
            try:
                reply = self.get("/healthz", timeout=5)
                if reply.status == 200:
                    return reply.json()
            except OSError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"server not ready: {self.log.read_text()}")

    def wait_job(self, job_id: str, timeout: float = 600) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            job = self.get(f"/v1/jobs/{job_id}").json()
            if job["status"] not in ("queued", "running"):
                return job
            time.sleep(0.3)
        raise TimeoutError(f"job {job_id} not finished: {job}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_server(
    work: Path, env: dict, overrides: list[str], args: list[str] = (), port: int | None = None
) -> Server:
    """``kiridashi serve`` on a free port with ``serve.dir=work/serve``; not yet ready."""
    port = port or free_port()
    log = work / f"server-{port}.log"
    cmd = [sys.executable, "-m", "kiridashi.cli", "serve", "--port", str(port), *args]
    cmd += [f"serve.dir={work / 'serve'}", *overrides]
    env = {**env, "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])}
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=fh, stderr=subprocess.STDOUT)
    token = next((args[i + 1] for i, a in enumerate(args) if a == "--token"), None)
    return Server(port, proc, log, token)
