"""The demo-data generator: procedural and Ren'Py builds, determinism, idempotence, fallback."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kiridashi import demo

EXPAT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: Fake

Files: *
Copyright: 2004-2022 Test Author <test@example.org>
License: Expat

License: Expat
 Permission is hereby granted, free of charge, to any person obtaining a copy.
 .
 THE SOFTWARE IS PROVIDED "AS IS".
"""


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _check_dataset(folder: Path, summary: dict) -> None:
    """Every image has an RGB JPEG <= 1280 px and a same-size 0/255 L PNG; GT empty iff no one."""
    assert (folder / demo.LICENSES_NAME).is_file()
    assert (folder / demo.MANIFEST_NAME).is_file()
    for item in summary["images"]:
        with Image.open(folder / f"{item['name']}.jpg") as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            assert max(im.size) <= 1280
            size = im.size
        with Image.open(folder / f"{item['name']}_gt.png") as gt_im:
            assert gt_im.format == "PNG" and gt_im.mode == "L"
            assert gt_im.size == size
            gt = np.asarray(gt_im)
        assert set(np.unique(gt).tolist()) <= {0, 255}
        if item["n_chars"]:
            assert 0.01 < (gt > 0).mean() < 0.9, item["name"]
        else:
            assert not gt.any(), item["name"]


@pytest.fixture(scope="module")
def proc_build(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("proc") / "input"
    return out, demo.build_demo(out, n_images=4, seed=0, source="procedural")


def test_procedural_build(proc_build):
    out, summary = proc_build
    assert summary["source"] == "procedural" and not summary["skipped"]
    assert [im["n_chars"] for im in summary["images"]] == [1, 2, 1, 0]
    assert summary["written"] == 2 * 4 + 2  # images, masks, LICENSES.txt, manifest
    _check_dataset(out, summary)
    manifest = json.loads((out / demo.MANIFEST_NAME).read_text())
    assert (manifest["source"], manifest["seed"], manifest["n_images"]) == ("procedural", 0, 4)
    assert "MIT" in (out / demo.LICENSES_NAME).read_text()


def test_procedural_is_deterministic(proc_build, tmp_path):
    out, _ = proc_build
    demo.build_demo(tmp_path / "again", n_images=4, seed=0, source="procedural")
    assert _files(tmp_path / "again") == _files(out)
    demo.build_demo(tmp_path / "other", n_images=4, seed=1, source="procedural")
    assert _files(tmp_path / "other") != _files(out)


def test_second_build_does_nothing(proc_build):
    out, _ = proc_build
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    summary = demo.build_demo(out, n_images=4, seed=0, source="procedural")
    assert summary["skipped"] and summary["written"] == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes
    assert "nothing to do" in demo.format_summary(summary)


def test_damaged_dataset_is_repaired_and_stale_files_removed(tmp_path):
    out = tmp_path / "d"
    first = demo.build_demo(out, n_images=4, seed=0, source="procedural")
    victim = out / f"{first['images'][0]['name']}.jpg"
    good = victim.read_bytes()
    victim.write_bytes(good[:100])
    again = demo.build_demo(out, n_images=4, seed=0, source="procedural")
    assert not again["skipped"] and again["written"] == 2  # the broken image and the manifest
    assert victim.read_bytes() == good
    (out / "mine.txt").write_text("not ours")
    smaller = demo.build_demo(out, n_images=2, seed=0, source="procedural")
    expected = {f"{im['name']}{sfx}" for im in smaller["images"] for sfx in (".jpg", "_gt.png")}
    expected |= {demo.LICENSES_NAME, demo.MANIFEST_NAME, "mine.txt"}
    assert {p.name for p in out.iterdir()} == expected


def test_files_are_readable_and_no_temp_files_left(proc_build):
    out, _ = proc_build
    for p in out.iterdir():
        assert not p.name.startswith("."), p
        assert p.stat().st_mode & stat.S_IRGRP


def test_composite_gt_is_union_alpha_threshold():
    bg = np.full((10, 12, 3), 100, np.uint8)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :2, 3] = 255  # opaque half
    rgba[:, 2, 3] = 140  # just above the threshold
    rgba[:, 3, 3] = 100  # below it
    layer = demo.premultiplied_layer(rgba, 4, mirror=False)
    rgb, alpha = demo.composite(bg, [(layer, 10, 8)])  # clipped at the right and bottom
    gt = demo.gt_from_alpha(alpha)
    assert gt.dtype == np.uint8 and gt.shape == (10, 12)
    assert gt[8:, 10:].all() and gt.sum() == 4 * 255
    assert (rgb[:8] == 100).all() and tuple(rgb[9, 10]) == (255, 0, 0)
    # two half-transparent layers: union alpha = 1 - (1 - a)(1 - a) crosses 128
    half = np.zeros((2, 2, 4), np.uint8)
    half[..., 3] = 90
    lay = demo.premultiplied_layer(half, 2, mirror=False)
    _, alpha2 = demo.composite(bg, [(lay, 0, 0), (lay, 0, 0)])
    assert alpha2[0, 0] == round(255 * (1 - (1 - 90 / 255) ** 2))
    assert demo.gt_from_alpha(alpha2)[0, 0] == 255


def test_plan_mix():
    counts = demo.plan_char_counts(16)
    assert counts.count(0) == 1 and counts.count(1) == 10 and sum(c > 1 for c in counts) == 5
    assert demo.plan_char_counts(3) == [1, 2, 1]


def test_procedural_character_looks_like_a_figure():
    rgba = demo.draw_character(np.random.default_rng(3), height=600)
    assert rgba.shape[2] == 4 and rgba.dtype == np.uint8
    assert demo.is_character_sprite(rgba)


# ----------------------------------------------------------------------------- Ren'Py path


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    out = b"!<arch>\n"
    for name, data in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    return out


def _fake_deb(path: Path, files: dict[str, bytes]) -> None:
    """A minimal .deb (ar: debian-binary, control.tar.xz, data.tar.xz) holding ``files``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(_ar([("debian-binary", b"2.0\n"), ("control.tar.xz", b""),
                          ("data.tar.xz", buf.getvalue())]))  # fmt: skip


def _png(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def fake_apt(tmp_path, monkeypatch) -> Path:
    """An ``apt-get`` on PATH that 'downloads' the .debs found in the returned folder."""
    debs = tmp_path / "debs"
    bindir = tmp_path / "bin"
    debs.mkdir()
    bindir.mkdir()
    script = bindir / "apt-get"
    script.write_text(
        "#!/bin/sh\n"
        '[ "$1" = download ] || exit 0\n'
        "shift; rc=0\n"
        'for p in "$@"; do\n'
        f'  if [ -f "{debs}/${{p}}_1.0-1_all.deb" ]; then cp "{debs}/${{p}}_1.0-1_all.deb" .;\n'
        '  else echo "E: Unable to locate package $p" >&2; rc=100; fi\n'
        "done\n"
        "exit $rc\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    return debs


def test_auto_falls_back_to_procedural(fake_apt, tmp_path, caplog):
    summary = demo.build_demo(tmp_path / "out", n_images=2, source="auto", cache_dir=tmp_path / "c")
    assert summary["source"] == "procedural" and summary["requested"] == "auto"
    assert "Unable to locate package" in summary["fallback_reason"]
    assert any("using procedural art" in r.getMessage() for r in caplog.records)
    with pytest.raises(demo.DemoSourceError):
        demo.build_demo(tmp_path / "out2", n_images=2, source="renpy", cache_dir=tmp_path / "c")


def test_renpy_path_offline_with_a_fake_package(fake_apt, tmp_path):
    rng = np.random.default_rng(0)
    sprite = demo.draw_character(rng, height=700)
    bg = demo.draw_background(rng, "room", (1280, 720))
    root = "usr/share/games/renpy/fake/game/images"
    _fake_deb(fake_apt / "renpy-demo_1.0-1_all.deb", {
        f"{root}/eileen happy.png": _png(sprite),
        f"{root}/eileen sad.png": _png(sprite[:, ::-1].copy()),
        f"{root}/bg room.jpg": _png(bg, "JPEG"),
        f"{root}/bg flat.png": _png(np.zeros((720, 1280, 3), np.uint8)),
        f"{root}/button idle.png": _png(np.zeros((40, 200, 4), np.uint8)),
        "usr/share/doc/renpy-demo/copyright": EXPAT.encode(),
    })  # fmt: skip
    cache = tmp_path / "cache"
    summary = demo.build_demo(tmp_path / "out", n_images=3, source="auto", cache_dir=cache)
    assert summary["source"] == "renpy", summary["fallback_reason"]
    assert summary["packages"] == {"renpy-demo": "1.0-1"}  # renpy-thequestion is 'missing'
    _check_dataset(tmp_path / "out", summary)
    assert {c for im in summary["images"] for c in im["characters"]} <= {
        "eileen_happy",
        "eileen_sad",
    }
    assert {im["background"] for im in summary["images"]} == {"bg_room"}
    lic = (tmp_path / "out" / demo.LICENSES_NAME).read_text()
    assert "Test Author" in lic and "License: Expat" in lic and "bg room.jpg" in lic
    # cached: a second build needs no apt at all
    shutil.rmtree(fake_apt)
    again = demo.build_demo(tmp_path / "out2", n_images=3, source="renpy", cache_dir=cache)
    first, second = _files(tmp_path / "out"), _files(tmp_path / "out2")
    first.pop(demo.MANIFEST_NAME), second.pop(demo.MANIFEST_NAME)  # requested: auto vs renpy
    assert second == first
    assert again["source"] == "renpy" and again["images"] == summary["images"]


def test_renpy_refuses_non_mit_art(fake_apt, tmp_path):
    sprite = demo.draw_character(np.random.default_rng(1), height=700)
    bg = demo.draw_background(np.random.default_rng(1), "outdoor", (1280, 720))
    root = "usr/share/games/renpy/fake/game/images"
    _fake_deb(fake_apt / "renpy-demo_1.0-1_all.deb", {
        f"{root}/lucy happy.png": _png(sprite),
        f"{root}/bg park.png": _png(bg),
        "usr/share/doc/renpy-demo/copyright": EXPAT.replace("Expat", "CC-BY-NC-4.0").encode(),
    })  # fmt: skip
    with pytest.raises(demo.DemoSourceError, match="CC-BY-NC"):
        demo.build_demo(tmp_path / "out", n_images=1, source="renpy", cache_dir=tmp_path / "c")


@pytest.fixture(scope="module")
def renpy_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("renpy-cache")


def test_renpy_real_packages(renpy_cache, tmp_path):
    """Downloads renpy-thequestion + renpy-demo (34 MB) with apt-get; skipped where unavailable."""
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get not available: the Ren'Py demo art needs a Debian-based system")
    try:
        summary = demo.build_demo(
            tmp_path / "out", 3, seed=0, source="renpy", cache_dir=renpy_cache
        )
    except demo.DemoSourceError as exc:
        pytest.skip(f"Ren'Py packages unavailable here: {exc}")
    assert summary["source"] == "renpy"
    assert set(summary["packages"]) <= set(demo.RENPY_PACKAGES)
    _check_dataset(tmp_path / "out", summary)
    chars = {c.split("_")[0] for im in summary["images"] for c in im["characters"]}
    assert chars <= set(demo.KNOWN_CHARACTERS) and chars
    lic = (tmp_path / "out" / demo.LICENSES_NAME).read_text()
    assert "License: Expat" in lic and "Rothamel" in lic


def test_cli_prints_one_line(tmp_path, capsys):
    assert demo.main([str(tmp_path / "o"), "--n", "1", "--source", "procedural"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("demo: wrote 4 files")
