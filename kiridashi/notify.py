"""Pushover notifications: a run summary, then up to N crops as image attachments.

Credentials come from ``PUSHOVER_TOKEN`` / ``PUSHOVER_USER``, else from the JSON file
``notify.credentials_file`` (``{"token": ..., "user": ...}``, relative to the repo root); without
them nothing is sent. Sending uses only the standard library (urllib, multipart/form-data). A
failure is logged as a warning and never fails the run; the token and user key are never logged
or written anywhere (they are replaced by ``***`` in every message that could echo them).

Pushover accepts one attachment per message, at most 5,242,880 bytes (pushover.net/api); crops
are flattened onto white and sent as JPEG, recompressed and downscaled until they fit
``max_attachment_bytes``.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kiridashi import io as kio

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.pushover.net/1/messages.json"
PUSHOVER_ATTACHMENT_LIMIT = 5_242_880  # bytes, one attachment per message
MESSAGE_LIMIT = 1024  # characters
TITLE_LIMIT = 250
DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "api_url": DEFAULT_API_URL,
    "credentials_file": "config/pushover.json",
    "max_images": 3,
    "max_attachment_bytes": PUSHOVER_ATTACHMENT_LIMIT,
    "max_image_side": 2048,
    "timeout_s": 15,
    "title": "kiridashi",
}
JPEG_QUALITIES = (90, 80, 70, 60)


@dataclass(frozen=True)
class Credentials:
    token: str = field(repr=False)
    user: str = field(repr=False)

    def redact(self, text: str) -> str:
        for secret in (self.token, self.user):
            if secret:
                text = text.replace(secret, "***")
        return text


def _settings(cfg: dict | None) -> dict[str, Any]:
    return {**DEFAULTS, **(cfg or {})}


def load_credentials(cfg: dict | None = None) -> Credentials | None:
    """Environment first, then the credentials file; None when either value is missing."""
    token, user = os.environ.get("PUSHOVER_TOKEN"), os.environ.get("PUSHOVER_USER")
    if token and user:
        return Credentials(token.strip(), user.strip())
    path = Path(_settings(cfg)["credentials_file"])
    if not path.is_absolute():
        from kiridashi.cache import REPO_ROOT, main_repo_root

        path = (main_repo_root() or REPO_ROOT) / path
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("pushover: %s unreadable (%s) - notifications off", path, type(exc).__name__)
        return None
    token, user = str(doc.get("token") or "").strip(), str(doc.get("user") or "").strip()
    return Credentials(token, user) if token and user else None


def encode_attachment(
    image: np.ndarray, max_bytes: int = PUSHOVER_ATTACHMENT_LIMIT, max_side: int = 2048
) -> bytes:
    """JPEG bytes of an HxWx3 RGB or HxWx4 RGBA uint8 image (RGBA on white), <= ``max_bytes``.

    Downscales to ``max_side``, then lowers the quality, then halves the size until it fits.
    """
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 4:
        a = img[:, :, 3:4].astype(np.float32) / 255.0
        img = (img[:, :, :3].astype(np.float32) * a + 255.0 * (1.0 - a)).round().astype(np.uint8)
    bgr = cv2.cvtColor(np.ascontiguousarray(img[:, :, :3]), cv2.COLOR_RGB2BGR)
    scale = min(1.0, max_side / float(max(bgr.shape[:2])))
    while True:
        h, w = (max(1, round(v * scale)) for v in bgr.shape[:2])
        resized = bgr if scale == 1.0 else cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
        for quality in JPEG_QUALITIES:
            ok, buf = cv2.imencode(".jpg", resized, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok and len(buf) <= max_bytes:
                return buf.tobytes()
        if max(h, w) <= 16:
            raise ValueError(f"cannot fit an image into {max_bytes} bytes")
        scale *= 0.5


def multipart_body(
    fields: dict[str, str], attachment: tuple[str, bytes, str] | None = None
) -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data request; attachment: (filename, data, mime)."""
    boundary = f"kiridashi-{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + str(value).encode("utf-8")
            + b"\r\n"
        )
    if attachment is not None:
        filename, data, mime = attachment
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="attachment"; '
            f'filename="{filename}"\r\nContent-Type: {mime}\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def send_message(
    message: str,
    cfg: dict | None,
    credentials: Credentials,
    attachment: tuple[str, bytes, str] | None = None,
) -> bool:
    """POST one message (optionally with one attachment); True when the API accepted it."""
    s = _settings(cfg)
    fields = {
        "token": credentials.token,
        "user": credentials.user,
        "title": str(s["title"])[:TITLE_LIMIT],
        "message": message[:MESSAGE_LIMIT] or "-",
    }
    if attachment is not None:
        fields["attachment_type"] = attachment[2]
    body, content_type = multipart_body(fields, attachment)
    request = urllib.request.Request(
        str(s["api_url"]), data=body, headers={"Content-Type": content_type}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=float(s["timeout_s"])) as response:
            reply = json.loads(response.read().decode("utf-8") or "{}")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:300]
        log.warning("pushover: HTTP %s: %s", exc.code, credentials.redact(detail))
        return False
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.warning("pushover: not sent (%s)", credentials.redact(str(exc)))
        return False
    if reply.get("status") != 1:
        log.warning("pushover: rejected: %s", credentials.redact(str(reply.get("errors"))))
        return False
    return True


def _active(cfg: dict | None) -> Credentials | None:
    if not _settings(cfg)["enabled"]:
        return None
    credentials = load_credentials(cfg)
    if credentials is None:
        log.debug("pushover: no credentials - not notifying")
    return credentials


def extraction_summary(doc: dict, out_dir: Path, report: dict | None = None) -> str:
    """The summary message of an extraction run (plus the quality summary when given)."""
    from kiridashi.evaluate import summary_text

    s = doc.get("summary", {})
    text = (
        f"{s.get('processed', 0)} of {s.get('images', 0)} images processed, "
        f"{s.get('characters', 0)} characters cut out, {s.get('skipped', 0)} skipped"
        f" in {s.get('seconds', 0):.0f} s -> {out_dir}"
    )
    if report is not None and report["summary"].get("processed"):
        text += "\nquality: " + summary_text(report)
    return text


def pick_crops(doc: dict, report: dict | None, n: int) -> list[tuple[str, dict]]:
    """Up to ``n`` (source, character) of processed images, unflagged first, best score first."""
    flagged = {
        (e["source"], f.get("character"))
        for e in (report or {}).get("images", [])
        for f in e.get("flags", [])
    }
    candidates = [
        (rec["source"], ch)
        for rec in doc.get("images", [])
        if rec.get("status") == "ok"
        for ch in rec.get("characters", [])
        if ch.get("crop")
    ]
    candidates.sort(
        key=lambda sc: ((sc[0], sc[1].get("index")) in flagged, -sc[1].get("score", 0), sc[0])
    )
    return candidates[: max(0, n)]


def notify_extraction(
    doc: dict, out_dir: Path, cfg: dict | None = None, report: dict | None = None
) -> int:
    """Summary message, then up to ``max_images`` crops (one per message). Returns messages sent."""
    try:
        credentials = _active(cfg)
        if credentials is None:
            return 0
        s = _settings(cfg)
        if not send_message(extraction_summary(doc, out_dir, report), cfg, credentials):
            return 0  # unreachable or rejected: do not wait for the crops too
        sent = 1
        for source, ch in pick_crops(doc, report, int(s["max_images"])):
            try:
                crop = np.asarray(kio.decode_image(kio.read_bytes(Path(out_dir) / ch["crop"])).rgb)
                data = encode_attachment(
                    crop, int(s["max_attachment_bytes"]), int(s["max_image_side"])
                )
            except (kio.BadInput, OSError, ValueError) as exc:
                log.warning("pushover: crop %s not attached (%s)", ch.get("crop"), exc)
                continue
            name = Path(ch["crop"]).with_suffix(".jpg").name
            caption = f"{source} - character {ch.get('index')} (score {ch.get('score', 0):.2f})"
            sent += send_message(caption, cfg, credentials, (name, data, "image/jpeg"))
        return sent
    except Exception as exc:  # noqa: BLE001 - notifying must never fail a run
        log.warning("pushover: notification failed (%s)", type(exc).__name__)
        return 0


def notify_check(report: dict, cfg: dict | None = None) -> int:
    """The quality check's summary, without images. Returns messages sent (0 or 1)."""
    try:
        credentials = _active(cfg)
        if credentials is None:
            return 0
        from kiridashi.evaluate import summary_text

        text = f"quality check of {report.get('output_dir')}\n{summary_text(report)}"
        return int(send_message(text, cfg, credentials))
    except Exception as exc:  # noqa: BLE001 - notifying must never fail a run
        log.warning("pushover: notification failed (%s)", type(exc).__name__)
        return 0
