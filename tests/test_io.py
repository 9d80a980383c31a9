"""Discovery, GT pairing, robust decoding and atomic writes (quirks corpus + synthetic files)."""

from __future__ import annotations

import io
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kiridashi import io as kio

SCORABLE = {
    "q00_control.jpg", "q01_gt_as_jpeg.jpg", "q02_two_masks.jpg", "q05_grayscale.jpg",
    "q06_rgba_cutout.png", "q07_cmyk.jpg", "q08_exif_orient6.jpg", "q09_16bit.png",
    "q10_palette.gif", "q11_animated.gif", "q12_webp.webp", "q13_upper.JPG", "かな08_0001.jpg",
    "q15 with spaces.jpg", "q16_tiny_24x24.jpg", "q17_large_6000x4000.jpg", "sub/q21_sub_a.jpg",
    "sub/q21_sub_b.jpg", "q23_gt_01_values.jpg", "q24_gt_rgb.jpg", "q25_gt_size_mismatch.jpg",
}  # fmt: skip


def _copy_quirks(src: Path, dst: Path) -> Path:
    """Copy the corpus and restore its two symlinks (shared/ stores them as text files)."""
    shutil.copytree(src, dst, symlinks=True)
    for name, target in (("q22_symlink.jpg", "q00_control.jpg"),
                         ("q22_symlink_gt.png", "q00_control_gt.png"),
                         ("q26_dangling_link.jpg", "does_not_exist.jpg")):  # fmt: skip
        link = dst / name
        if link.exists() and not link.is_symlink() and link.stat().st_size < 64:
            link.unlink()
            os.symlink(target, link)
    return dst


@pytest.fixture
def quirks(quirks_dir, tmp_path) -> Path:
    return _copy_quirks(quirks_dir, tmp_path / "quirks")


def test_discovery_pairs_ground_truth_by_exact_stem(quirks):
    found = kio.discover(quirks)
    items = {i.rel: i for i in found.items}
    with_gt = {rel for rel, i in items.items() if i.gt_path is not None}
    assert SCORABLE | {"q22_symlink.jpg"} <= with_gt
    assert items["q03_without_mask.jpg"].gt_path is None
    assert items["kana05_0000_cover.jpg"].gt_path is None  # never paired by prefix
    assert items["q02_two_masks.jpg"].gt_path.name == "q02_two_masks_gt.png"
    assert any("duplicate GT" in n for n in items["q02_two_masks.jpg"].notes)
    assert any("lossy GT" in n for n in items["q01_gt_as_jpeg.jpg"].notes)
    assert "kana05_00060_cover_gt.png" in found.unmatched_gt
    assert not any(rel.startswith("._") for rel in items)  # hidden AppleDouble file
    assert not any(kio.is_gt_name(Path(rel)) for rel in items)
    assert [s.rel for s in found.skipped] == ["q26_dangling_link.jpg"]


@pytest.mark.parametrize(
    "name, reason",
    [
        ("q18_truncated.jpg", "truncated"),
        ("q19_zero_bytes.jpg", "zero-byte"),
        ("q20_text_not_image.png", "not an image"),
    ],
)
def test_bad_files_get_a_one_line_reason(quirks, name, reason):
    with pytest.raises(kio.BadInput) as exc:
        kio.load_image(quirks / name)
    assert reason in str(exc.value) and "\n" not in str(exc.value)


def test_every_scorable_quirk_decodes_to_rgb_matching_its_gt(quirks):
    found = {i.rel: i for i in kio.discover(quirks).items}
    for rel in sorted(SCORABLE):
        item = found[rel]
        img = kio.load_image(item.path)
        assert img.rgb.dtype == np.uint8 and img.rgb.ndim == 3 and img.rgb.shape[2] == 3, rel
        gt, _ = kio.load_mask(item.gt_path)
        if rel != "q25_gt_size_mismatch.jpg":
            assert gt.shape == img.rgb.shape[:2], rel
            assert gt.any(), f"{rel}: GT must not come out empty"


def test_special_decodes(quirks):
    exif = kio.load_image(quirks / "q08_exif_orient6.jpg")
    assert exif.rgb.shape[:2] == (900, 1600)  # displayed orientation
    anim = kio.load_image(quirks / "q11_animated.gif")
    assert any("frame 0" in n for n in anim.notes)
    deep = kio.load_image(quirks / "q09_16bit.png")
    assert deep.rgb.max() > 200  # scaled to 8 bit, not clipped to a flat 255
    rgba = kio.load_image(quirks / "q06_rgba_cutout.png")
    assert rgba.alpha is not None and rgba.alpha.min() == 0
    _, notes = kio.load_mask(quirks / "q23_gt_01_values_gt.png")
    assert any("0/1" in n for n in notes)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height but carries almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    body = struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    idat = b"IDAT" + zlib.compress(b"\x00" * 64)
    body += struct.pack(">I", len(idat) - 4) + idat + struct.pack(">I", zlib.crc32(idat))
    return b"\x89PNG\r\n\x1a\n" + body


def test_decompression_bomb_refused_before_decoding():
    data = _png_header_only(100_000, 100_000)
    with pytest.raises(kio.BadInput, match="refused before decoding"):
        kio.decode_image(data, max_pixels=64_000_000)


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "out" / "a.png"
    kio.atomic_write_png(target, np.zeros((4, 4), np.uint8))
    before = target.read_bytes()

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        kio.atomic_write_png(target, np.full((4, 4), 255, np.uint8))
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.png"]


def test_grayscale_and_palette_roundtrip(tmp_path):
    gray = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8))
    buf = io.BytesIO()
    gray.save(buf, format="PNG")
    out = kio.decode_image(buf.getvalue())
    assert out.rgb.shape == (8, 8, 3) and (out.rgb[:, :, 0] == out.rgb[:, :, 2]).all()


def test_symlinks_stored_as_text_files_are_followed(quirks_dir):
    """../shared keeps the corpus's links as git symlink stubs (core.symlinks=false): a live one
    is followed (image and GT), a dead one is a clean skip."""
    stub = quirks_dir / "q22_symlink.jpg"
    if stub.is_symlink() or stub.stat().st_size > kio.LINK_STUB_MAX_BYTES:
        pytest.skip("this copy of the corpus has real symlinks")
    found = kio.discover(quirks_dir)
    items = {i.rel: i for i in found.items}
    link = items["q22_symlink.jpg"]
    assert any("symlink stored as a text file" in n for n in link.notes)
    assert kio.read_bytes(link.path) == (quirks_dir / "q00_control.jpg").read_bytes()
    gt, _ = kio.load_mask(link.gt_path)
    assert gt.shape == kio.load_mask(quirks_dir / "q00_control_gt.png")[0].shape
    skipped = {s.rel: s.reason for s in found.skipped}
    assert skipped["q26_dangling_link.jpg"].startswith("dangling link")
    assert "does_not_exist.jpg" in skipped["q26_dangling_link.jpg"]
    assert kio.link_stub_target(quirks_dir / "q20_text_not_image.png") is None  # prose, not a path
