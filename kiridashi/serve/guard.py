"""The ASGI layer in front of every route: the token, the upload limit and request metrics.

- With a token set, every route but the page, its assets and ``/healthz`` needs it, as
  ``Authorization: Bearer TOKEN`` or the ``kiridashi_token`` cookie the page sets; compared in
  constant time, never logged (not accepted in the query string, which access logs show).
- A body over the limit gets 413 before it is read whole: at once when ``Content-Length`` says
  so, else as soon as the bytes received pass the limit.
"""

from __future__ import annotations

import hmac
import json
import time
from http.cookies import SimpleCookie

from kiridashi.serve.metrics import Metrics

PUBLIC = ("/", "/healthz", "/favicon.ico")
PUBLIC_PREFIXES = ("/static/",)
COOKIE = "kiridashi_token"


class BodyTooLarge(Exception):
    """The request body passed the upload limit."""


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def presented_token(scope: dict) -> str | None:
    auth = _header(scope, b"authorization") or ""
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    cookie = _header(scope, b"cookie")
    if cookie:
        jar = SimpleCookie()
        try:
            jar.load(cookie)
        except Exception:  # noqa: BLE001 - a malformed cookie header is no token
            return None
        if COOKIE in jar:
            return jar[COOKIE].value
    return None


def token_ok(expected: str, scope: dict) -> bool:
    given = presented_token(scope) or ""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


async def send_json(send, status: int, detail: str, headers: list | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app, token: str | None, max_body: int, metrics: Metrics):
        self.app, self.token, self.max_body, self.metrics = app, token, max_body, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = {"code": 500, "started": False}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
            await send(message)

        try:
            await self._guarded(scope, receive, send_wrapper, status)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or (
                scope["path"] if scope["path"] in PUBLIC else "other"
            )
            self.metrics.observe(scope["method"], name, status["code"], time.perf_counter() - t0)

    async def _guarded(self, scope, receive, send, status) -> None:
        path = scope["path"]
        public = path in PUBLIC or path.startswith(PUBLIC_PREFIXES)
        if self.token and not public and not token_ok(self.token, scope):
            await send_json(send, 401, "a token is required", [(b"www-authenticate", b"Bearer")])
            return
        length = _header(scope, b"content-length")
        limit_mb = f"{self.max_body / 2**20:.0f} MB"
        if length and length.isdigit() and int(length) > self.max_body:
            await send_json(send, 413, f"upload too large: {int(length):,} bytes (> {limit_mb})")
            return
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(f"upload too large: more than {limit_mb}")
            return message

        try:
            await self.app(scope, limited_receive, send)
        except BodyTooLarge as exc:
            if status["started"]:
                raise
            await send_json(send, 413, str(exc))
