"""The dashboard: self-contained HTML, rendered by headless Chromium (skipped without it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kiridashi import io as kio
from kiridashi.evaluate import build_report
from kiridashi.report import render_dashboard, write_dashboard
from tests.test_evaluate import _results, _scene

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("chromium not installed (CI installs Debian's chromium)")


def _run_chromium(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    return subprocess.run(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _report(tmp_path: Path) -> dict:
    """Three scored images with IoU ~0.7 (cut), 1.0 (exact) and ~0.88 (grown), plus one skipped."""
    import cv2

    rgb, mask = _scene()
    inp, out = tmp_path / "in", tmp_path / "out"
    cut = mask.copy()
    cut[150:] = False
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    images = []
    for name, pred in (("cut", cut), ("exact", mask), ("grown", grown)):
        kio.atomic_write_png(inp / f"{name}.png", rgb)
        kio.atomic_write_png(inp / f"{name}_gt.png", (mask * 255).astype(np.uint8))
        kio.atomic_write_png(out / f"masks/{name}.png", (pred * 255).astype(np.uint8))
        crop = np.dstack([rgb, (pred * 255).astype(np.uint8)])[30:195, 45:160]
        kio.atomic_write_png(out / f"crops/{name}_c0.png", crop)
        ch = {"index": 0, "box": [45, 30, 160, 195], "face_box": [80, 45, 120, 85],
              "keypoints": {"pose.nose": [100, 60, 0.9], "pose.left_ankle": [100, 190, 0.9]},
              "crop": f"crops/{name}_c0.png"}  # fmt: skip
        images.append({"source": f"{name}.png", "status": "ok", "gt": f"{name}_gt.png",
                       "mask": f"masks/{name}.png", "characters": [ch]})  # fmt: skip
    images.append({"source": "broken.png", "status": "skipped", "reason": "zero-byte file"})
    return build_report(_results(tmp_path, images))


def test_dashboard_is_self_contained(tmp_path):
    report = _report(tmp_path)
    history = [{"label": f"run{i}", "metrics": {"mean_iou": 0.5 + i / 10}} for i in range(3)]
    page = render_dashboard(report, history)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # no network resource
    assert "<script src" not in page and "<link" not in page
    assert page.count('class="img-row"') == 3  # processed images only
    assert page.count("data:image/jpeg;base64,") == 6  # outlines + overlay per image
    assert (
        page.index(">cut.png") < page.index(">grown.png") < page.index(">exact.png")
    )  # worst first
    assert "cut_off" in page and "left_ankle" in page  # flag and point outside the mask
    assert page.index('id="images"') < page.index('id="history"')  # history below the table
    assert page.count("<polyline") == 1 and "run2" in page


def test_dashboard_renders_and_sorts_in_chromium(tmp_path):
    _chromium()
    report = _report(tmp_path)
    html_path = tmp_path / "dashboard.html"
    history = [{"label": f"run{i}", "metrics": {"mean_iou": 0.6 + i / 10}} for i in range(3)]
    write_dashboard(report, html_path, history)
    dom = _run_chromium(tmp_path, html_path.as_uri(), "--dump-dom").stdout
    assert dom.count('class="img-row"') == 3
    assert len(re.findall(r"<img alt=\"?outlines", dom)) == 3
    assert len(re.findall(r"<img alt=\"?overlay", dom)) == 3
    assert dom.count('class="card"') >= 10 and "<polyline" in dom

    def row_order(fragment: str) -> list[str]:
        page = _run_chromium(tmp_path, f"{html_path.as_uri()}#sort={fragment}", "--dump-dom")
        return re.findall(r'<tr class="img-row"><td class="name" data-v="([^"]+)"', page.stdout)

    assert row_order("iou") == ["cut.png", "grown.png", "exact.png"]  # ascending, by the script
    assert row_order("-iou") == ["exact.png", "grown.png", "cut.png"]
    assert row_order("image") == ["cut.png", "exact.png", "grown.png"]
    shot = tmp_path / "dashboard.png"
    proc = _run_chromium(tmp_path, html_path.as_uri(), f"--screenshot={shot}",
                         "--window-size=1200,1600")  # fmt: skip
    assert shot.is_file(), proc.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1200, 1600)
        pixels = np.asarray(img.convert("RGB"))
    assert 20_000 < shot.stat().st_size < 20_000_000
    assert pixels.std() > 10  # not a blank page
    print(f"screenshot {shot.stat().st_size} bytes, {img.size}")


def test_dashboard_has_a_legend_of_its_colours(tmp_path):
    from kiridashi.overlay import COLOURS

    page = render_dashboard(_report(tmp_path), [])
    legend = page[page.index('id="legend"') : page.index('<table id="images"')]
    for text in ("ground-truth outline", "predicted outline", "face box", "outside"):
        assert text in legend, text
    for colour in ((0, 220, 0), (255, 0, 255), *COLOURS):  # the colours the drawings use
        assert "#{:02x}{:02x}{:02x}".format(*colour) in legend


def test_a_click_on_a_thumbnail_enlarges_it_in_chromium(tmp_path):
    _chromium()
    html_path = tmp_path / "dashboard.html"
    write_dashboard(_report(tmp_path), html_path, [])
    clicked = tmp_path / "clicked.html"
    clicked.write_text(
        html_path.read_text().replace(
            "</body>", "<script>document.querySelector('td img').click()</script></body>"
        )
    )
    before = _run_chromium(tmp_path, html_path.as_uri(), "--dump-dom").stdout
    after = _run_chromium(tmp_path, clicked.as_uri(), "--dump-dom").stdout
    assert re.search(r'<div id="zoom" hidden="">', before)
    zoom = re.search(r'<div id="zoom"[^>]*><img alt="outlines" src="data:image/jpeg', after)
    assert zoom and "hidden" not in zoom.group(0), after[after.index('id="zoom"') - 20 :][:300]
