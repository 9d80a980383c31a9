"""The Python API: ``Extractor(cfg).extract(image_bytes) -> Result``.

One image in, its characters out, through the same per-image step chain and content-addressed
cache as ``kiridashi extract``, the DVC stages and ``kiridashi serve`` (:class:`~kiridashi.runner.
Runner`, :func:`~kiridashi.pipeline.write_image_outputs`): an image any of them has processed
with the same settings is never processed again by another.

>>> from kiridashi import Extractor
>>> ex = Extractor()                      # conf/ composed and checked; or Extractor(overrides=[...])
>>> result = ex.extract(open("sprite.png", "rb").read(), name="sprite.png")
>>> result.ok, len(result.crops), result.record["characters"][0]["box"]

A bad input (not an image, a decompression bomb, a truncated file) is not an exception: the
result is ``ok == False`` with ``reason``, the one line ``kiridashi extract`` prints for it.
A bad setting raises :class:`~kiridashi.config.ConfigError` when the Extractor is built.
"""

from __future__ import annotations

import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiridashi import io as kio
from kiridashi.cache import code_version, make_key
from kiridashi.pipeline import image_record, make_runner, write_image_outputs
from kiridashi.runner import Runner, Skipped, Source, output_stem

# modules whose code defines the quality flags (the cache key of an image's flags)
QUALITY_CODE = ("kiridashi.checks", "kiridashi.evaluate", "kiridashi.metrics")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str | None, default: str = "image") -> str:
    """A file name for an upload: its last path part, characters outside ``[A-Za-z0-9._-]``
    replaced by ``_``, no leading dot, at most 100 characters."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = _UNSAFE.sub("_", base).lstrip(".")[:100]
    return base or default


def source_from_bytes(data: bytes, name: str) -> Source:
    """A :class:`Source` whose bytes are given (nothing is read from disk)."""
    src = Source(rel=name, path=Path(name))
    src.__dict__["data"] = bytes(data)  # fills the cached property
    return src


@dataclass
class Result:
    """One image's outcome.

    record: the image's record as in ``extraction_results.json`` (source, content_hash, status,
    size, mask, characters with box, score, detectors, face_box, keypoints, crop, rejected, or
    ``status: skipped`` and ``reason``), plus ``flags`` (the no-reference quality flags of the
    quality report) and ``cached`` (the result was in the cache).
    mask_png: the full-frame union mask (0/255 PNG); crops: one RGBA PNG per character.
    key: the image's merge cache key (content, code versions and settings).
    """

    record: dict[str, Any]
    mask_png: bytes | None = None
    crops: list[bytes] = field(default_factory=list)
    key: str | None = None

    @property
    def ok(self) -> bool:
        return self.record.get("status") == "ok"

    @property
    def reason(self) -> str | None:
        return self.record.get("reason")

    @property
    def cached(self) -> bool:
        return bool(self.record.get("cached"))

    def save(self, out_dir: Path | str) -> None:
        """Write the mask and crops under ``out_dir`` at the record's paths (atomically)."""
        if not self.ok or self.mask_png is None:
            return
        out_dir = Path(out_dir)
        kio.atomic_write_bytes(out_dir / self.record["mask"], self.mask_png)
        for ch, png in zip(self.record["characters"], self.crops, strict=True):
            kio.atomic_write_bytes(out_dir / ch["crop"], png)


class Extractor:
    """Models and cache for one configuration; :meth:`extract` cuts out one image at a time.

    cfg: a composed config (``kiridashi.schema.compose_valid``); default: ``conf/`` with
    ``overrides``. jobs: how many Extractors run side by side in separate processes (sizes the
    native thread pools). Models load on first use and stay loaded. Not thread-safe: one
    Extractor per thread or process.
    """

    def __init__(
        self, cfg: dict | None = None, overrides: list[str] | None = None, jobs: int = 1
    ) -> None:
        if cfg is None:
            from kiridashi.schema import compose_valid

            cfg = compose_valid(overrides)
        self.cfg = cfg
        self.runner: Runner = make_runner(cfg, jobs)

    def extract(
        self,
        image: bytes,
        name: str = "image",
        out_dir: Path | str | None = None,
        quality: bool = True,
        record: dict[str, Any] | None = None,
        partners: list[Path | str] | None = None,
    ) -> Result:
        """Cut out every character of one image (its encoded bytes: PNG, JPEG, WebP, ...).

        name: the image's name (``record["source"]``; outputs are ``masks/STEM.png`` and
        ``crops/STEM_c{k}.png``). out_dir: also write the mask and crops there (atomically), as
        ``kiridashi extract`` does. quality: add the no-reference quality flags (cached too).
        record: the record to fill (e.g. with ``gt`` and ``notes`` of a folder's image).
        partners: files of other images over the same background
        (:mod:`kiridashi.segmenters.plates`; a folder's ``plate_partners``), whose detections
        :meth:`detect` has cached.
        """
        runner = self.runner
        src = source_from_bytes(image, name)
        src.partners = tuple(Source(rel=str(p), path=Path(p)) for p in partners or ())
        record = {"source": name, "gt": None, "notes": [], **(record or {})}
        before = runner.tally()
        runner.begin_image()
        ok = False
        try:
            merged = runner.merge(src)
            key = runner.keys(src)["merge"]
            ok = True
        except (Skipped, kio.BadInput) as exc:
            record.update(status="skipped", reason=str(exc), cached=False)
            return Result(record)
        finally:
            runner.end_image("merge", ok)
        reused = (runner.tally() - before)["step", "merge", "reused"] > 0
        record.update(content_hash=src.hash, status="ok")
        if out_dir is not None:
            write_image_outputs(Path(out_dir), src, merged, record)
        else:
            image_record(output_stem(name), merged, record)
        if quality:
            record["flags"] = self._flags(src, merged, record, key, out_dir)
        record["cached"] = reused
        src.release()
        return Result(
            record=record,
            mask_png=merged["mask_png"],
            crops=[ch["crop_png"] for ch in merged["characters"]],
            key=key,
        )

    def detect(self, image: bytes, name: str = "image") -> bool:
        """Run (or find cached) the detect step of one image: what pairing images by their
        background needs before any of them is cut. False for a bad input."""
        runner = self.runner
        src = source_from_bytes(image, name)
        runner.begin_image()
        ok = False
        try:
            runner.detect(src)
            if runner.plates is not None:  # what pairing reads next, while it is decoded
                runner.plate_view(src)
            ok = True
        except (Skipped, kio.BadInput):
            pass
        finally:
            runner.end_image("detect", ok)
        return ok

    def _flags(
        self, src: Source, merged: dict, record: dict, key: str, out_dir: Path | str | None
    ) -> list[dict]:
        """The report's no-reference flags of this image (:func:`kiridashi.evaluate.
        inspect_characters` on its outputs), cached under its merge key and the checks' settings."""
        from kiridashi.evaluate import inspect_characters

        cfg = self.cfg.get("evaluate") or {}
        settings = {"checks": cfg.get("checks"), "pose": cfg.get("pose")}
        qkey = make_key("quality", code_version(*QUALITY_CODE), key, settings)

        def compute() -> list[dict]:
            rgb = self.runner.decoded(src).rgb
            union = kio.decode_image(merged["mask_png"]).rgb[:, :, 0] >= 128
            if out_dir is not None:
                return inspect_characters(rgb, union, record, Path(out_dir), cfg)["flags"]
            with tempfile.TemporaryDirectory(prefix="kiridashi-") as tmp:
                write_image_outputs(Path(tmp), src, merged, dict(record))
                return inspect_characters(rgb, union, record, Path(tmp), cfg)["flags"]

        flags, _ = self.runner.cache.get_or_compute(qkey, compute, kind="quality")
        return flags

    def load_models(self) -> None:
        """Build the enabled detectors and the segmenter now (each once per process) instead of
        on the first image: what a resident worker does before it reports ready."""
        from kiridashi.detectors.base import build_enabled
        from kiridashi.segmenters.base import build

        models_dir = self.runner.models_dir
        build_enabled((self.cfg.get("detect") or {}).get("detectors") or {}, models_dir=models_dir)
        build(self.cfg["segment"], models_dir)

    def counts(self) -> Counter:
        """Images computed / reused / skipped per step so far (see :meth:`Runner.tally`)."""
        return self.runner.tally()

    def close(self) -> None:
        self.runner.cache.close()
