"""What an export reads: ``extraction_results.json``, its quality report, and the crops they list.

Bad input is an :class:`~kiridashi.export.settings.ExportError` with one line: a results file of
another version or not JSON, a quality report of another run, crops that are missing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiridashi import io as kio
from kiridashi.evaluate import REPORT, build_report, resolve_input_dir
from kiridashi.export.settings import ExportError
from kiridashi.pipeline import RESULTS
from kiridashi.runner import SCHEMA_VERSION, output_stem

log = logging.getLogger(__name__)


@dataclass
class Crop:
    """One character's cut-out as the export sees it.

    crop: path relative to the output folder (``crops/NAME_c0.png``); box: XYXY crop box in
    the source image; score: the detection score; iou: the source image's mask IoU against its
    ground truth (None without GT); flags: the quality report's no-reference flags for it;
    frame: the detector's XYXY character box (None in older results), where near-duplicates are
    compared.
    """

    crop: str
    source: str
    character: int
    box: list[int]
    score: float | None
    iou: float | None = None
    flags: list[dict[str, Any]] = field(default_factory=list)
    frame: list[float] | None = None

    @property
    def size(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.box
        return int(x1 - x0), int(y1 - y0)

    @property
    def stem(self) -> str:
        """The dataset file name without extension: the crop's path below ``crops/``, flat."""
        rel = self.crop.split("/", 1)[1] if self.crop.startswith("crops/") else self.crop
        return output_stem(rel).replace("/", "__")


def _read_json(path: Path, what: str) -> dict:
    try:
        doc = kio.read_json(path)
    except FileNotFoundError:
        raise ExportError(f"no {what} at {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path} is not a readable {what}: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise ExportError(f"{path} is not a {what}")
    return doc


def load_results(results_dir: Path) -> tuple[dict, Path]:
    """(the results document, its path); checks its schema version."""
    path = Path(results_dir) / RESULTS
    if Path(results_dir).is_file():
        path = Path(results_dir)
    doc = _read_json(path, "extraction results file")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION or not isinstance(doc.get("images"), list):
        raise ExportError(
            f"{path} is from another version of kiridashi (schema_version {version!r}, this one "
            f"reads {SCHEMA_VERSION}): run `kiridashi extract` again"
        )
    return doc, path


def same_run(report: dict, results: dict) -> bool:
    """Whether ``report`` is the quality report of ``results`` (same params, same images)."""
    sources = sorted(r.get("source") for r in results["images"])
    listed = sorted(e.get("source") for e in report.get("images") or [])
    return report.get("params_digest") == results.get("params_digest") and listed == sources


def load_report(
    results: dict,
    results_path: Path,
    report_path: Path | None,
    evaluate_cfg: dict | None,
    cache=None,
) -> tuple[dict, str]:
    """(the quality report of ``results``, where it came from).

    An explicit ``report_path`` must exist and belong to this run. Without one, the first of
    :func:`report_candidates` that belongs to this run is used; else the report is built now
    (``evaluate`` settings, cached per image like ``kiridashi check``) and not written.
    """
    if report_path is not None:
        report = _read_json(Path(report_path), "quality report")
        if not same_run(report, results):
            raise ExportError(
                f"{report_path} is the quality report of another run (other params or images): "
                f"run `kiridashi check --results {results_path}` or the evaluate stage again"
            )
        return report, str(report_path)
    for candidate in report_candidates(results_path):
        if not candidate.is_file():
            continue
        try:
            report = kio.read_json(candidate)
        except (OSError, ValueError):
            report = {}
        if isinstance(report, dict) and same_run(report, results):
            return report, str(candidate)
        log.info("%s is of another run", candidate)
    return build_report(results_path, evaluate_cfg, cache), "built now (evaluate settings)"


def report_candidates(results_path: Path) -> list[Path]:
    """Where a quality report of ``results_path`` may be: beside it (``kiridashi extract``,
    ``kiridashi check``), else in the DVC pipeline's ``data/eval`` beside ``data/output``."""
    return [results_path.parent / REPORT, results_path.parent.parent / "eval" / REPORT]


def list_crops(results: dict, report: dict, out_dir: Path) -> list[Crop]:
    """Every character crop of every processed image, with its report flags and image IoU.

    Raises ExportError when crops listed in the results are missing from ``out_dir``.
    """
    entries = {e.get("source"): e for e in report.get("images") or []}
    crops: list[Crop] = []
    for record in results["images"]:
        if record.get("status") != "ok":
            continue
        entry = entries.get(record["source"]) or {}
        iou = (entry.get("metrics") or {}).get("iou") if entry.get("scored") else None
        for k, ch in enumerate(record.get("characters") or []):
            index = int(ch.get("index", k))
            flags = [
                f
                for f in entry.get("flags") or []
                if f.get("character") is None or int(f["character"]) == index
            ]
            crops.append(
                Crop(
                    crop=str(ch.get("crop") or ""),
                    source=record["source"],
                    character=index,
                    box=[int(v) for v in ch.get("box") or (0, 0, 0, 0)],
                    score=None if ch.get("score") is None else float(ch["score"]),
                    iou=None if iou is None else float(iou),
                    flags=flags,
                    frame=[float(v) for v in ch["character_box"]]
                    if ch.get("character_box")
                    else None,
                )
            )
    missing = [c.crop or f"{c.source} c{c.character}" for c in crops if not c.crop]
    missing += [c.crop for c in crops if c.crop and not (out_dir / c.crop).is_file()]
    if missing:
        raise ExportError(
            f"{len(missing)} of {len(crops)} crops listed in {out_dir / RESULTS} are missing "
            f"(first: {missing[0]}): run `kiridashi extract` (or dvc repro) again"
        )
    return crops


def input_dir_of(results: dict, results_path: Path) -> Path:
    """The folder of the source images (for sidecar tag files)."""
    return resolve_input_dir(results.get("input_dir"), results_path)
