"""`kiridashi models fetch`: sha256-checked, atomic downloads from a local HTTP server."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kiridashi import models

PAYLOAD = b"kiridashi test model \x00\x01" * 4096


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path):
    """http://127.0.0.1:PORT serving tmp_path/served (model.bin = PAYLOAD)."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "model.bin").write_bytes(PAYLOAD)
    handler = functools.partial(_QuietHandler, directory=str(served))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _register(monkeypatch, url: str, sha256: str | None) -> None:
    entry = dataclasses.replace(models.REGISTRY["sam_vit_b"], url=url, sha256=sha256)
    monkeypatch.setitem(models.REGISTRY, "sam_vit_b", entry)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_fetch_good_digest_puts_the_file_in_place(server, tmp_path, monkeypatch):
    _register(monkeypatch, f"{server}/model.bin", hashlib.sha256(PAYLOAD).hexdigest())
    target = models.fetch("sam_vit_b", tmp_path / "models")
    assert target == tmp_path / "models" / "sam_vit_b_01ec64.pth"
    assert target.read_bytes() == PAYLOAD
    assert _leftovers(tmp_path / "models") == ["sam_vit_b_01ec64.pth"]  # no .part file
    assert models.fetch("sam_vit_b", tmp_path / "models") == target  # present: kept


def test_fetch_bad_digest_fails_and_leaves_nothing(server, tmp_path, monkeypatch):
    _register(monkeypatch, f"{server}/model.bin", "0" * 64)
    with pytest.raises(models.ModelError, match="sha256 mismatch"):
        models.fetch("sam_vit_b", tmp_path / "models")
    assert _leftovers(tmp_path / "models") == []


def test_fetch_http_error_and_unreachable_are_one_line_errors(server, tmp_path, monkeypatch):
    _register(monkeypatch, f"{server}/missing.bin", "0" * 64)
    with pytest.raises(models.ModelError, match="404") as err:
        models.fetch("sam_vit_b", tmp_path / "models")
    assert "\n" not in str(err.value)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _register(monkeypatch, f"http://127.0.0.1:{port}/model.bin", "0" * 64)
    with pytest.raises(models.ModelError, match="cannot download sam_vit_b") as err:
        models.fetch("sam_vit_b", tmp_path / "models", timeout=5)
    assert "\n" not in str(err.value) and "urlopen error" not in str(err.value)
    assert _leftovers(tmp_path / "models") == []


def test_cli_fetch_failure_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KIRIDASHI_MODELS_DIR", str(tmp_path / "models"))
    _register(monkeypatch, "http://127.0.0.1:9/model.bin", "0" * 64)
    args = argparse.Namespace(models_command="fetch", names=["sam_vit_b", "no_such_model"])
    assert models.main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert err[0].startswith("sam_vit_b: cannot download")
    assert err[1].startswith("no_such_model: unknown model")


def test_fingerprint_is_cheap_stable_and_content_based(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"x" * (3 << 20))
    b.write_bytes(b"x" * (3 << 20))
    assert models.file_fingerprint(a) == models.file_fingerprint(b)
    b.write_bytes(b"x" * (3 << 20) + b"y")
    assert models.file_fingerprint(a) != models.file_fingerprint(b)


def test_official_sam_digests():
    """The SAM sha256 values as published (checked against several independent sources)."""
    assert models.REGISTRY["sam_vit_b"].sha256.startswith("ec2df627")
    assert models.REGISTRY["sam_vit_l"].sha256.startswith("3adcc431")
    assert models.REGISTRY["sam_vit_h"].sha256.startswith("a7bf3b02")
    assert models.fetch_name_for("sam_vit_h_4b8939.pth") == "sam_vit_h"


def test_an_invalid_figure_net_is_skipped_with_one_line(tmp_path):
    """A corrupt figure_net.onnx in models_dir (it overrides the bundled one): the detector and
    the cut's figure prior are skipped with a one-line reason, and the cut still works."""
    import numpy as np

    from kiridashi.detectors.base import MissingModel
    from kiridashi.detectors.figure_net import FigureNet
    from kiridashi.segmenters.anime import AnimeRegionCut
    from kiridashi.types import Character

    (tmp_path / "figure_net.onnx").write_bytes(b"not an onnx model" * 100)
    with pytest.raises(MissingModel, match="not a valid ONNX model"):
        FigureNet("figure_net", models_dir=tmp_path)
    seg = AnimeRegionCut(figure={"enabled": True}, models_dir=tmp_path)
    image = np.full((120, 160, 3), 200, np.uint8)
    ch = Character(box=(40.0, 20.0, 120.0, 120.0), score=0.9, detectors=["lbp_cascade"])
    assert seg.figure_probability(image, [ch], 1.0, (120, 160)) is None
    assert seg.segment(image, [ch], memo=None)[0].shape == (120, 160)
