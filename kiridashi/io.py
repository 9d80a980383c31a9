"""Finding, decoding and atomically writing files.

Images come back as HxWx3 uint8 RGB arrays in *displayed* orientation (EXIF applied); masks as
HxW bool arrays. Anything that cannot be used raises :class:`BadInput` with a one-line reason, so a
batch can log it and carry on.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
GT_SUFFIX = "_gt"
DEFAULT_MAX_PIXELS = 64_000_000  # a 8000x8000 CG is fine, a forged 50k x 50k header is not

_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK  # what open() would give; mkstemp alone gives 0600
DIR_MODE = 0o777 & ~_UMASK  # what mkdir would give; mkdtemp alone gives 0700

# We check the pixel count ourselves (with a clear message) before decoding.
Image.MAX_IMAGE_PIXELS = None

# Magic numbers of the formats we accept. Everything else is "not an image".
_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


class BadInput(Exception):
    """An input that cannot be used; ``str(exc)`` is a one-line reason for the user."""


@dataclass
class ImageItem:
    """One input image found by :func:`discover`.

    rel: path relative to the input root, POSIX separators, NFC-normalised (the output name).
    path: the file to read (symlinks are followed when read).
    gt_path: the paired ground-truth mask, or None.
    notes: non-fatal remarks about the pairing (duplicate GT, lossy GT, ...).
    """

    rel: str
    path: Path
    gt_path: Path | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Skip:
    """A file that discovery saw and will not process, with the reason."""

    rel: str
    reason: str


@dataclass
class Discovery:
    items: list[ImageItem]
    skipped: list[Skip]
    unmatched_gt: list[str]


@dataclass
class DecodedImage:
    """rgb: HxWx3 uint8 (displayed orientation); alpha: HxW uint8 or None; notes: remarks."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    notes: list[str]


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def is_gt_name(path: Path) -> bool:
    """True for ground-truth files (``NAME_gt.png``/``NAME_gt.jpg``...), which are never inputs."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.stem.endswith(GT_SUFFIX)


def _walk(root: Path) -> Iterator[Path]:
    """All non-hidden entries below root (files and symlinks), sorted, following dir symlinks once."""
    seen_dirs: set[Path] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            real = folder.resolve()
        except OSError:
            continue
        if real in seen_dirs:
            continue
        seen_dirs.add(real)
        try:
            entries = sorted(folder.iterdir(), key=lambda p: p.name)
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                subdirs.append(entry)
            else:
                yield entry
        stack.extend(reversed(subdirs))


def find_ground_truth(image_path: Path) -> tuple[Path | None, list[str]]:
    """The GT mask paired with an image: ``NAME_gt.png`` else ``NAME_gt.jpg`` (exact stem only).

    Returns (path or None, notes). Both present: the lossless PNG wins and a note says so.
    """
    notes: list[str] = []
    folder, stem = image_path.parent, image_path.stem
    candidates = {}
    try:
        names = {p.name.lower(): p for p in folder.iterdir()}
    except OSError:
        return None, notes
    for ext in (".png", ".jpg", ".jpeg"):
        hit = names.get(f"{stem}{GT_SUFFIX}{ext}".lower())
        if hit is not None and hit.exists():
            candidates[ext] = hit
    if ".png" in candidates:
        if len(candidates) > 1:
            others = ", ".join(p.name for e, p in candidates.items() if e != ".png")
            notes.append(f"duplicate GT: using {candidates['.png'].name}, ignoring {others}")
        return candidates[".png"], notes
    for ext in (".jpg", ".jpeg"):
        if ext in candidates:
            notes.append(f"lossy GT {candidates[ext].name}: binarised at >=128")
            return candidates[ext], notes
    return None, notes


def discover(root: Path) -> Discovery:
    """Recursively list the images under ``root`` with their GT masks.

    Hidden files are ignored; ``*_gt.*`` files are never inputs; a GT whose image does not exist is
    listed in ``unmatched_gt``; dangling symlinks and unknown extensions are reported in ``skipped``.
    """
    root = Path(root)
    if not root.is_dir():
        raise BadInput(f"input folder not found: {root}")
    items: list[ImageItem] = []
    skipped: list[Skip] = []
    gt_files: list[Path] = []
    for path in _walk(root):
        rel = _nfc(path.relative_to(root).as_posix())
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if is_gt_name(path):
            gt_files.append(path)
            continue
        if path.is_symlink() and not path.exists():
            skipped.append(Skip(rel, f"dangling symlink -> {os.readlink(path)}"))
            continue
        gt, notes = find_ground_truth(path)
        stub = link_stub_target(path)
        if stub is not None:
            if not (path.parent / stub).is_file():
                skipped.append(
                    Skip(rel, f"dangling link (symlink stored as a text file) -> {stub}")
                )
                continue
            notes.append(f"symlink stored as a text file (git core.symlinks=false) -> {stub}")
        items.append(ImageItem(rel=rel, path=path, gt_path=gt, notes=notes))
    used = {item.gt_path for item in items if item.gt_path is not None}
    stems = {(item.path.parent, item.path.stem.lower()) for item in items}
    unmatched = []
    for gt in gt_files:
        if gt in used:
            continue
        image_stem = gt.stem[: -len(GT_SUFFIX)].lower()
        if (gt.parent, image_stem) not in stems:
            unmatched.append(_nfc(gt.relative_to(root).as_posix()))
    return Discovery(items=items, skipped=skipped, unmatched_gt=unmatched)


LINK_STUB_MAX_BYTES = 1024


def link_stub_target(path: Path, data: bytes | None = None) -> str | None:
    """The target written in a *symlink stub*, else None.

    Git checks a symbolic link out as a small text file holding the link's target when symlinks
    are not available (``core.symlinks=false``: Windows drives, some WSL and zip/copy round
    trips). Such a file has no image signature and one line of relative-path text.
    """
    if data is None:
        try:
            if Path(path).stat().st_size > LINK_STUB_MAX_BYTES:
                return None
            data = Path(path).read_bytes()
        except OSError:
            return None
    if not data or len(data) > LINK_STUB_MAX_BYTES or sniff_format(data) is not None:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\n" in text or "\0" in text or text.strip() != text or text.startswith("/"):
        return None
    return text if Path(text).suffix.lower() in IMAGE_EXTENSIONS else None


def read_bytes(path: Path) -> bytes:
    """File contents; raises BadInput with a reason for missing, unreadable or empty files.

    A symlink stub (see :func:`link_stub_target`) is followed once.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise BadInput("file not found (dangling link?)") from None
    except OSError as exc:
        raise BadInput(f"cannot read file: {exc.strerror or exc}") from None
    if not data:
        raise BadInput("zero-byte file")
    target = link_stub_target(Path(path), data)
    if target is not None:
        try:
            data = (Path(path).parent / target).read_bytes()
        except OSError:
            raise BadInput(f"dangling link (symlink stored as a text file) -> {target}") from None
    return data


def sniff_format(data: bytes) -> str | None:
    """Image format from magic bytes, or None."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype in (np.uint16, np.int32, np.uint32) or arr.max(initial=0) > 255:
        return (arr.astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
    return arr.clip(0, 255).astype(np.uint8)


def _open_checked(data: bytes, max_pixels: int) -> tuple[Image.Image, list[str]]:
    fmt = sniff_format(data)
    if fmt is None:
        raise BadInput("not an image (unknown file signature)")
    try:
        img = Image.open(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad headers
        raise BadInput(f"cannot decode {fmt}: {exc}") from None
    w, h = img.size
    if w * h > max_pixels:
        raise BadInput(
            f"refused before decoding: header claims {w}x{h} = {w * h:,} px "
            f"(> limit {max_pixels:,}; possible decompression bomb)"
        )
    notes: list[str] = []
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
        img.seek(0)
        notes.append(f"animated ({frames} frames), using frame 0")
    try:
        img.load()
    except Exception as exc:  # noqa: BLE001
        raise BadInput(f"corrupt or truncated {fmt}: {exc}") from None
    return img, notes


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode image bytes to RGB in displayed orientation.

    Handles EXIF orientation, grayscale, CMYK, 16-bit, palette, animated (frame 0) and RGBA
    (alpha returned separately; RGB is flattened onto white under transparency).
    Raises BadInput for zero-byte, non-image, truncated, or oversized inputs.
    """
    if not data:
        raise BadInput("zero-byte file")
    img, notes = _open_checked(data, max_pixels)
    try:
        oriented = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the image
        oriented = img
        notes.append("unreadable EXIF orientation ignored")
    if oriented is not img and img.getexif().get(0x0112, 1) not in (1, None):
        notes.append(f"EXIF orientation {img.getexif().get(0x0112)} applied")
    img = oriented
    mode = img.mode
    alpha = None
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        gray = _to_uint8(np.asarray(img))
        rgb = np.repeat(gray[:, :, None], 3, axis=2)
    else:
        if mode == "P" and "transparency" in img.info or mode in ("LA", "PA"):
            img = img.convert("RGBA")
        if img.mode == "RGBA":
            arr = np.asarray(img)
            a = arr[:, :, 3]
            if a.min() < 255:
                alpha = a.copy()
            rgb = arr[:, :, :3].astype(np.float32)
            af = a[:, :, None].astype(np.float32) / 255.0
            rgb = (rgb * af + 255.0 * (1.0 - af)).round().astype(np.uint8)
        else:
            rgb = np.asarray(img.convert("RGB"))
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    return DecodedImage(rgb=rgb, alpha=alpha, notes=notes)


def load_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    return decode_image(read_bytes(path), max_pixels)


def load_mask(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, list[str]]:
    """A ground-truth mask as HxW bool (displayed orientation).

    Colour masks are converted to L; masks stored as 0/1 are rescaled (with a note); otherwise
    binarised at >= 128. Raises BadInput when it cannot be read.
    """
    img, notes = _open_checked(read_bytes(path), max_pixels)
    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"))
        if rgba[:, :, 3].min() < 255:
            notes.append("GT alpha channel used as mask")
            return rgba[:, :, 3] >= 128, notes
    if img.mode not in ("L", "1"):
        if img.mode not in ("I;16", "I"):
            notes.append(f"GT in mode {img.mode} converted to L")
        img = img.convert("L") if img.mode not in ("I;16", "I") else img
    arr = np.asarray(img)
    if arr.dtype == bool:
        return arr.copy(), notes
    arr = _to_uint8(arr) if arr.dtype != np.uint8 else arr
    peak = int(arr.max(initial=0))
    if peak == 1:
        notes.append("GT stored as 0/1, rescaled to 0/255")
        return arr >= 1, notes
    return arr >= 128, notes


# ----------------------------------------------------------------------------- atomic writes


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder + ``os.replace``.

    A killed process leaves either the old file or the new one, never a partial file. There is
    no fsync per file (it was half the time of a warm re-run): a killed process cannot leave a
    partial file either way, and after a power cut the newest outputs may be missing or empty,
    which a re-run restores from the cache.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of an HxW (L), HxWx3 (RGB) or HxWx4 (RGBA) uint8 array.

    zlib level 1: a 720x600 RGBA crop encodes in ~35 ms instead of ~105 ms at level 6, for a
    file ~10 % larger (lossless either way).
    """
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def atomic_write_png(path: Path, array: np.ndarray) -> None:
    atomic_write_bytes(path, encode_png(array))


def read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def read_document(path: Path, what: str, required: str) -> dict:
    """A JSON document the user named (``what``: e.g. ``extraction_results.json``) that must
    hold the key ``required``; anything else is BadInput with one line saying so."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: not found (expected {what})")
    if path.is_dir():
        raise BadInput(f"{path}: is a folder (expected {what})")
    try:
        doc = read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not JSON"
        raise BadInput(f"{path}: {reason} (expected {what})") from None
    if not isinstance(doc, dict) or required not in doc:
        raise BadInput(f"{path}: not {what} (it has no {required!r})")
    return doc
