"""Input and output folders at fsspec URLs (``s3://bucket/in``), so cluster nodes need no shared
disk: a worker reads its image from the URL and writes its outputs to the URL itself.

A location is a local :class:`~pathlib.Path` or a URL string (``scheme://...``); every function
here takes either, and local paths go on to :mod:`kiridashi.io` unchanged.

- Reading: ``fsspec`` ``cat_file``; a missing or unreadable object is :class:`BadInput`.
- Listing: the images below the URL, each paired with its ``NAME_gt.png`` / ``NAME_gt.jpg``
  (the local rules of :func:`kiridashi.io.discover`, without the file-system quirks: symlinks).
- Writing: one PUT per file at an object store (no partial objects), temp + rename for a
  ``file://`` URL and a local folder.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from kiridashi import io as kio
from kiridashi.cache_remote import is_url

Location = Path | str


def location(text: Any) -> Location:
    """A URL stays a string, anything else becomes a Path."""
    return text.rstrip("/") if is_url(text) else Path(text)


def join(base: Location, rel: str) -> Location:
    return f"{base}/{rel}" if isinstance(base, str) else base / rel


def _fs(url: str):
    from fsspec.core import url_to_fs

    return url_to_fs(url)


def read_bytes(path: Location) -> bytes:
    """A file's bytes (see :func:`kiridashi.io.read_bytes`); raises BadInput with the reason."""
    if not isinstance(path, str):
        return kio.read_bytes(path)
    try:
        fs, p = _fs(path)
        data = fs.cat_file(p)
    except FileNotFoundError:
        raise kio.BadInput("file not found") from None
    except Exception as exc:  # noqa: BLE001 - one unreadable object is one skipped image
        raise kio.BadInput(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    if not data:
        raise kio.BadInput("zero-byte file")
    return data


def discover(root: Location) -> kio.Discovery:
    """The images below ``root`` with their GT masks (:func:`kiridashi.io.discover` for folders)."""
    if not isinstance(root, str):
        return kio.discover(root)
    try:
        fs, base = _fs(root)
        base = base.rstrip("/")
        found = sorted(fs.find(base))
    except Exception as exc:  # noqa: BLE001
        raise kio.BadInput(f"cannot list input {root}: {str(exc).splitlines()[0]}") from None
    rels = [p[len(base) + 1 :] for p in found if p.startswith(base + "/")]
    rels = [r for r in rels if not any(part.startswith(".") for part in r.split("/"))]
    images = [r for r in rels if posixpath.splitext(r)[1].lower() in kio.IMAGE_EXTENSIONS]
    lower = {r.lower(): r for r in images}
    gts = [r for r in images if kio.is_gt_name(Path(r))]
    items, used = [], set()
    for rel in (r for r in images if r not in gts):
        stem = posixpath.splitext(rel)[0]
        gt = next(
            (lower[k] for ext in (".png", ".jpg", ".jpeg")
             if (k := f"{stem}{kio.GT_SUFFIX}{ext}".lower()) in lower),
            None,
        )  # fmt: skip
        notes = [] if gt is None or gt.lower().endswith(".png") else [f"lossy GT {gt}"]
        used.add(gt)
        items.append(
            kio.ImageItem(
                rel=kio._nfc(rel),  # noqa: SLF001 - the same output names as a local folder
                path=f"{root}/{rel}",  # type: ignore[arg-type]
                gt_path=f"{root}/{gt}" if gt else None,  # type: ignore[arg-type]
                notes=notes,
            )
        )
    unmatched = [g for g in gts if g not in used]
    return kio.Discovery(items=items, skipped=[], unmatched_gt=unmatched)


def write_bytes(base: Location, rel: str, data: bytes) -> None:
    """Write one output file: atomically in a local folder, one PUT at a URL."""
    if not isinstance(base, str):
        kio.atomic_write_bytes(base / rel, data)
        return
    fs, p = _fs(f"{base}/{rel}")
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        kio.atomic_write_bytes(Path(p), data)  # file:// URL: a local folder after all
    else:
        fs.pipe_file(p, data)


def check_input(root: Location) -> None:
    """Raise BadInput unless ``root`` is an existing folder (or a URL that lists)."""
    if isinstance(root, str):
        discover(root)  # one listing; an unreachable bucket is one line
        return
    if not root.exists():
        raise kio.BadInput(f"input folder not found: {root}")
    if not root.is_dir():
        raise kio.BadInput(f"input is a file, not a folder: {root} (give the folder that holds it)")
