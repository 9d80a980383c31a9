"""One export run: results + quality report in, a training-set folder out.

``export_dataset`` reads ``extraction_results.json`` and its quality report, leaves out what the
quality gate and the near-duplicate groups say, renders each kept crop (background, canvas) and
writes it with its caption in the chosen layout, plus ``export_report.json`` (kept, dropped with
reasons, groups) and ``dashboard.html`` (the quality dashboard with the export's groups).

Cached like every step: a rendered image is stored under its crop's content hash + the render
settings + this code's version, a perceptual hash under the crop's content hash + the hash
method; re-exporting with other caption, gate or layout settings renders nothing again, and a
changed crop renders only that crop.

Atomic: everything is written into a hidden staging folder beside ``DATASET_DIR``, which
replaces ``DATASET_DIR`` only when complete; a failed or killed export leaves the previous
dataset as it was. A ``DATASET_DIR`` that holds other files (no ``export_report.json``) is never
replaced.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from kiridashi import __version__
from kiridashi import io as kio
from kiridashi.cache import ResultCache, code_version, content_hash, make_key
from kiridashi.export import captions, dedup, gate
from kiridashi.export.canvas import render
from kiridashi.export.inputs import (
    Crop,
    input_dir_of,
    list_crops,
    load_report,
    load_results,
)
from kiridashi.export.settings import ExportError, ExportSettings, load_settings
from kiridashi.export.writers import make_writer

log = logging.getLogger(__name__)

EXPORT_REPORT = "export_report.json"
DASHBOARD = "dashboard.html"
RENDER_CODE = ("kiridashi.export.canvas",)
HASH_CODE = ("kiridashi.export.canvas", "kiridashi.export.dedup")
_STAGING, _OLD = ".export-tmp", ".export-old"


# ------------------------------------------------------------------------------ the folder


def check_target(dataset_dir: Path) -> None:
    """Raise ExportError unless ``dataset_dir`` is new, empty or an earlier export."""
    if dataset_dir.exists() and not dataset_dir.is_dir():
        raise ExportError(f"{dataset_dir} is a file, not a folder")
    ours = (dataset_dir / EXPORT_REPORT).is_file()
    if dataset_dir.is_dir() and not ours and any(dataset_dir.iterdir()):
        raise ExportError(
            f"{dataset_dir} holds files that are not a kiridashi export (no {EXPORT_REPORT}): "
            "choose a new or empty folder"
        )


def _siblings(dataset_dir: Path, suffix: str) -> list[Path]:
    parent = dataset_dir.parent
    if not parent.is_dir():
        return []
    return sorted(parent.glob(f".{dataset_dir.name}.*{suffix}"))


def recover(dataset_dir: Path) -> None:
    """Tidy what a killed export left: a dataset moved aside goes back, staging folders go."""
    old = _siblings(dataset_dir, _OLD)
    if old and not dataset_dir.exists():
        os.replace(old.pop(), dataset_dir)
        log.info("restored %s from an interrupted export", dataset_dir)
    for stale in old + _siblings(dataset_dir, _STAGING):
        shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def staged(dataset_dir: Path):
    """Yield a hidden staging folder beside ``dataset_dir`` that replaces it when the block
    ends normally, and is removed when it raises (the previous ``dataset_dir`` stays)."""
    dataset_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dataset_dir.name}.", suffix=_STAGING,
                                    dir=dataset_dir.parent))  # fmt: skip
    try:
        os.chmod(staging, kio.DIR_MODE)
        yield staging
        replace_folder(staging, dataset_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def replace_folder(staging: Path, dataset_dir: Path) -> None:
    """Put the complete ``staging`` folder at ``dataset_dir`` (two renames; see :func:`recover`)."""
    aside = None
    if dataset_dir.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".{dataset_dir.name}.", suffix=_OLD,
                                      dir=dataset_dir.parent))  # fmt: skip
        os.replace(dataset_dir, aside)
    os.replace(staging, dataset_dir)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


# ------------------------------------------------------------------------------ the crops


def rank(crop: Crop) -> tuple:
    """Sort key, best first: detection score, the image's IoU, crop area, then its name."""
    w, h = crop.size
    return (-(crop.score or 0.0), -(crop.iou if crop.iou is not None else 0.0), -w * h, crop.crop)


class CropData:
    """Bytes, content hash and (lazily) pixels of the crops an export reads."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self._bytes: dict[str, bytes] = {}

    def data(self, crop: Crop) -> bytes:
        if crop.crop not in self._bytes:
            try:
                self._bytes[crop.crop] = (self.out_dir / crop.crop).read_bytes()
            except OSError as exc:
                raise ExportError(
                    f"cannot read {self.out_dir / crop.crop}: {exc.strerror}"
                ) from None
        return self._bytes[crop.crop]

    def hash(self, crop: Crop) -> str:
        return content_hash(self.data(crop))

    def rgba(self, crop: Crop) -> np.ndarray:
        """HxWx4 uint8 straight RGBA (an opaque crop gets alpha 255)."""
        try:
            img = kio.decode_image(self.data(crop))
        except kio.BadInput as exc:
            raise ExportError(f"{self.out_dir / crop.crop} is unreadable: {exc}") from None
        alpha = img.alpha if img.alpha is not None else np.full(img.rgb.shape[:2], 255, np.uint8)
        return np.dstack([img.rgb, alpha])


class Counts:
    """computed / reused per kind of cached export result."""

    def __init__(self) -> None:
        self.by_kind: dict[str, Counter] = {}

    def add(self, kind: str, computed: bool) -> None:
        self.by_kind.setdefault(kind, Counter())["computed" if computed else "reused"] += 1

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {
            k: {"computed": c["computed"], "reused": c["reused"]} for k, c in self.by_kind.items()
        }


def _cached(cache: ResultCache, counts: Counts, kind: str, version: str, content: str,
            params: dict, compute) -> Any:  # fmt: skip
    value, computed = cache.get_or_compute(make_key(kind, version, content, params), compute, kind)
    counts.add(kind, computed)
    return value


def near_duplicates(
    crops: list[Crop], pixels: CropData, settings: ExportSettings, cache: ResultCache,
    counts: Counts,
) -> tuple[list[Crop], list[dict], list[dict]]:  # fmt: skip
    """(the best crop of each group, dropped entries of the others, groups of 2 or more)."""
    version = code_version(*HASH_CODE)
    params = {"method": settings.dedup_hash, "side": dedup.HASH_SIDE}
    hashes = [
        _cached(cache, counts, "export.hash", version, pixels.hash(c),
                {**params, "box": c.box, "frame": c.frame},
                lambda c=c: dedup.perceptual_hash(dedup.in_frame(pixels.rgba(c), c.box, c.frame),
                                                  settings.dedup_hash))
        for c in crops
    ]  # fmt: skip
    order = sorted(range(len(crops)), key=lambda i: rank(crops[i]))
    groups = dedup.group(hashes, order, settings.dedup_distance)
    n_bits = len(dedup.bits(hashes[0])) if hashes else 0
    kept, dropped, shown = [], [], []
    for g in groups:
        best = crops[g.best]
        kept.append(best)
        for i, d in g.members[1:]:
            why = [("near_duplicate",
                    f"near-duplicate of {best.crop} ({d} of {n_bits} hash bits differ, "
                    f"<= export.dedup_distance {settings.dedup_distance}); kept the better-scored")]  # fmt: skip
            dropped.append(gate.dropped_entry(crops[i], why))
        if len(g.members) > 1:
            shown.append({
                "kept": best.crop,
                "members": [{"crop": crops[i].crop, "source": crops[i].source,
                             "character": crops[i].character, "distance": d,
                             "hash": hashes[i]} for i, d in g.members],
            })  # fmt: skip
    return kept, dropped, shown


# ------------------------------------------------------------------------------ the run


def export_dataset(
    results_dir: Path,
    dataset_dir: Path,
    cfg: dict,
    cache: ResultCache,
    report_path: Path | None = None,
) -> dict:
    """Export the crops of ``results_dir`` (or a results file) to ``dataset_dir``.

    cfg: the composed config (``export`` settings; ``evaluate`` when the quality report must
    be built). Returns the export report. Raises ExportError for bad input or settings, before
    anything is written.
    """
    settings = load_settings(cfg.get("export"))
    results, results_path = load_results(Path(results_dir))
    out_dir = results_path.parent
    dataset_dir = Path(dataset_dir)
    recover(dataset_dir)
    check_target(dataset_dir)
    report, report_from = load_report(
        results, results_path, report_path, cfg.get("evaluate"), cache
    )
    crops = list_crops(results, report, out_dir)
    input_dir = input_dir_of(results, results_path)
    counts = Counts()
    pixels = CropData(out_dir)

    passed, dropped = gate.split(crops, settings)
    groups: list[dict] = []
    kept = passed
    if settings.dedup and passed:
        kept, near, groups = near_duplicates(passed, pixels, settings, cache, counts)
        dropped += near
    kept.sort(key=lambda c: c.crop)
    dropped.sort(key=lambda d: d["crop"])

    with staged(dataset_dir) as staging:
        writer = make_writer(staging, settings)
        images = _write_images(kept, pixels, settings, writer, input_dir, cache, counts)
        writer.finish()
        doc = _report(settings, results_path, report_from, input_dir, crops, images, dropped,
                      groups, writer.folder, counts)  # fmt: skip
        kio.atomic_write_json(staging / EXPORT_REPORT, doc)
        _write_dashboard(report, doc, staging / DASHBOARD)
    return doc


def _write_images(kept, pixels, settings, writer, input_dir, cache, counts) -> list[dict]:
    version = code_version(*RENDER_CODE)
    params = settings.render_params()
    used: Counter = Counter()
    images = []
    for crop in kept:
        png = _cached(cache, counts, "export.image", version, pixels.hash(crop), params,
                      lambda crop=crop: kio.encode_png(render(pixels.rgba(crop), settings.side,
                      settings.canvas, settings.max_upscale, settings.background_rgb)))  # fmt: skip
        try:
            tags, tag_file = captions.read_tags(
                input_dir / crop.source, crop.character, settings.tags_ext
            )
        except ValueError as exc:
            log.warning("%s: %s (caption without tags)", crop.source, exc)
            tags, tag_file = [], None
        source_stem = Path(crop.source).stem
        caption = captions.render_caption(
            settings.caption, settings.name, tags, source_stem, crop.character
        )
        stem = crop.stem
        used[stem] += 1
        if used[stem] > 1:
            stem = f"{stem}_{used[stem]}"
        record = {
            "source": crop.source,
            "character": crop.character,
            "crop": crop.crop,
            "box": crop.box,
            "scores": {"detection": crop.score, "image_iou": crop.iou},
            "tags_file": None if tag_file is None else str(tag_file),
        }
        rel = writer.add(stem, png, caption, record)
        images.append({"file": rel, **record, "caption": caption})
    return images


def _report(settings, results_path, report_from, input_dir, crops, images, dropped, groups,
            folder, counts) -> dict:  # fmt: skip
    by_rule = Counter(rule.split(":")[0] for d in dropped for rule in d["rules"][:1])
    return {
        "schema_version": 1,
        "tool": f"kiridashi {__version__}",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "results": str(results_path),
        "quality_report": report_from,
        "input_dir": str(input_dir),
        "format": settings.format,
        "folder": folder,
        "settings": settings.as_dict(),
        "summary": {
            "crops": len(crops),
            "kept": len(images),
            "dropped": len(dropped),
            "dropped_by": dict(sorted(by_rule.items())),
            "near_duplicate_groups": len(groups),
        },
        "images": images,
        "dropped": dropped,
        "groups": groups,
        "cache": counts.as_dict(),
    }


def _write_dashboard(report: dict, doc: dict, path: Path) -> None:
    from kiridashi import history
    from kiridashi.report import HISTORY_RUNS, write_dashboard

    runs: list[dict] = []
    with contextlib.suppress(OSError, ValueError):
        runs = history.same_dataset(history.load(), report.get("input_dir"))[-HISTORY_RUNS:]
    write_dashboard(report, path, runs, export=doc)


def disabled_report(dataset_dir: Path) -> str:
    """For the DVC stage with ``export.enabled: false``: ``dataset_dir`` holds only an
    ``export_report.json`` that says so (a stage must write its output). Returns the line to print.
    """
    dataset_dir = Path(dataset_dir)
    recover(dataset_dir)
    check_target(dataset_dir)
    note = "export disabled: set export.enabled=true (dvc exp run -S export.enabled=true)"
    with staged(dataset_dir) as staging:
        kio.atomic_write_json(staging / EXPORT_REPORT, {"schema_version": 1, "enabled": False,
                                                        "note": note})  # fmt: skip
    return note


def summary_text(doc: dict, dataset_dir: Path) -> str:
    """What ``kiridashi export`` prints."""
    s = doc["summary"]
    by = ", ".join(f"{k} {v}" for k, v in s["dropped_by"].items()) or "none"
    lines = [
        f"export: {s['kept']} of {s['crops']} crops kept, {s['dropped']} left out ({by}); "
        f"{s['near_duplicate_groups']} near-duplicate groups",
        *(f"{k}: computed {c['computed']}, reused {c['reused']}" for k, c in doc["cache"].items()),
        f"dataset: {Path(dataset_dir) / doc['folder'] if doc['folder'] else dataset_dir}",
        f"report: {Path(dataset_dir) / EXPORT_REPORT}",
    ]
    return "\n".join(lines)
