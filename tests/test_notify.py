"""Pushover notifications against a local HTTP server on 127.0.0.1 that records the requests."""

from __future__ import annotations

import email.parser
import email.policy
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from kiridashi import io as kio
from kiridashi import notify

TOKEN = "aTok3nThatMustNeverLeak0000000"
USER = "uUs3rKeyThatMustNeverLeak00000"


class _Recorder(BaseHTTPRequestHandler):
    requests: list[dict] = []
    status = 200

    def do_POST(self):  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        fields, files = {}, {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if part.get_filename():
                files[name] = (part.get_filename(), part.get_content_type(),
                               part.get_payload(decode=True))  # fmt: skip
            else:
                fields[name] = part.get_payload(decode=True).decode("utf-8")
        type(self).requests.append({"path": self.path, "fields": fields, "files": files})
        reply = {"status": 1, "request": "r"} if self.status == 200 else {"status": 0,
                 "errors": [f"token {TOKEN} is invalid"]}  # fmt: skip
        data = json.dumps(reply).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    _Recorder.requests, _Recorder.status = [], 200
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/1/messages.json", _Recorder
    httpd.shutdown()
    httpd.server_close()


def _output(tmp_path: Path, n_images: int = 3) -> tuple[dict, Path]:
    """An output folder with one large noisy RGBA crop per image (hard to compress)."""
    out = tmp_path / "out"
    rng = np.random.default_rng(0)
    images = []
    for i in range(n_images):
        crop = rng.integers(0, 256, (900, 700, 4), dtype=np.uint8)
        crop[..., 3] = 255
        kio.atomic_write_png(out / f"crops/img{i}_c0.png", crop)
        images.append({"source": f"img{i}.jpg", "status": "ok", "characters": [
            {"index": 0, "score": 0.5 + i / 10, "crop": f"crops/img{i}_c0.png"}]})  # fmt: skip
    images.append({"source": "bad.jpg", "status": "skipped", "reason": "zero-byte file"})
    doc = {"images": images, "summary": {"images": 4, "processed": 3, "skipped": 1,
                                         "characters": 3, "seconds": 2.0}}  # fmt: skip
    return doc, out


def _cfg(url: str, tmp_path: Path, **kw) -> dict:
    return {"api_url": url, "credentials_file": str(tmp_path / "none.json"), **kw}


def test_extraction_sends_summary_then_crops_under_the_size_limit(
    server, tmp_path, monkeypatch, caplog, capsys
):
    url, rec = server
    monkeypatch.setenv("PUSHOVER_TOKEN", TOKEN)
    monkeypatch.setenv("PUSHOVER_USER", USER)
    doc, out = _output(tmp_path)
    limit = 60_000  # far below a 900x700 noise JPEG: forces recompression and downscaling
    caplog.set_level(logging.DEBUG)
    sent = notify.notify_extraction(doc, out, _cfg(url, tmp_path, max_images=2,
                                                   max_attachment_bytes=limit))  # fmt: skip
    logged = caplog.text + capsys.readouterr().out + capsys.readouterr().err
    assert TOKEN not in logged and USER not in logged  # the product never logs the secrets
    assert sent == 3 and len(rec.requests) == 3
    for r in rec.requests:  # the exact requests, secrets masked by the test itself
        shown = {k: "<secret>" if k in ("token", "user") else v for k, v in r["fields"].items()}
        print(r["path"], shown, {k: (v[0], v[1], len(v[2])) for k, v in r["files"].items()})
    summary, *crops = rec.requests
    assert summary["path"] == "/1/messages.json" and summary["files"] == {}
    assert set(summary["fields"]) == {"token", "user", "title", "message"}
    assert summary["fields"]["token"] == TOKEN and summary["fields"]["user"] == USER
    assert (
        "3 of 4 images processed, 3 characters cut out, 1 skipped" in summary["fields"]["message"]
    )
    # the best-scored crops first, one attachment per message, each a JPEG under the limit
    assert [c["files"]["attachment"][0] for c in crops] == ["img2_c0.jpg", "img1_c0.jpg"]
    for c in crops:
        _, mime, data = c["files"]["attachment"]
        assert mime == "image/jpeg" and c["fields"]["attachment_type"] == "image/jpeg"
        assert data[:2] == b"\xff\xd8" and 0 < len(data) <= limit


def test_check_sends_only_a_summary(server, tmp_path, monkeypatch):
    url, rec = server
    creds = tmp_path / "pushover.json"
    creds.write_text(json.dumps({"token": TOKEN, "user": USER}))
    report = {"output_dir": "/x", "summary": {"scored": 1, "processed": 1, "skipped": 0,
              "mean_iou": 0.9, "mean_dice": 0.95, "mean_boundary_f": 0.8,
              "face_detection_rate": 1.0, "character_recall": 1.0, "character_precision": 1.0}}  # fmt: skip
    assert notify.notify_check(report, {"api_url": url, "credentials_file": str(creds)}) == 1
    assert len(rec.requests) == 1 and rec.requests[0]["files"] == {}
    assert "IoU 0.900" in rec.requests[0]["fields"]["message"]


def test_off_without_credentials_and_failures_are_warnings(server, tmp_path, monkeypatch, caplog):
    url, rec = server
    doc, out = _output(tmp_path, 1)
    assert notify.notify_extraction(doc, out, _cfg(url, tmp_path)) == 0
    assert rec.requests == []  # no credentials: nothing sent
    monkeypatch.setenv("PUSHOVER_TOKEN", TOKEN)
    monkeypatch.setenv("PUSHOVER_USER", USER)
    assert notify.notify_extraction(doc, out, _cfg(url, tmp_path, enabled=False)) == 0
    _Recorder.status = 400  # the API rejects (its error echoes the token)
    with caplog.at_level(logging.WARNING):
        assert notify.notify_extraction(doc, out, _cfg(url, tmp_path, max_images=0)) == 0
    assert "HTTP 400" in caplog.text and TOKEN not in caplog.text and "***" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # nothing listening: a warning, not an exception
        dead = "http://127.0.0.1:9/1/messages.json"
        assert notify.notify_extraction(doc, out, _cfg(dead, tmp_path, timeout_s=2)) == 0
    assert "not sent" in caplog.text and TOKEN not in caplog.text


def test_attachment_encoding_fits_pushover_limit():
    big = np.random.default_rng(1).integers(0, 256, (3000, 2500, 4), dtype=np.uint8)
    data = notify.encode_attachment(big)
    assert len(data) <= notify.PUSHOVER_ATTACHMENT_LIMIT == 5_242_880
    rgba = np.zeros((50, 40, 4), np.uint8)  # fully transparent -> white
    import cv2

    decoded = cv2.imdecode(np.frombuffer(notify.encode_attachment(rgba), np.uint8), 1)
    assert decoded.shape == (50, 40, 3) and decoded.min() > 240
    with pytest.raises(ValueError):
        notify.encode_attachment(big[:64, :64], max_bytes=10)


def test_kiridashi_check_notifies_and_writes_no_secret(server, tmp_path, monkeypatch, capsys):
    from kiridashi.cli import main
    from tests.test_dashboard import _report

    url, rec = server
    monkeypatch.setenv("PUSHOVER_TOKEN", TOKEN)
    monkeypatch.setenv("PUSHOVER_USER", USER)
    _report(tmp_path)  # writes tmp_path/out/extraction_results.json and its masks and crops
    results = tmp_path / "out" / "extraction_results.json"
    assert main(["check", "--results", str(results), f"notify.api_url={url}",
                 f"notify.credentials_file={tmp_path / 'none.json'}"]) == 0  # fmt: skip
    assert len(rec.requests) == 1 and rec.requests[0]["files"] == {}
    out = capsys.readouterr()
    written = [p.read_bytes() for p in (tmp_path / "out").iterdir() if p.is_file()]
    for blob in [out.out.encode(), out.err.encode(), *written]:
        assert TOKEN.encode() not in blob and USER.encode() not in blob
