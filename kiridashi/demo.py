"""Build a small labelled demo dataset: ``NAME.jpg`` + exact ``NAME_gt.png`` per image.

Two sources of art:

* ``renpy`` — the MIT/Expat-licensed character sprites and backgrounds of Debian's
  ``renpy-thequestion`` and ``renpy-demo`` packages, fetched with ``apt-get download`` (no root
  needed), unpacked in pure Python (``ar`` + ``tarfile``; ``dpkg-deb`` as a fallback) and cached.
* ``procedural`` — anime-style characters and backgrounds drawn with OpenCV; no downloads.

``auto`` tries ``renpy`` and falls back to ``procedural`` on any failure.

Each image is a 1280x720 canvas with 0-3 characters composited (premultiplied alpha) onto a
background; its ground truth is ``255 * (union alpha >= 128)``, exactly what is visible. The
build is deterministic for a given (source, seed, n) and idempotent: a complete dataset recorded
in ``DEMO_MANIFEST.json`` is left alone. Every file is written atomically (temp file +
``os.replace``).

Array conventions: images are HxWx3 uint8 RGB, sprites HxWx4 uint8 RGBA (straight alpha), masks
HxW uint8 0/255; float layers are premultiplied HxWx4 float32 in [0, 1].
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import cv2
import numpy as np
from PIL import Image

from kiridashi.io import atomic_write_bytes

log = logging.getLogger("kiridashi.demo")

GENERATOR_VERSION = 1  # bump whenever the output bytes for a given (source, seed, n) change
EXTRACT_VERSION = 1  # bump whenever the cached extraction layout changes
CANVAS_W, CANVAS_H = 1280, 720
JPEG_QUALITY = 92
MANIFEST_NAME = "DEMO_MANIFEST.json"
LICENSES_NAME = "LICENSES.txt"
SOURCES = ("auto", "renpy", "procedural")

RENPY_PACKAGES = ("renpy-thequestion", "renpy-demo")
KNOWN_CHARACTERS = ("eileen", "lucy", "sylvie")  # the named sprites of the two Ren'Py games
OK_LICENSES = ("expat", "mit")
IMAGE_SUFFIXES = (".png", ".webp", ".jpg", ".jpeg")
APT_TIMEOUT_S = 600
# apt messages meaning "this package is not in the (missing or stale) package lists"
STALE_LIST_ERRORS = ("unable to locate package", "has no installation candidate", "404",
                     "can't select", "no packages found")  # fmt: skip


class DemoSourceError(RuntimeError):
    """The requested art source cannot be used; ``str(exc)`` is a one-line reason."""


# ============================================================================ art containers


@dataclass(frozen=True)
class Sprite:
    """A character cut-out.

    rgba: HxWx4 uint8, straight alpha, cropped to the alpha > 0 bounding box.
    cut_bottom: the figure is cut off at the sprite's bottom edge (a waist-up VN sprite), so it
    must be placed with its bottom at or below the canvas bottom.
    """

    name: str
    rgba: np.ndarray
    cut_bottom: bool


@dataclass(frozen=True)
class Background:
    """A background image; rgb: HxWx3 uint8 of any size (it is scaled to cover the canvas)."""

    name: str
    rgb: np.ndarray


class ArtSource(Protocol):
    """Where sprites and backgrounds come from."""

    name: str

    def pick_background(self, rng: np.random.Generator) -> Background: ...

    def pick_sprites(self, rng: np.random.Generator, k: int) -> list[Sprite]: ...

    def licence_text(self, used: set[str]) -> str: ...

    def licence_summary(self) -> list[str]: ...

    def provenance(self) -> dict[str, str]: ...


def crop_to_alpha(rgba: np.ndarray) -> np.ndarray:
    """HxWx4 RGBA -> the sub-array inside the bounding box of alpha > 0 (unchanged if empty)."""
    ys, xs = np.nonzero(rgba[..., 3])
    if ys.size == 0:
        return rgba
    return rgba[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def bottom_is_cut(rgba: np.ndarray) -> bool:
    """True when the bottom row of an HxWx4 sprite is largely opaque (figure cut by the frame)."""
    return bool((rgba[-1, :, 3] >= 128).mean() > 0.05)


def make_sprite(name: str, rgba: np.ndarray) -> Sprite:
    """A :class:`Sprite` from an HxWx4 uint8 RGBA array (cropped to its alpha)."""
    cropped = np.ascontiguousarray(crop_to_alpha(rgba))
    return Sprite(name=name, rgba=cropped, cut_bottom=bottom_is_cut(cropped))


# ============================================================================ compositing


def plan_char_counts(n_images: int) -> list[int]:
    """Characters per image: mostly 1, every third image 2 or 3, the last one 0 when n >= 4."""
    counts = []
    for i in range(n_images):
        counts.append((2 if (i // 3) % 2 == 0 else 3) if i % 3 == 1 else 1)
    if n_images >= 4:
        counts[-1] = 0
    return counts


def fit_background(bg: np.ndarray, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Scale an HxWx3 background to cover ``size`` = (W, H), crop a random window, maybe mirror."""
    w, h = size
    bh, bw = bg.shape[:2]
    scale = max(w / bw, h / bh)
    nw, nh = max(w, round(bw * scale)), max(h, round(bh * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = bg if (nw, nh) == (bw, bh) else cv2.resize(bg, (nw, nh), interpolation=interp)
    x0 = int(rng.integers(0, nw - w + 1))
    y0 = int(rng.integers(0, nh - h + 1))
    out = resized[y0 : y0 + h, x0 : x0 + w]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def premultiplied_layer(rgba: np.ndarray, height: int, mirror: bool) -> np.ndarray:
    """HxWx4 uint8 straight RGBA -> hxwx4 float32 premultiplied, scaled to ``height`` rows."""
    src = rgba[:, ::-1] if mirror else rgba
    f = src.astype(np.float32) / 255.0
    f[..., :3] *= f[..., 3:4]
    h0, w0 = f.shape[:2]
    width = max(1, round(w0 * height / h0))
    interp = cv2.INTER_AREA if height < h0 else cv2.INTER_LINEAR
    out = cv2.resize(np.ascontiguousarray(f), (width, height), interpolation=interp)
    return np.clip(out, 0.0, 1.0)


@dataclass(frozen=True)
class Placement:
    """Where one sprite goes: top-left (x, y) on the canvas, scaled height, mirroring."""

    x: int
    y: int
    height: int
    mirror: bool


def _vertical_extent(
    rng: np.random.Generator, cut_bottom: bool, lo: float, hi: float
) -> tuple[float, float]:
    """(scaled height, top y) as canvas-height fractions; the visible part is lo..hi of it."""
    visible = float(rng.uniform(lo, hi))
    if cut_bottom:  # bottom edge of a waist-up sprite must never show
        overflow = float(rng.uniform(0.02, 0.15))
        return visible + overflow, 1.0 - visible
    overflow = float(rng.uniform(-0.04, 0.08))
    if overflow >= 0:
        return visible + overflow, 1.0 - visible
    overflow = max(overflow, visible - 0.97)  # keep the head at least 3 % below the top
    return visible, 1.0 - visible + overflow


def layout_sprites(
    rng: np.random.Generator, sprites: Sequence[Sprite], size: tuple[int, int]
) -> list[Placement]:
    """Place 1-3 sprites left to right, fully inside horizontally, some multi images overlapping."""
    w, h = size
    k = len(sprites)
    lo, hi = (0.70, 0.95) if k == 1 else (0.55, 0.85)
    ext = [_vertical_extent(rng, s.cut_bottom, lo, hi) for s in sprites]
    heights = [e[0] * h for e in ext]
    widths = [
        s.rgba.shape[1] * hh / s.rgba.shape[0] for s, hh in zip(sprites, heights, strict=True)
    ]
    overlap = k > 1 and rng.random() < 0.5
    gap_frac = -float(rng.uniform(0.10, 0.30)) if overlap else float(rng.uniform(0.02, 0.08))
    gap = gap_frac * (min(widths) if overlap else w)
    margin = 0.02 * w
    total = sum(widths) + gap * (k - 1)
    shrink = min(1.0, (w - 2 * margin) / total) if total > 0 else 1.0
    heights = [hh * shrink for hh in heights]
    widths = [ww * shrink for ww in widths]
    gap *= shrink
    total *= shrink
    x = margin + float(rng.uniform(0, max(0.0, w - 2 * margin - total)))
    out = []
    for (hfrac, top), hh, ww in zip(ext, heights, widths, strict=True):
        bottom = (top + hfrac) * h  # keep the bottom where it was when shrinking
        out.append(Placement(round(x), round(bottom - hh), max(1, round(hh)), rng.random() < 0.5))
        x += ww + gap
    return out


def composite(
    background: np.ndarray, layers: Sequence[tuple[np.ndarray, int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Alpha-blend premultiplied hxwx4 float layers at (x, y) over an HxWx3 uint8 background.

    Returns (HxWx3 uint8 RGB, HxW uint8 union alpha); layers are drawn in order (last on top) and
    clipped to the canvas.
    """
    h, w = background.shape[:2]
    rgb = background.astype(np.float32) / 255.0
    alpha = np.zeros((h, w), np.float32)
    for layer, x, y in layers:
        lh, lw = layer.shape[:2]
        x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + lw), min(h, y + lh)
        if x0 >= x1 or y0 >= y1:
            continue
        part = layer[y0 - y : y1 - y, x0 - x : x1 - x]
        a = part[..., 3]
        rgb[y0:y1, x0:x1] = part[..., :3] + rgb[y0:y1, x0:x1] * (1.0 - a[..., None])
        alpha[y0:y1, x0:x1] = a + alpha[y0:y1, x0:x1] * (1.0 - a)
    to8 = lambda arr: np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)  # noqa: E731
    return to8(rgb), to8(alpha)


def gt_from_alpha(alpha: np.ndarray) -> np.ndarray:
    """HxW uint8 union alpha -> HxW uint8 ground truth, 255 where alpha >= 128, else 0."""
    return np.where(alpha >= 128, 255, 0).astype(np.uint8)


@dataclass
class DemoImage:
    """One generated image: HxWx3 RGB, HxW 0/255 GT and what went into it."""

    name: str
    rgb: np.ndarray
    gt: np.ndarray
    characters: list[str]
    background: str


def compose_image(art: ArtSource, rng: np.random.Generator, index: int, n_chars: int) -> DemoImage:
    """Build image ``index`` with ``n_chars`` characters from ``art``."""
    size = (CANVAS_W, CANVAS_H)
    bg = art.pick_background(rng)
    canvas = fit_background(bg.rgb, rng, size)
    sprites = art.pick_sprites(rng, n_chars) if n_chars else []
    placements = layout_sprites(rng, sprites, size) if sprites else []
    order = rng.permutation(len(sprites)) if sprites else []
    layers = [
        (
            premultiplied_layer(sprites[i].rgba, placements[i].height, placements[i].mirror),
            placements[i].x,
            placements[i].y,
        )
        for i in order
    ]
    rgb, alpha = composite(canvas, layers)
    chars = [s.name for s in sprites]
    name = f"demo{index:02d}_{art.name}_" + (_slug("-".join(chars)) if chars else "nobody")
    name += f"__{_slug(bg.name)}"
    return DemoImage(
        name=name, rgb=rgb, gt=gt_from_alpha(alpha), characters=chars, background=bg.name
    )


def _slug(text: str) -> str:
    """File-name-safe form: lower case, [a-z0-9_-] only."""
    out = "".join(c if c.isalnum() or c in "-_" else "_" for c in text.lower())
    return "_".join(filter(None, out.split("_")))[:80]


# ============================================================================ encoding / writing


def encode_jpeg(rgb: np.ndarray) -> bytes:
    """JPEG (quality 92, 4:2:0, baseline) bytes of an HxWx3 uint8 RGB array."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, np.uint8)).save(
        buf, format="JPEG", quality=JPEG_QUALITY, subsampling=2
    )
    return buf.getvalue()


def encode_mask_png(mask: np.ndarray) -> bytes:
    """Single-channel (mode L) PNG bytes of an HxW uint8 0/255 mask."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(mask, np.uint8)).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str | None:
    try:
        return _sha256(path.read_bytes())
    except OSError:
        return None


# ============================================================================ manifest


def read_manifest(out_dir: Path) -> dict[str, Any] | None:
    """The parsed ``DEMO_MANIFEST.json`` of ``out_dir``, or None if missing/unreadable."""
    try:
        data = json.loads((out_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def manifest_matches(manifest: dict[str, Any], source: str, seed: int, n_images: int) -> bool:
    """Whether a manifest records a build that satisfies this request (files not checked)."""
    if (manifest.get("generator_version"), manifest.get("seed"), manifest.get("n_images")) != (
        GENERATOR_VERSION,
        seed,
        n_images,
    ):
        return False
    used, requested = manifest.get("source"), manifest.get("requested")
    if source == "auto":
        return requested == "auto" or used == "renpy"
    return used == source


def dataset_complete(out_dir: Path, manifest: dict[str, Any]) -> bool:
    """Every file listed in the manifest exists with the recorded SHA-256."""
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return False
    return all(_file_sha256(out_dir / name) == digest for name, digest in files.items())


# ============================================================================ Ren'Py source


def default_cache_dir() -> Path:
    """``$KIRIDASHI_CACHE_DIR/demo-src``, else ``~/.cache/kiridashi/demo-src``."""
    env = os.environ.get("KIRIDASHI_CACHE_DIR")
    base = Path(env) if env else Path.home() / ".cache" / "kiridashi"
    return base / "demo-src"


def _run(cmd: list[str], cwd: Path, timeout: float = APT_TIMEOUT_S) -> tuple[int, str]:
    """Run a command, return (exit code, last non-empty stderr/stdout line)."""
    log.debug("running %s in %s", " ".join(cmd), cwd)
    try:
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        return 127, f"{cmd[0]} not found"
    except subprocess.TimeoutExpired:
        return 124, f"{' '.join(cmd[:2])} timed out after {timeout:.0f} s"
    lines = [ln.strip() for ln in (proc.stderr + "\n" + proc.stdout).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("E:")]
    return proc.returncode, (errors or lines or [""])[-1]


def _apt_download(packages: Sequence[str], dest: Path) -> dict[str, Path]:
    """``apt-get download`` the packages into ``dest``; {package: .deb} of those that worked.

    When apt does not know a package (package lists missing or stale) and we are root,
    ``apt-get update`` is run once; network errors fail at once.
    """
    if shutil.which("apt-get") is None:
        raise DemoSourceError("apt-get is not available (not a Debian-based system)")
    code, msg = _run(["apt-get", "download", *packages], dest)
    unknown = any(w in msg.lower() for w in STALE_LIST_ERRORS)
    if code != 0 and unknown and hasattr(os, "geteuid") and os.geteuid() == 0:
        log.info("apt-get download failed (%s); running apt-get update once", msg)
        ucode, umsg = _run(["apt-get", "update"], dest)
        if ucode != 0:
            log.info("apt-get update failed: %s", umsg)
        code, msg = _run(["apt-get", "download", *packages], dest)
        unknown = any(w in msg.lower() for w in STALE_LIST_ERRORS)
    if code != 0 and unknown and len(packages) > 1:
        for pkg in packages:  # one unknown package makes the joint call fail: try them one by one
            if not _find_deb(dest, pkg):
                _run(["apt-get", "download", pkg], dest)
    found = {pkg: deb for pkg in packages if (deb := _find_deb(dest, pkg))}
    if not found:
        raise DemoSourceError(f"apt-get download {' '.join(packages)} failed: {msg}")
    return found


def _find_deb(folder: Path, package: str) -> Path | None:
    """The newest-named ``package_*.deb`` in ``folder``, if any."""
    debs = sorted(folder.glob(f"{package}_*.deb"))
    return debs[-1] if debs else None


def _deb_version(deb: Path) -> str:
    """Version from an apt file name ``pkg_VERSION_arch.deb`` (``%3a`` decoded)."""
    parts = deb.name.split("_")
    return urllib.parse.unquote(parts[1]) if len(parts) >= 3 else "unknown"


def _ar_member(deb: Path, prefix: str) -> tuple[str, bytes]:
    """(name, bytes) of the first member of the ``ar`` archive ``deb`` whose name starts so."""
    with open(deb, "rb") as fh:
        if fh.read(8) != b"!<arch>\n":
            raise DemoSourceError(f"{deb.name} is not an ar archive")
        while len(header := fh.read(60)) == 60:
            name = header[:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip())
            data = fh.read(size)
            if size % 2:
                fh.read(1)
            if name.startswith(prefix):
                return name, data
    raise DemoSourceError(f"{deb.name} has no {prefix}* member")


def _open_data_tar(deb: Path) -> tarfile.TarFile:
    """The data tarball of a .deb: pure Python for xz/gz/bz2/plain, ``dpkg-deb`` otherwise."""
    name, data = _ar_member(deb, "data.tar")
    if not name.endswith(".zst"):
        try:
            return tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
        except tarfile.TarError as exc:
            log.debug("tarfile cannot read %s of %s (%s); trying dpkg-deb", name, deb.name, exc)
    if shutil.which("dpkg-deb") is None:
        raise DemoSourceError(f"cannot unpack {name} of {deb.name}: no dpkg-deb")
    proc = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=False, timeout=300
    )
    if proc.returncode != 0:
        raise DemoSourceError(f"dpkg-deb --fsys-tarfile {deb.name} failed")
    return tarfile.open(fileobj=io.BytesIO(proc.stdout), mode="r:")


def _wanted_member(path: str) -> str | None:
    """Relative output path for a tar member we keep: game images and the copyright file."""
    parts = PurePosixPath(path.lstrip("./")).parts
    if len(parts) >= 2 and parts[-1] == "copyright" and "doc" in parts:
        return "copyright"
    if "images" not in parts or "game" not in parts:
        return None
    i = len(parts) - 1 - parts[::-1].index("images")
    rest = parts[i + 1 :]
    if not rest or rest[-1].startswith(".") or ".." in rest:
        return None
    if PurePosixPath(rest[-1]).suffix.lower() not in IMAGE_SUFFIXES:
        return None
    return "/".join(("images", *rest))


def extract_deb(deb: Path, dest: Path) -> list[str]:
    """Extract a .deb's game images + copyright into ``dest``; returns the relative paths."""
    written = []
    with _open_data_tar(deb) as tar:
        for member in tar:
            rel = _wanted_member(member.name) if member.isfile() else None
            if rel is None:
                continue
            fh = tar.extractfile(member)
            if fh is None:
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(fh.read())
            written.append(rel)
    return sorted(written)


def cached_package(package: str, cache_dir: Path) -> Path | None:
    """The cached extraction folder of ``package`` (complete = has ``source.json``), or None."""
    for ready in sorted(cache_dir.glob(f"{package}_*/source.json"), reverse=True):
        try:
            info = json.loads(ready.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if info.get("extract_version") == EXTRACT_VERSION:
            return ready.parent
    return None


def install_package(package: str, deb: Path, cache_dir: Path) -> Path:
    """Extract ``deb`` into ``cache_dir/PACKAGE_VERSION/`` (staged, then renamed); its folder."""
    version = _deb_version(deb)
    final = cache_dir / f"{package}_{version}"
    with tempfile.TemporaryDirectory(prefix=".x-", dir=cache_dir) as tmp:
        staging = Path(tmp) / "x"
        files = extract_deb(deb, staging)
        if not any(f.startswith("images/") for f in files):
            raise DemoSourceError(f"{deb.name} holds no game/images/ files")
        info = {
            "package": package,
            "version": version,
            "deb": deb.name,
            "deb_size": deb.stat().st_size,
            "deb_sha256": _file_sha256(deb),
            "extract_version": EXTRACT_VERSION,
            "files": files,
        }
        (staging / "source.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
        if final.exists() and cached_package(package, cache_dir) != final:
            shutil.rmtree(final, ignore_errors=True)  # partial, or an older extract_version
        try:
            os.replace(staging, final)
        except OSError:
            if cached_package(package, cache_dir) != final:  # not a concurrent build that won
                raise
    log.info("cached %s %s (%d files) in %s", package, version, len(files), final)
    return final


def fetch_renpy(cache_dir: Path, packages: Sequence[str] = RENPY_PACKAGES) -> list[Path]:
    """Extracted folders of the Ren'Py packages: cached ones, the rest in one apt call.

    Raises :class:`DemoSourceError` when none can be had.
    """
    roots = {pkg: root for pkg in packages if (root := cached_package(pkg, cache_dir))}
    missing = [pkg for pkg in packages if pkg not in roots]
    if missing:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".apt-", dir=cache_dir) as tmp:
            t0 = time.monotonic()
            try:
                debs = _apt_download(missing, Path(tmp))
            except DemoSourceError as exc:
                if not roots:
                    raise
                log.info("%s; using the cached packages only", exc)
                debs = {}
            for pkg, deb in debs.items():
                log.info("downloaded %s (%.1f MB)", deb.name, deb.stat().st_size / 1e6)
                roots[pkg] = install_package(pkg, deb, cache_dir)
            log.info("fetched %d package(s) in %.1f s", len(debs), time.monotonic() - t0)
    else:
        log.info("using cached Ren'Py packages in %s", cache_dir)
    return [roots[p] for p in packages if p in roots]


def _load_rgba(path: Path) -> np.ndarray:
    """HxWx4 uint8 RGBA of an image file."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA")).copy()


def is_background(rgba: np.ndarray) -> bool:
    """Opaque, at least 640x360 and not flat (no colour covering half the picture)."""
    h, w = rgba.shape[:2]
    if w < 640 or h < 360 or rgba[..., 3].min() < 250:
        return False
    q = (rgba[..., :3] // 16).astype(np.int32)
    key = (q[..., 0] << 8) | (q[..., 1] << 4) | q[..., 2]
    counts = np.bincount(key.ravel(), minlength=4096)
    return counts.max() / key.size < 0.5 and int((counts > 0).sum()) >= 64


def is_character_sprite(rgba: np.ndarray) -> bool:
    """Taller than wide, >= 400 px, 20-85 % transparent, one big opaque region (a person)."""
    h, w = rgba.shape[:2]
    if h < 400 or h < w:
        return False
    opaque = (rgba[..., 3] >= 128).astype(np.uint8)
    frac = float(opaque.mean())
    if not 0.15 <= frac <= 0.80:
        return False
    ys = np.nonzero(opaque.any(axis=1))[0]
    if ys.size == 0 or (ys[-1] - ys[0] + 1) < 0.6 * h:
        return False
    n, _, stats, _ = cv2.connectedComponentsWithStats(opaque, connectivity=8)
    largest = stats[1:, cv2.CC_STAT_AREA].max() if n > 1 else 0
    return largest >= 0.9 * opaque.sum()


def _copyright_fields(text: str) -> tuple[str, str, str]:
    """(copyright, licence name, licence text) of the ``Files: *`` stanza of a Debian copyright."""
    paragraphs = [p for p in text.split("\n\n") if p.strip()]

    def fields(par: str) -> dict[str, str]:
        out: dict[str, str] = {}
        key = None
        for line in par.splitlines():
            if line[:1] in (" ", "\t") and key:
                out[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                out[key] = value.strip()
        return out

    parsed = [fields(p) for p in paragraphs]
    main = next((f for f in parsed if f.get("files", "").split() == ["*"]), None)
    if main is None or "license" not in main:
        raise DemoSourceError("debian/copyright has no 'Files: *' stanza with a License")
    lic_name = main["license"].splitlines()[0].strip()
    body = "\n".join(main["license"].splitlines()[1:])
    if not body:
        full = next(
            (
                f
                for f in parsed
                if "files" not in f and f.get("license", "").splitlines()[0:1] == [lic_name]
            ),
            {},
        )
        body = "\n".join(full.get("license", "").splitlines()[1:])
    body = "\n".join("" if ln == "." else ln for ln in body.splitlines())
    return main.get("copyright", ""), lic_name, body


@dataclass
class RenpyArt:
    """Sprites and backgrounds selected from extracted Ren'Py packages."""

    sprites: list[Sprite]
    backgrounds: list[Background]
    packages: dict[str, str]  # package -> version
    origins: dict[str, str]  # art name -> "package: images/relative path"
    copyright: str
    licence_name: str
    licence_body: str
    name: str = "renpy"

    def pick_background(self, rng: np.random.Generator) -> Background:
        return self.backgrounds[int(rng.integers(len(self.backgrounds)))]

    def pick_sprites(self, rng: np.random.Generator, k: int) -> list[Sprite]:
        """k sprites, of distinct characters while there are enough of them."""
        by_char: dict[str, list[Sprite]] = {}
        for s in self.sprites:
            by_char.setdefault(s.name.split("_")[0], []).append(s)
        chars = sorted(by_char)
        picked = rng.choice(len(chars), size=k, replace=k > len(chars))
        return [by_char[chars[i]][int(rng.integers(len(by_char[chars[i]])))] for i in picked]

    def licence_summary(self) -> list[str]:
        pk = ", ".join(f"{p} {v}" for p, v in self.packages.items())
        who = self.copyright.splitlines()[0] if self.copyright else "Ren'Py authors"
        return [f"Ren'Py art from Debian {pk}: {self.licence_name}, Copyright {who}"]

    def licence_text(self, used: set[str]) -> str:
        lines = [
            "The demo images are composites of character sprites and backgrounds from Ren'Py",
            "(https://www.renpy.org/), taken from these Debian packages:",
            *(f"  {p} {v}" for p, v in self.packages.items()),
            "",
            "Files used:",
            *(f"  {self.origins[n]}" for n in sorted(used) if n in self.origins),
            "",
            "Copyright:",
            *(f"  {ln}" for ln in self.copyright.splitlines()),
            f"License: {self.licence_name}",
            "",
            self.licence_body,
            "",
            "The composites and their ground-truth masks are derived from these files and are",
            "distributed under the same licence.",
        ]
        return "\n".join(lines)

    def provenance(self) -> dict[str, str]:
        return dict(self.packages)


def _character_key(stem: str) -> str | None:
    """Known character name of a sprite file stem (``'sylvie green smile'`` -> ``'sylvie'``)."""
    first = stem.replace("_", " ").split()[0].lower() if stem.strip() else ""
    return first if first in KNOWN_CHARACTERS else None


def _renpy_candidates(roots: Sequence[Path]) -> list[tuple[str, Path, str]]:
    """(package, extracted root, relative path) of every cached game image, sorted."""
    out = []
    for root in roots:
        info = json.loads((root / "source.json").read_text(encoding="utf-8"))
        out += [(info["package"], root, rel) for rel in info["files"] if rel.startswith("images/")]
    return sorted(out, key=lambda t: (t[0], t[2]))


def _load_candidates(
    items: Sequence[tuple[str, Path, str]],
) -> list[tuple[str, str, np.ndarray]]:
    """(package, relative path, HxWx4 RGBA) of the images that decode."""
    out = []
    for pkg, root, rel in items:
        try:
            out.append((pkg, rel, _load_rgba(root / rel)))
        except (OSError, ValueError) as exc:
            log.debug("skipping %s/%s: %s", pkg, rel, exc)
    return out


def select_renpy_art(roots: Sequence[Path]) -> RenpyArt:
    """Choose the art of extracted Ren'Py packages.

    Backgrounds: files named ``bg ...`` that are opaque, >= 640x360 and not flat. Sprites: files
    named after a known character (eileen, lucy, sylvie ...) that are person-shaped RGBA cut-outs;
    only when there are none, any other person-shaped RGBA image.
    """
    items = _renpy_candidates(roots)
    stem = lambda rel: PurePosixPath(rel).stem  # noqa: E731
    is_bg = lambda rel: stem(rel).replace("_", " ").lower().split()[:1] == ["bg"]  # noqa: E731
    origins: dict[str, str] = {}
    backgrounds = []
    for pkg, rel, rgba in _load_candidates([t for t in items if is_bg(t[2])]):
        if is_background(rgba):
            backgrounds.append(Background(_slug(stem(rel)), rgba[..., :3].copy()))
            origins[backgrounds[-1].name] = f"{pkg}: {rel}"
    known = [t for t in items if _character_key(stem(t[2]))]
    others = [t for t in items if not is_bg(t[2]) and not _character_key(stem(t[2]))]
    sprites: list[Sprite] = []
    for group in (known, others):
        for pkg, rel, rgba in _load_candidates(group):
            if rgba[..., 3].min() < 250 and is_character_sprite(rgba):
                sprites.append(make_sprite(_slug(stem(rel)), rgba))
                origins[sprites[-1].name] = f"{pkg}: {rel}"
        if sprites:
            break
    if not sprites or not backgrounds:
        raise DemoSourceError(
            f"found {len(sprites)} character sprites and {len(backgrounds)} backgrounds"
        )
    packages, copyright_info = {}, None
    for root in roots:
        info = json.loads((root / "source.json").read_text(encoding="utf-8"))
        packages[info["package"]] = info["version"]
        if (root / "copyright").exists():
            fields = _copyright_fields((root / "copyright").read_text(encoding="utf-8"))
            if fields[1].lower() not in OK_LICENSES:
                raise DemoSourceError(f"{info['package']} art licence is {fields[1]!r}, not MIT")
            copyright_info = copyright_info or fields
    if copyright_info is None:
        raise DemoSourceError("no debian/copyright file in the packages")
    sprites.sort(key=lambda s: s.name)
    backgrounds.sort(key=lambda b: b.name)
    log.info(
        "Ren'Py art: %d sprites (%s), %d backgrounds (%s)",
        len(sprites),
        ", ".join(s.name for s in sprites),
        len(backgrounds),
        ", ".join(b.name for b in backgrounds),
    )
    return RenpyArt(sprites, backgrounds, packages, origins, *copyright_info)


def load_renpy_art(cache_dir: Path | None = None) -> RenpyArt:
    """Fetch (or reuse) the Ren'Py packages and select their art."""
    return select_renpy_art(fetch_renpy(cache_dir or default_cache_dir()))


# ============================================================================ procedural source

Color = tuple[int, int, int]
Pt = tuple[float, float]

# fmt: off
HAIR_COLORS: tuple[Color, ...] = (
    (245, 160, 190), (250, 220, 140), (120, 70, 45), (40, 35, 50), (90, 140, 230),
    (215, 215, 230), (200, 60, 60), (150, 100, 200), (90, 180, 140), (240, 140, 60),
)
EYE_COLORS: tuple[Color, ...] = (
    (60, 120, 220), (200, 60, 80), (60, 160, 90), (150, 80, 200), (190, 120, 40), (40, 170, 190),
)
SKIN_COLORS: tuple[Color, ...] = ((255, 228, 212), (252, 220, 198), (246, 210, 186))
CLOTH_COLORS: tuple[Color, ...] = (
    (40, 50, 100), (250, 250, 252), (200, 40, 60), (70, 130, 200), (240, 200, 210),
    (60, 60, 70), (120, 180, 110), (250, 230, 150), (150, 90, 170), (230, 120, 60),
)
ACCENT_COLORS: tuple[Color, ...] = ((220, 40, 60), (240, 180, 40), (60, 90, 200))
LINE: Color = (45, 32, 40)
WHITE: Color = (255, 255, 255)

# Body landmarks, in head units from the top of the sprite (the sprite is 5.6 units tall).
FIG_H, CY, CHIN, SH, WAIST, HIP, FOOT = 5.6, 0.75, 1.35, 1.57, 2.72, 3.02, 5.52
# Left halves (x < 0) of symmetric outlines, top to bottom, (x, y) in head units.
TORSO = [(-0.14, SH - 0.04), (-0.46, SH + 0.06), (-0.52, SH + 0.3), (-0.36, SH + 0.6),
         (-0.3, WAIST + 0.1)]
COLLAR = [(-0.16, SH - 0.05), (-0.4, SH + 0.08), (0.0, SH + 0.5)]
JAW = [(-0.46, CY), (-0.38, CY + 0.36), (-0.12, CHIN - 0.04), (0.0, CHIN)]
NECK = [(-0.1, CHIN - 0.2), (-0.1, SH + 0.1)]
BELT = [(-0.34, WAIST - 0.04), (-0.35, WAIST + 0.07)]
# fmt: on


def _shade(color: Color, f: float) -> Color:
    """A colour scaled by ``f`` (< 1 darker, > 1 lighter, clipped)."""
    return tuple(int(min(255, max(0, round(c * f)))) for c in color)  # type: ignore[return-value]


def _pick(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def _sym(left: Sequence[Pt]) -> list[Pt]:
    """A closed symmetric outline from its left half (points with x = 0 are not repeated)."""
    right = [(-x, y) for x, y in reversed(left) if x != 0]
    return [*left, *right]


def _limb(pts: Sequence[Pt], widths: Sequence[float]) -> list[Pt]:
    """Polygon around a centre line with a half-width per point (arms, legs, tails)."""
    p = np.asarray(pts, np.float64)
    d = np.gradient(p, axis=0)
    d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-9
    nrm = np.stack([-d[:, 1], d[:, 0]], axis=1) * np.asarray(widths, np.float64)[:, None]
    return [(float(x), float(y)) for x, y in np.concatenate([p + nrm, (p - nrm)[::-1]])]


def _arc(c: Pt, r: Pt, a0: float, a1: float, n: int = 24) -> list[Pt]:
    """Points on an ellipse from angle a0 to a1 (degrees; y down, so 270 is the top)."""
    ang = np.radians(np.linspace(a0, a1, n))
    return [(c[0] + r[0] * float(np.cos(a)), c[1] + r[1] * float(np.sin(a))) for a in ang]


class Painter:
    """Paints flat-colour parts with line art onto an HxWx3 canvas and an HxW 0/255 mask.

    Coordinates are in head units: x from the figure's centre line, y from the top.
    """

    def __init__(self, height: int, width: int) -> None:
        self.rgb = np.zeros((height, width, 3), np.uint8)
        self.mask = np.zeros((height, width), np.uint8)
        self.u = height / FIG_H
        self.cx = width / 2
        self.t = max(2, round(height * 0.006))  # line width: ~2-4 px once scaled to the canvas

    def px(self, pts: Sequence[Pt]) -> np.ndarray:
        """Nx2 int32 pixel coordinates of points in head units."""
        arr = np.asarray(pts, np.float64) * self.u + (self.cx, 0.0)
        return np.round(arr).astype(np.int32)

    def poly(self, pts: Sequence[Pt]) -> np.ndarray:
        """HxW shape mask of a filled polygon."""
        m = np.zeros_like(self.mask)
        cv2.fillPoly(m, [self.px(pts)], 255)
        return m

    def ellipse(self, c: Pt, axes: Pt) -> np.ndarray:
        """HxW shape mask of a filled axis-aligned ellipse."""
        m = np.zeros_like(self.mask)
        (x, y), (a, b) = self.px([c])[0], (max(1, round(v * self.u)) for v in axes)
        cv2.ellipse(m, (int(x), int(y)), (a, b), 0, 0, 360, 255, -1)
        return m

    def part(
        self, shape: np.ndarray, color: Color, line: Color | None = LINE, thin: bool = False
    ) -> None:
        """Fill ``shape`` with ``color`` and stroke its outer contour (line art)."""
        self.rgb[shape > 0] = color
        self.mask |= shape
        if line is None:
            return
        contours, _ = cv2.findContours(shape, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        t = max(1, self.t // 2) if thin else self.t
        cv2.drawContours(self.rgb, contours, -1, line, t, lineType=cv2.LINE_AA)
        cv2.drawContours(self.mask, contours, -1, 255, t)

    def tint(self, region: np.ndarray, color: Color, opacity: float) -> None:
        """Blend ``color`` into the canvas inside ``region`` (shading; the mask is unchanged)."""
        sel = region > 0
        blended = self.rgb[sel] * (1 - opacity) + np.asarray(color, np.float32) * opacity
        self.rgb[sel] = np.clip(blended, 0, 255).astype(np.uint8)

    def stroke(self, pts: Sequence[Pt], color: Color = LINE, width: float = 0.0) -> None:
        """An open polyline inside the figure (``width`` in head units, default half a line)."""
        t = max(1, round(width * self.u)) if width else max(1, self.t // 2)
        cv2.polylines(self.rgb, [self.px(pts)], False, color, t, lineType=cv2.LINE_AA)

    def rgba(self) -> np.ndarray:
        """HxWx4 uint8 straight RGBA of what was painted."""
        return np.dstack([self.rgb, self.mask])


@dataclass
class Look:
    """Random traits of one procedural character; ``jitter`` holds 32 values in [-1, 1]."""

    hair: Color
    eyes: Color
    skin: Color
    top: Color
    bottom: Color
    accent: Color
    hair_style: str
    hair_len: float
    mouth: str
    fringe: int
    jitter: list[float] = field(default_factory=list)


def random_look(rng: np.random.Generator) -> Look:
    """Colours and style of a character."""
    top = _pick(rng, CLOTH_COLORS)
    return Look(
        hair=_pick(rng, HAIR_COLORS),
        eyes=_pick(rng, EYE_COLORS),
        skin=_pick(rng, SKIN_COLORS),
        top=top,
        bottom=_pick(rng, [c for c in CLOTH_COLORS if c != top]),
        accent=_pick(rng, ACCENT_COLORS),
        hair_style=_pick(rng, ("long", "bob", "twintails", "ponytail")),
        hair_len=float(rng.uniform(0.0, 1.0)),
        mouth=_pick(rng, ("smile", "open", "small")),
        fringe=int(rng.integers(5, 9)),
        jitter=[float(v) for v in rng.uniform(-1, 1, 32)],
    )


def draw_character(
    rng: np.random.Generator, height: int = 1200, look: Look | None = None
) -> np.ndarray:
    """A standing anime-style girl as an HxWx4 RGBA sprite (straight alpha, 0/255).

    Big head with a jagged fringe and side locks, large eyes with highlights, small mouth, shirt
    with a sailor collar and ribbon, pleated skirt, arms, legs with socks and shoes, dark line art
    (~0.6 % of the height, so 2-4 px once scaled onto the canvas). Drawn large and downscaled by
    the compositor, which anti-aliases the edges. ``look``: her colours and style (default:
    :func:`random_look` from ``rng``).
    """
    look = look if look is not None else random_look(rng)
    pt = Painter(height, int(height * 0.75))
    _draw_back_hair(pt, look)
    _draw_legs(pt, look)
    _draw_torso(pt, look)
    _draw_skirt(pt, look)
    _draw_arms(pt, look)
    _draw_face(pt, look)
    _draw_front_hair(pt, look)
    return pt.rgba()


def _draw_back_hair(pt: Painter, look: Look) -> None:
    """Hair behind the head and body: long, bob, twin tails or a side ponytail."""
    shape = pt.ellipse((0, CY - 0.02), (0.56, 0.57))
    if look.hair_style == "long":
        end = CHIN + 0.8 + 1.4 * look.hair_len
        hem = [(-0.62 + i * 0.155, end - (0.12 if i % 2 else 0)) for i in range(9)]
        shape |= pt.poly([(-0.55, CY), (-0.66, CHIN + 0.5), *hem, (0.66, CHIN + 0.5), (0.55, CY)])
    elif look.hair_style == "bob":
        shape |= pt.poly(_sym([(-0.57, CY), (-0.55, CHIN + 0.1)]))
    elif look.hair_style == "twintails":
        end = WAIST + 0.2 + 0.8 * look.hair_len
        for s in (-1, 1):
            ctr = [
                (s * 0.5, CY - 0.3),
                (s * 0.85, CY + 0.2),
                (s * 0.95, CHIN + 0.7),
                (s * 0.8, end),
            ]
            shape |= pt.poly(_limb(ctr, [0.1, 0.22, 0.2, 0.03]))
    else:
        end = CHIN + 0.8 + 1.0 * look.hair_len
        ctr = [(0.3, CY - 0.45), (0.75, CY - 0.1), (0.7, CHIN + 0.3), (0.55, end)]
        shape |= pt.poly(_limb(ctr, [0.12, 0.2, 0.17, 0.03]))
    pt.part(shape, _shade(look.hair, 0.82))


def _draw_legs(pt: Painter, look: Look) -> None:
    """Two legs with knee socks and shoes."""
    j = look.jitter
    sock = (250, 250, 250) if j[0] > 0 else (40, 40, 50)
    knee = HIP + 0.55 * (FOOT - HIP)
    for s in (-1, 1):
        x = s * 0.2
        pt.part(
            pt.poly(_limb([(x, HIP), (x, knee), (x, FOOT - 0.12)], [0.19, 0.12, 0.08])), look.skin
        )
        pt.part(pt.poly(_limb([(x, knee + 0.1), (x, FOOT - 0.12)], [0.12, 0.085])), sock)
        shoe = pt.ellipse((s * 0.24, FOOT - 0.07), (0.14, 0.075))
        pt.part(shoe, (90, 50, 40) if j[1] > 0 else (30, 30, 40))


def _draw_torso(pt: Painter, look: Look) -> None:
    """Neck with a chin shadow, shirt with a cel shadow, sailor collar and a ribbon."""
    pt.part(pt.poly(_sym(NECK)), look.skin)
    pt.tint(pt.poly(_sym([(-0.1, CHIN), (-0.1, CHIN + 0.1)])), _shade(look.skin, 0.8), 0.8)
    body = pt.poly(_sym(TORSO))
    pt.part(body, look.top)
    pt.tint(body & pt.poly([(0.16, SH), (0.6, SH), (0.6, WAIST + 0.2), (0.12, WAIST + 0.2)]),
            _shade(look.top, 0.7), 0.5)  # fmt: skip
    collar = (250, 250, 252) if look.top != (250, 250, 252) else (40, 50, 100)
    pt.part(pt.poly([*_sym(COLLAR), (0.0, SH + 0.3)]), collar)
    by = SH + 0.45
    for s in (-1, 1):
        pt.part(pt.poly([(0, by), (s * 0.2, by - 0.1), (s * 0.18, by + 0.1)]), look.accent)
    pt.part(pt.ellipse((0, by), (0.05, 0.05)), _shade(look.accent, 0.85))


def _draw_skirt(pt: Painter, look: Look) -> None:
    """A flared pleated skirt with a zig-zag hem and a waistband."""
    hem_y = HIP + 0.55 + 0.15 * look.jitter[2]
    hem = [(-0.72 + i * 0.18, hem_y + (0.06 if i % 2 else 0)) for i in range(9)]
    pt.part(pt.poly([(-0.33, WAIST), *hem, (0.33, WAIST)]), look.bottom)
    for i in range(1, 8, 2):
        x = -0.72 + i * 0.18
        pt.stroke([(x * 0.45, WAIST + 0.05), (x, hem_y + 0.04)], _shade(look.bottom, 0.6))
    pt.part(pt.poly(_sym(BELT)), _shade(look.bottom, 0.8))


def _draw_arms(pt: Painter, look: Look) -> None:
    """Arms hanging at the sides or bent to the hip, with short sleeves and hands."""
    for s in (-1, 1):
        bent = s * look.jitter[3] > 0.4
        hand = (s * 0.38, WAIST + 0.05) if bent else (s * 0.66, WAIST + 0.35)
        ctr = [(s * 0.46, SH + 0.12), (s * 0.68, SH + 0.75), hand]
        pt.part(pt.poly(_limb(ctr, [0.12, 0.085, 0.07])), look.skin)
        pt.part(
            pt.poly(_limb([(s * 0.46, SH + 0.1), (s * 0.58, SH + 0.45)], [0.14, 0.12])), look.top
        )
        pt.part(pt.ellipse(hand, (0.08, 0.09)), look.skin)


def _draw_face(pt: Painter, look: Look) -> None:
    """Face with a pointed chin, two big eyes, blush, a tiny nose and a small mouth."""
    pt.part(pt.ellipse((0, CY), (0.46, 0.47)) | pt.poly(_sym(JAW)), look.skin)
    ey = CY + 0.2
    for s in (-1, 1):
        _draw_eye(pt, look, (s * 0.2, ey), s)
        pt.tint(pt.ellipse((s * 0.26, ey + 0.18), (0.08, 0.035)), (245, 140, 150), 0.45)
    pt.stroke([(-0.012, CY + 0.37), (0, CY + 0.385)], _shade(look.skin, 0.6))
    my = CY + 0.47
    if look.mouth == "open":
        lower = pt.ellipse((0, my), (0.065, 0.05)) & pt.poly(_sym([(-1, my), (-1, my + 1)]))
        pt.part(lower, (170, 50, 60), thin=True)
    elif look.mouth == "smile":
        pt.stroke(_arc((0, my - 0.03), (0.06, 0.035), 20, 160, 12))
    else:
        pt.stroke([(-0.03, my), (0.03, my)])


def _draw_eye(pt: Painter, look: Look, c: Pt, side: int) -> None:
    """One large anime eye: white, iris with a light lower half, pupil, two highlights, lashes."""
    ex, ey = c
    white = pt.ellipse(c, (0.13, 0.14))
    pt.part(white, WHITE, line=None)
    iris = pt.ellipse((ex, ey + 0.01), (0.095, 0.135)) & white
    pt.part(iris, _shade(look.eyes, 0.75), thin=True)
    pt.tint(pt.ellipse((ex, ey + 0.07), (0.07, 0.065)) & iris, _shade(look.eyes, 1.35), 0.9)
    pt.part(pt.ellipse((ex, ey + 0.02), (0.042, 0.065)) & iris, (25, 20, 35), line=None)
    pt.part(pt.ellipse((ex - side * 0.035, ey - 0.045), (0.034, 0.04)), WHITE, line=None)
    pt.part(pt.ellipse((ex + side * 0.04, ey + 0.07), (0.016, 0.016)), WHITE, line=None)
    upper = _arc(c, (0.14, 0.145), 195, 345, 16)
    flick = (ex + side * 0.185, ey - 0.01)
    pt.stroke(upper + [flick] if side > 0 else [flick] + upper, (30, 20, 30), 0.04)
    pt.stroke(_arc(c, (0.11, 0.145), 60, 120, 8), (60, 40, 50))


def _draw_front_hair(pt: Painter, look: Look) -> None:
    """Cranium cap with a jagged fringe and two side locks; its shadow on the face; a shine."""
    j, n = look.jitter, look.fringe
    pts = _arc((0, CY - 0.02), (0.54, 0.56), 180, 360, 32)
    pts += [(0.55, CY + 0.15), (0.45, CHIN + 0.15), (0.36, CY + 0.05)]
    for i in range(2 * n + 1):
        x = 0.36 - i * 0.72 / (2 * n)
        if i % 2:  # spike tip, above the eyes
            pts.append((x + 0.02 * j[(6 + i) % 32], CY + 0.04 + 0.03 * j[(4 + i) % 32]))
        else:
            pts.append((x, CY - 0.1 + 0.03 * j[(5 + i) % 32]))
    pts += [(-0.36, CY + 0.05), (-0.45, CHIN + 0.15), (-0.55, CY + 0.15)]
    cap = pt.poly(pts)
    dy = max(1, round(0.05 * pt.u))
    shadow = np.zeros_like(cap)
    shadow[dy:] = cap[:-dy]
    face = pt.poly(_sym([(-0.46, CY - 0.2), *JAW[1:]]))
    pt.tint(shadow & face & ~cap, _shade(look.skin, 0.82), 0.7)
    pt.part(cap, look.hair)
    ring = pt.ellipse((0, CY - 0.3), (0.42, 0.12)) & ~pt.ellipse((0, CY - 0.27), (0.4, 0.1))
    pt.tint(ring & cap, _shade(look.hair, 1.5), 0.7)
    if look.hair_style == "twintails":
        for s in (-1, 1):
            pt.part(pt.ellipse((s * 0.52, CY - 0.3), (0.07, 0.07)), look.accent)
    elif j[7] > 0.3:
        pt.stroke(_arc((0, CY - 0.02), (0.52, 0.54), 200, 340, 20), look.accent, 0.05)


# ---------------------------------------------------------------------------- backgrounds


def _gradient(h: int, w: int, top: Color, bottom: Color) -> np.ndarray:
    """HxWx3 float32 vertical gradient from ``top`` to ``bottom``."""
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    col = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
    return np.broadcast_to(col, (h, w, 3)).copy()


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """HxW float32 value noise in [0, 1] with about ``cells`` blobs across the width."""
    small = rng.random((max(2, cells * h // w), cells)).astype(np.float32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(big, (0, 0), 0.5 * w / cells).clip(0, 1)


def _bg_outdoor(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Sky gradient, soft clouds, a green field and a row of blurry trees."""
    img = _gradient(h, w, (90, 150, 235), (200, 225, 250))
    for _ in range(int(rng.integers(3, 7))):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h // 3)))
        cv2.ellipse(
            img,
            c,
            (int(rng.integers(60, 200)), int(rng.integers(20, 50))),
            0,
            0,
            360,
            (250, 250, 252),
            -1,
        )
    horizon = int(h * rng.uniform(0.55, 0.7))
    for x in range(-40, w + 40, int(rng.integers(50, 90))):
        r = int(rng.integers(40, 80))
        cv2.circle(img, (x, horizon - r // 2), r, (50, 110 + int(rng.integers(0, 40)), 60), -1)
    img[horizon:] = _gradient(h - horizon, w, (110, 180, 90), (70, 140, 60))
    return cv2.GaussianBlur(img, (0, 0), 2.0)


def _bg_room(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A classroom-like room: wall, floor, windows with sky, a board and a shelf."""
    wall = _pick(rng, ((235, 225, 205), (215, 225, 235), (240, 215, 200)))
    img = _gradient(h, w, wall, _shade(wall, 0.85))
    floor_y = int(h * rng.uniform(0.68, 0.78))
    img[floor_y:] = _gradient(h - floor_y, w, (170, 120, 80), (120, 80, 50))
    for x in range(int(rng.integers(20, 120)), w - 160, int(rng.integers(260, 360))):
        y0, y1 = int(h * 0.12), int(h * 0.5)
        img[y0:y1, x : x + 160] = _gradient(y1 - y0, 160, (120, 180, 240), (210, 230, 250))
        cv2.rectangle(img, (x, y0), (x + 160, y1), (240, 240, 240), 8)
        cv2.line(img, (x + 80, y0), (x + 80, y1), (240, 240, 240), 6)
    bx = int(rng.integers(0, w - 400))
    cv2.rectangle(img, (bx, int(h * 0.55)), (bx + 380, floor_y - 10), (60, 100, 70), -1)
    for i in range(int(rng.integers(6, 14))):
        x = int(rng.integers(0, w - 20))
        cv2.rectangle(
            img,
            (x, floor_y - 60 - i % 3 * 5),
            (x + 16, floor_y - 5),
            tuple(float(v) for v in rng.integers(60, 220, 3)),
            -1,
        )
    return cv2.GaussianBlur(img, (0, 0), 1.5)


def _bg_bokeh(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Dark evening gradient with soft glowing circles."""
    img = _gradient(h, w, (30, 25, 70), (120, 60, 110))
    glow = np.zeros_like(img)
    for _ in range(int(rng.integers(25, 45))):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        col = tuple(float(v) for v in rng.integers(120, 255, 3))
        cv2.circle(glow, c, int(rng.integers(15, 60)), col, -1, lineType=cv2.LINE_AA)
    glow = cv2.GaussianBlur(glow, (0, 0), 6.0)
    return np.clip(img + 0.6 * glow, 0, 255)


def _bg_noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Two-colour cloudy texture from value noise at several scales."""
    n = sum(_smooth_noise(rng, h, w, c) * wgt for c, wgt in ((4, 0.5), (12, 0.3), (40, 0.2)))
    n = (n - n.min()) / max(1e-6, float(n.max() - n.min()))
    a = np.asarray(_pick(rng, ((240, 200, 210), (200, 230, 210), (210, 210, 245))), np.float32)
    b = np.asarray(_pick(rng, ((120, 90, 160), (60, 120, 140), (160, 110, 80))), np.float32)
    return a * (1 - n[..., None]) + b * n[..., None]


BACKGROUNDS = {"outdoor": _bg_outdoor, "room": _bg_room, "bokeh": _bg_bokeh, "noise": _bg_noise}


def draw_background(rng: np.random.Generator, kind: str, size: tuple[int, int]) -> np.ndarray:
    """HxWx3 uint8 procedural background of ``kind`` (one of :data:`BACKGROUNDS`), size (W, H)."""
    w, h = size
    return np.clip(np.rint(BACKGROUNDS[kind](rng, h, w)), 0, 255).astype(np.uint8)


@dataclass
class ProceduralArt:
    """Characters and backgrounds drawn on demand; no third-party art."""

    name: str = "proc"
    counter: int = 0

    def pick_background(self, rng: np.random.Generator) -> Background:
        kind = _pick(rng, sorted(BACKGROUNDS))
        return Background(f"bg_{kind}", draw_background(rng, kind, (CANVAS_W, CANVAS_H)))

    def pick_sprites(self, rng: np.random.Generator, k: int) -> list[Sprite]:
        out = []
        for _ in range(k):
            self.counter += 1
            out.append(make_sprite(f"girl{self.counter}", draw_character(rng)))
        return out

    def licence_summary(self) -> list[str]:
        return ["procedurally drawn by kiridashi.demo: no third-party art (MIT, as kiridashi)"]

    def licence_text(self, used: set[str]) -> str:
        return (
            "The demo images and masks were drawn procedurally by kiridashi.demo (OpenCV shapes,\n"
            "no third-party art). They are distributed under the MIT licence of kiridashi."
        )

    def provenance(self) -> dict[str, str]:
        return {}


# ============================================================================ the build


def _resolve_art(
    source: str, cache_dir: Path | None
) -> tuple[RenpyArt | ProceduralArt, str | None]:
    """(art source, fallback reason) for ``source`` in :data:`SOURCES`."""
    if source == "procedural":
        return ProceduralArt(), None
    try:
        return load_renpy_art(cache_dir), None
    except Exception as exc:  # any failure of the download/parse path
        if source == "renpy":
            if isinstance(exc, DemoSourceError):
                raise
            raise DemoSourceError(f"{type(exc).__name__}: {exc}") from exc
        reason = str(exc) if isinstance(exc, DemoSourceError) else f"{type(exc).__name__}: {exc}"
        reason = (reason.splitlines() or ["unknown error"])[0]
        log.warning("Ren'Py art unavailable (%s); using procedural art", reason)
        return ProceduralArt(), reason


def _write(out_dir: Path, name: str, data: bytes, files: dict[str, str]) -> bool:
    """Atomically write ``name`` unless it already holds exactly ``data``; record its hash.

    Returns whether the file was (re)written.
    """
    digest = _sha256(data)
    files[name] = digest
    if _file_sha256(out_dir / name) == digest:
        return False
    atomic_write_bytes(out_dir / name, data)
    os.chmod(out_dir / name, 0o644)  # mkstemp creates 0600; a dataset is world-readable
    return True


def build_demo(
    out_dir: Path,
    n_images: int = 16,
    seed: int = 0,
    source: str = "auto",
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """Build the demo dataset in ``out_dir``: NAME.jpg + NAME_gt.png, LICENSES.txt, manifest.

    ``source`` is ``"auto"`` (Ren'Py art, else procedural), ``"renpy"`` (raises
    :class:`DemoSourceError` when unavailable) or ``"procedural"``. Returns a summary: source used,
    requested source, seed, n_images, skipped (already complete), written (files written now),
    images (name, n_chars, characters, background), licences, packages, fallback_reason, seconds.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
    if n_images < 1:
        raise ValueError("n_images must be >= 1")
    t0 = time.monotonic()
    out_dir = Path(out_dir)
    old = read_manifest(out_dir)
    if old and manifest_matches(old, source, seed, n_images) and dataset_complete(out_dir, old):
        log.info(
            "%s already holds the %s demo set (seed %d, %d images); nothing to do",
            out_dir,
            old["source"],
            seed,
            n_images,
        )
        return _summary(old, out_dir, skipped=True, written=0, seconds=time.monotonic() - t0)

    art, reason = _resolve_art(source, cache_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)  # incomplete until the new one is written
    files: dict[str, str] = {}
    images, used, written = [], set(), 0
    for i, n_chars in enumerate(plan_char_counts(n_images)):
        img = compose_image(art, np.random.default_rng([seed, i]), i, n_chars)
        written += _write(out_dir, f"{img.name}.jpg", encode_jpeg(img.rgb), files)
        written += _write(out_dir, f"{img.name}_gt.png", encode_mask_png(img.gt), files)
        used.update(img.characters + [img.background])
        images.append(
            {
                "name": img.name,
                "n_chars": n_chars,
                "characters": img.characters,
                "background": img.background,
            }
        )
        log.info("%s: %d character(s)", img.name, n_chars)
    header = (
        f"kiridashi demo dataset (generator v{GENERATOR_VERSION}, source {art.name}, "
        f"seed {seed}, {n_images} images)\n\n"
    )
    written += _write(
        out_dir, LICENSES_NAME, (header + art.licence_text(used) + "\n").encode(), files
    )
    for stale in set((old or {}).get("files", {})) - set(files):
        if "/" not in stale and stale != MANIFEST_NAME:
            (out_dir / stale).unlink(missing_ok=True)
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "requested": source,
        "source": "renpy" if isinstance(art, RenpyArt) else "procedural",
        "seed": seed,
        "n_images": n_images,
        "canvas": [CANVAS_W, CANVAS_H],
        "packages": art.provenance(),
        "licences": art.licence_summary(),
        "fallback_reason": reason,
        "images": images,
        "files": files,
    }
    written += _write(out_dir, MANIFEST_NAME, (json.dumps(manifest, indent=2) + "\n").encode(), {})
    return _summary(
        manifest, out_dir, skipped=False, written=written, seconds=time.monotonic() - t0
    )


def _summary(
    manifest: dict[str, Any], out_dir: Path, skipped: bool, written: int, seconds: float
) -> dict[str, Any]:
    """The dict returned by :func:`build_demo`."""
    keys = ("source", "requested", "seed", "n_images", "images", "licences", "packages")
    out = {k: manifest.get(k) for k in keys}
    out.update(
        out_dir=str(out_dir),
        skipped=skipped,
        written=written,
        fallback_reason=manifest.get("fallback_reason"),
        seconds=round(seconds, 2),
    )
    return out


def format_summary(summary: dict[str, Any]) -> str:
    """One line describing a :func:`build_demo` summary."""
    counts = [im["n_chars"] for im in summary["images"]]
    mix = (
        f"{counts.count(1)} single, {sum(c > 1 for c in counts)} multi, "
        f"{counts.count(0)} background-only"
    )
    what = f"{summary['source']} demo set, seed {summary['seed']}, {len(counts)} images ({mix})"
    if summary["skipped"]:
        return f"demo: {summary['out_dir']} already holds the {what}; nothing to do"
    extra = f" (fallback: {summary['fallback_reason']})" if summary.get("fallback_reason") else ""
    return (
        f"demo: wrote {summary['written']} files of the {what} to {summary['out_dir']} "
        f"in {summary['seconds']:.1f} s{extra}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kiridashi.demo OUT_DIR [--n N] [--seed S] [--source auto|renpy|procedural]``."""
    parser = argparse.ArgumentParser(
        prog="python -m kiridashi.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--n", type=int, default=16, help="number of images (default 16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--source", choices=SOURCES, default="auto")
    parser.add_argument("--cache-dir", type=Path, default=None, help="Ren'Py download cache")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    from kiridashi.logs import setup_logging

    setup_logging(args.verbose)
    try:
        summary = build_demo(args.out_dir, args.n, args.seed, args.source, args.cache_dir)
    except DemoSourceError as exc:
        log.error("%s", exc)
        return 1
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
