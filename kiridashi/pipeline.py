"""Running the steps over folders: the DVC stages and the one-shot ``kiridashi extract``.

Each DVC stage walks the images listed by the stage before it, runs its own step through the
cache and writes a small JSON manifest (its ``outs``). The manifest also records the params of
every step so far, so a stage never reads another stage's section of ``params.yaml`` yet can
recompute anything missing from the cache. The merge stage and ``extract`` write the output
contract (masks, crops, ``extraction_results.json``), image by image, so an interrupted run keeps
everything finished before the interruption.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import functools
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from kiridashi import __version__
from kiridashi import io as kio
from kiridashi.cache import open_cache, params_digest
from kiridashi.config import ConfigError, resolve_models_dir
from kiridashi.errors import OutputWriteError
from kiridashi.executors import is_local, make_executor
from kiridashi.locations import Location, discover, join, location, write_bytes
from kiridashi.models import ModelError
from kiridashi.runner import SCHEMA_VERSION, STEPS, Runner, Skipped, Source, output_stem
from kiridashi.schema import validate
from kiridashi.threads import limit_threads

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
RESULTS = "extraction_results.json"
_RECORD_KEYS = ("source", "content_hash", "gt", "notes", "status", "reason", "plate_partners")


def progress(iterable: Iterable | None, total: int, desc: str):
    """A tqdm progress bar on stderr (hidden when stderr is not a terminal)."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="img", disable=None, file=sys.stderr)


def make_runner(cfg: dict, jobs: int = 1) -> Runner:
    """A Runner for a process that is one of ``jobs`` image workers (sizes the thread pools).

    Start-up checks come first: settings every image depends on (ConfigError) and the model
    files of the enabled detectors (a missing optional one: one warning line, before any image).
    """
    validate(cfg, partial=True)
    limit_threads(jobs)
    models_dir = resolve_models_dir(cfg.get("models_dir"))
    if detectors := (cfg.get("detect") or {}).get("detectors"):
        from kiridashi.detectors.base import check_model_files

        check_model_files(detectors, models_dir=models_dir)
    return Runner(cfg, open_cache(cfg.get("cache")), models_dir)


def report_counts(runner: Runner, steps: Iterable[str] = STEPS) -> str:
    """``step: computed N, reused M, skipped K`` lines (what every stage prints)."""
    lines = [
        f"{s}: computed {c['computed']}, reused {c['reused']}, skipped {c['skipped']}"
        for s in steps
        for c in [runner.counts[s]]
    ]
    for kind, (computed, reused) in sorted(runner.cache.stats.by_kind.items()):
        if "." in kind and kind.split(".", 1)[0] in steps:  # sub-results, e.g. one detector
            lines.append(f"  {kind}: computed {computed}, reused {reused}")
    if runner.cache.stats.corrupt:
        lines.append(f"cache: {runner.cache.stats.corrupt} corrupt entries dropped and recomputed")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ sources


def _rel(path: Path | None, root: Path) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def discover_sources(input_dir: Path) -> tuple[list[Source], list[dict], dict]:
    """Sources under ``input_dir``, their base records, and the discovery report."""
    input_dir = location(input_dir)
    found = discover(input_dir)
    sources = [Source.from_item(item) for item in found.items]
    records = [
        {"source": s.rel, "gt": _rel(s.gt_path, input_dir), "notes": list(s.notes)} for s in sources
    ]
    report = {
        "input_dir": str(input_dir),
        "skipped_files": [{"source": s.rel, "reason": s.reason} for s in found.skipped],
        "unmatched_gt": found.unmatched_gt,
    }
    return sources, records, report


def load_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise SystemExit(f"missing {path}: run the stage before this one first")
    return kio.read_json(path)


def sources_from_manifest(manifest: dict) -> tuple[list[Source], list[dict]]:
    """The sources a manifest lists (with known hashes) and copies of their records."""
    root = Path(manifest["input_dir"])
    sources, records = [], []
    for item in manifest["items"]:
        gt = item.get("gt")
        sources.append(
            Source(
                rel=item["source"],
                path=root / item["source"],
                gt_path=(root / gt) if gt else None,
                notes=list(item.get("notes", [])),
                known_hash=item.get("content_hash"),
            )
        )
        records.append({k: item[k] for k in _RECORD_KEYS if k in item})
    link_partners(sources, records)
    return sources, records


def link_partners(sources: list[Source], records: list[dict]) -> None:
    """Give each source the partners its record names (``plate_partners``: sources' rels)."""
    by_rel = {s.rel: s for s in sources}
    for src, record in zip(sources, records, strict=True):
        rels = record.get("plate_partners") or []
        src.partners = tuple(by_rel[r].light() for r in rels if r in by_rel)


class CacheView:
    """``on_result`` of a detect pass: cache the image's plate view where its detect step ran
    (in a worker, with the image still decoded), so pairing in this process decodes nothing."""

    def __init__(self, runner: Runner | None = None):
        self.local = runner

    def __getstate__(self) -> dict:
        return {}  # a worker uses its own runner

    def __setstate__(self, state: dict) -> None:
        self.local = None

    def __call__(self, src: Source, value: Any, record: dict) -> None:
        runner = self.local or _WORKER["runner"]
        runner.plate_view(src)


# the steps a first pass over every image (detect, for background plates) counts
FIRST_PASS = ("preprocess", "detect")


@contextlib.contextmanager
def counted_before(runner: Runner, steps: Iterable[str]):
    """Steps an earlier pass of this run already counted for every image: what the block adds
    to their counts (all reuse of that pass's results) is not counted again."""
    earlier = {s: Counter(runner.counts[s]) for s in steps}
    try:
        yield
    finally:
        runner.counts.update(earlier)


def assign_partners(runner: Runner, sources: list[Source], records: list[dict]) -> None:
    """Background-plate partners (:mod:`kiridashi.segmenters.plates`) for every image not
    skipped, from each one's cached detections: recorded in ``plate_partners`` and set on the
    sources. Needs the detect step done; nothing when the segment config has no plates.
    Images are paired within runs of ``plates.chunk`` (memory stays bounded in any folder)."""
    if runner.plates is None:
        return
    from kiridashi.segmenters.plates import pick_partners

    chunk = max(2, int(runner.plates["chunk"]))
    for start in range(0, len(sources), chunk):
        part = range(start, min(len(sources), start + chunk))
        views = []
        for k in part:
            view = None
            if records[k].get("status") != "skipped":
                try:
                    view = runner.plate_view(sources[k])
                except (Skipped, kio.BadInput) as exc:
                    log.info("no background plate for %s: %s", sources[k].rel, exc)
                finally:
                    sources[k].release()
            views.append(view)
        for k, picked in zip(part, pick_partners(views, runner.plates), strict=True):
            records[k]["plate_partners"] = [sources[start + j].rel for j in picked]
    link_partners(sources, records)


# ------------------------------------------------------------------------------ stages


_FATAL_ERRNOS = {errno.EACCES, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EPERM}
# errors that concern every image alike (an unwritable output folder, a missing model file, an
# invalid setting): the run stops once with the reason instead of skipping image after image
FATAL = (OutputWriteError, ModelError, ConfigError)


def fatal_message(exc: BaseException) -> str:
    """One line for the user."""
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)).splitlines()[0]


@contextlib.contextmanager
def exit_on_fatal():
    """For DVC stage entry points: a fatal error ends the process with ``error: <reason>``."""
    try:
        yield
    except FATAL as exc:
        raise SystemExit(f"error: {fatal_message(exc)}") from None


def stage_params() -> dict:
    """``params.yaml`` for a DVC stage, checked whole at start-up (:mod:`kiridashi.schema`): a bad
    setting ends the stage with one ``error:`` line before any image is read."""
    from kiridashi.schema import load_valid_params

    with exit_on_fatal():
        return load_valid_params()


def attempt(
    runner: Runner,
    step: str,
    src: Source,
    record: dict,
    on_result: Callable[[Source, Any, dict], None] | None = None,
) -> dict:
    """Run one step on one image and fill its record; never raises for a bad image.

    A bad or failing image gets ``status: skipped`` and a one-line ``reason``.
    """
    runner.begin_image()
    ok = False
    try:
        value = getattr(runner, step)(src)
        record["content_hash"] = src.hash
        record["status"] = "ok"
        if on_result is not None:
            on_result(src, value, record)
        ok = True
        return record
    except FATAL:
        raise
    except (Skipped, kio.BadInput) as exc:
        reason, level = str(exc), logging.WARNING
    except MemoryError:
        reason, level = f"{step} failed: out of memory", logging.ERROR
    except Exception as exc:  # noqa: BLE001 - one broken image must not stop a batch
        reason = f"{step} failed: {type(exc).__name__}: {exc}".splitlines()[0]
        level = logging.ERROR
        log.debug("traceback for %s", src.rel, exc_info=True)
    finally:
        runner.end_image(step, ok)
        src.release()
    record.update(status="skipped", reason=reason)
    log.log(level, "skipped %s: %s", src.rel, reason)
    return record


# Worker-process state for jobs > 1: one Runner (and so one set of loaded models) per worker.
_WORKER: dict[str, Any] = {}


def _worker_init(cfg: dict, step: str, on_result, jobs: int, parent_pid: int | None) -> None:
    from kiridashi.detectors.base import set_missing_model_level
    from kiridashi.lifeline import die_with_parent
    from kiridashi.logs import setup_logging

    if parent_pid is not None:  # a local pool: a killed run leaves no worker behind
        die_with_parent(parent_pid)
    setup_logging()
    set_missing_model_level(logging.DEBUG)  # the parent's make_runner has reported them
    _WORKER.update(runner=make_runner(cfg, jobs), step=step, on_result=on_result)


def _worker_run(src: Source, record: dict) -> tuple[dict, Counter]:
    """One image in a worker: its record and the counts it added (:meth:`Runner.tally`)."""
    runner: Runner = _WORKER["runner"]
    before = runner.tally()
    record = attempt(runner, _WORKER["step"], src, record, _WORKER["on_result"])
    return record, runner.tally() - before


def steps_upto(step: str) -> tuple[str, ...]:
    """The steps an image goes through up to and including ``step``."""
    return STEPS[: STEPS.index(step) + 1]


def count_skipped(runner: Runner, step: str, n: int = 1) -> None:
    """Count ``n`` inputs skipped before ``step`` ran (unreadable, or skipped by an earlier
    stage) as skipped in ``step`` and every step before it that this runner reports."""
    for s in steps_upto(step):
        runner.counts[s]["skipped"] += n


def run_step(
    runner: Runner,
    step: str,
    sources: list[Source],
    records: list[dict],
    on_result: Callable[[Source, Any, dict], None] | None = None,
    jobs: int = 1,
    on_done: Callable[[dict], None] | None = None,
) -> None:
    """Run ``step`` on every source whose record is not already skipped; update the records.

    jobs > 1 or ``executor=ray`` runs images in workers (:mod:`kiridashi.executors`: models load
    once per worker); ``on_result`` then runs in the worker and must be picklable.
    ``on_done(record)`` runs in this process after each image, in completion order.
    """
    todo = []
    for i, record in enumerate(records):
        if record.get("status") == "skipped":
            count_skipped(runner, step)
        else:
            todo.append(i)
    bar = progress(None, len(todo), step)
    if not todo or (is_local(runner.cfg.get("executor")) and (jobs <= 1 or len(todo) <= 1)):
        for i in todo:
            attempt(runner, step, sources[i], records[i], on_result)
            bar.update(1)
            if on_done:
                on_done(records[i])
        bar.close()
        return
    executor = make_executor(runner.cfg.get("executor"), jobs)
    parent = os.getpid() if is_local(runner.cfg.get("executor")) else None
    initargs = (runner.cfg, step, on_result, jobs, parent)
    items = [(sources[i], records[i]) for i in todo]
    with contextlib.closing(executor.map(_worker_init, initargs, _worker_run, items)) as done:
        for k, result, exc in done:
            i = todo[k]
            if isinstance(exc, FATAL):
                raise exc
            if exc is not None:  # a crashed or lost worker loses one image only
                record = records[i]
                record.update(status="skipped", reason=f"{step} worker failed: {exc}")
                delta = Counter({("step", s, "skipped"): 1 for s in steps_upto(step)})
                log.error("skipped %s: %s", sources[i].rel, record["reason"])
            else:
                record, delta = result
            runner.add_tally(delta)
            records[i].clear()
            records[i].update(record)
            bar.update(1)
            if on_done:
                on_done(records[i])
    bar.close()


def _stage_cfg(step: str, params: dict, upstream: dict | None) -> dict:
    cfg = dict(upstream["params"]) if upstream else {}
    cfg[step] = params[step]
    for key in ("models_dir", "cache", "jobs", "executor"):
        if key in params:
            cfg[key] = params[key]
    return cfg


def run_manifest_stage(
    step: str,
    params: dict,
    out_dir: Path,
    input_dir: Path | None = None,
    upstream_dir: Path | None = None,
    describe: Callable[[Source, Any, dict], None] | None = None,
) -> Runner:
    """One DVC stage that writes ``out_dir/manifest.json`` (preprocess, detect, segment)."""
    upstream = load_manifest(upstream_dir) if upstream_dir else None
    if upstream is None:
        sources, records, report = discover_sources(Path(input_dir))
    else:
        sources, records = sources_from_manifest(upstream)
        report = {k: v for k, v in upstream.items() if k not in ("items", "params")}
    cfg = _stage_cfg(step, params, upstream)
    with exit_on_fatal():
        runner = make_runner(cfg)
        count_skipped(runner, step, len(report.get("skipped_files", [])))
        if step == "segment":  # the detect stage has run: plates can be paired now
            assign_partners(runner, sources, records)
        run_step(runner, step, sources, records, describe, jobs=int(cfg.get("jobs", 1)))
    manifest = {
        "schema_version": SCHEMA_VERSION,
        **report,
        "params": {k: cfg[k] for k in STEPS if k in cfg},
        "items": records,
    }
    kio.atomic_write_json(Path(out_dir) / MANIFEST, manifest)
    print(report_counts(runner, [step]))
    return runner


# ------------------------------------------------------------------------------ outputs


def _write_output(out_dir: Location, rel: str, data: bytes) -> None:
    try:
        write_bytes(out_dir, rel, data)
    except OSError as exc:
        if exc.errno in _FATAL_ERRNOS:
            raise OutputWriteError(
                exc.errno,
                f"cannot write {out_dir / rel}: {exc.strerror}; stopping, "
                "everything written before is kept",
            ) from None
        raise


def write_image_outputs(out_dir: Path, src: Source, merged: dict, record: dict) -> None:
    """Write one image's union mask and crops (atomically) and fill its result record.

    Layout: ``masks/REL_STEM.png`` (full-frame 0/255) and ``crops/REL_STEM_c{k}.png`` (RGBA).
    Crops of an earlier run of this image beyond the current count are removed.
    """
    out_dir = location(out_dir)
    stem = output_stem(src.rel)
    image_record(stem, merged, record)
    write = functools.partial(_write_output, out_dir)
    write(record["mask"], merged["mask_png"])
    for ch, out in zip(merged["characters"], record["characters"], strict=True):
        write(out["crop"], ch["crop_png"])
    crop_dir = (Path(out_dir) / "crops" / stem).parent
    name = Path(stem).name
    if isinstance(out_dir, Path) and crop_dir.is_dir():
        for old in crop_dir.glob(f"{name}_c*.png"):
            suffix = old.stem[len(name) + 2 :]
            if suffix.isdigit() and int(suffix) >= len(record["characters"]):
                old.unlink(missing_ok=True)


def image_record(stem: str, merged: dict, record: dict) -> dict:
    """Fill one image's result record (``extraction_results.json``) from its merge result, its
    outputs named ``masks/STEM.png`` and ``crops/STEM_c{k}.png``; returns the record."""
    record.update(
        size=merged["size"],
        notes=list(dict.fromkeys(record.get("notes", []) + merged.get("notes", []))),
        mask=f"masks/{stem}.png",
        characters=[
            {
                **{k: v for k, v in ch.items() if k != "crop_png"},
                "crop": f"crops/{stem}_c{ch['index']}.png",
            }
            for ch in merged["characters"]
        ],
        rejected=list(merged.get("rejected", [])),
    )
    return record


def remove_stale_temp_files(out_dir: Path) -> int:
    """Delete temp files an interrupted run left behind (``.NAME.*.tmp`` of atomic writes)."""
    removed = 0
    if Path(out_dir).is_dir():
        for tmp in Path(out_dir).rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            removed += 1
    if removed:
        log.info("removed %d temp files of an interrupted run in %s", removed, out_dir)
    return removed


def results_document(
    records: list[dict], report: dict, cfg: dict, runner: Runner, seconds: float
) -> dict:
    """The ``extraction_results.json`` document."""
    ok = [r for r in records if r.get("status") == "ok"]
    skipped = [
        {"source": r["source"], "reason": r.get("reason", "")}
        for r in records
        if r.get("status") == "skipped"
    ] + list(report.get("skipped_files", []))
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": f"kiridashi {__version__}",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "input_dir": report.get("input_dir"),
        "params": {k: cfg[k] for k in STEPS if k in cfg},
        "params_digest": params_digest({k: cfg[k] for k in STEPS if k in cfg}),
        "summary": {
            "images": len(records) + len(report.get("skipped_files", [])),  # every input
            "processed": len(ok),  # = computed + reused
            "computed": runner.counts["merge"]["computed"],
            "reused": runner.counts["merge"]["reused"],
            "skipped": len(skipped),
            "characters": sum(len(r.get("characters", [])) for r in ok),
            "seconds": round(seconds, 2),
            "counts": {s: dict(runner.counts[s]) for s in STEPS},
        },
        "skipped": skipped,
        "unmatched_gt": report.get("unmatched_gt", []),
        "images": records,
    }


def write_results(
    out_dir: Path,
    sources: list[Source],
    records: list[dict],
    report: dict,
    runner: Runner,
    checkpoint_every: int = 25,
    jobs: int = 1,
    settled: tuple[str, ...] = (),
) -> dict:
    """Merge every image, write its outputs as it finishes, then ``extraction_results.json``.

    The results file is also rewritten every ``checkpoint_every`` images, so a killed run leaves
    a valid (partial) one. ``settled``: steps an earlier pass of this run already counted (their
    results are all reused here, which is not counted again).
    """
    out_dir = location(out_dir)
    if isinstance(out_dir, Path):
        remove_stale_temp_files(out_dir)
    count_skipped(runner, "merge", len(report.get("skipped_files", [])))
    t0 = time.perf_counter()
    done = 0

    def on_done(record: dict) -> None:
        nonlocal done
        done += 1
        if checkpoint_every and done % checkpoint_every == 0:
            partial = results_document(records, report, runner.cfg, runner, 0.0)
            partial["summary"]["partial"] = True
            _write_output(out_dir, RESULTS, _json_bytes(partial))

    writer = functools.partial(write_image_outputs, out_dir)
    with counted_before(runner, settled):
        run_step(runner, "merge", sources, records, writer, jobs=jobs, on_done=on_done)
    doc = results_document(records, report, runner.cfg, runner, time.perf_counter() - t0)
    _write_output(out_dir, RESULTS, _json_bytes(doc))
    return doc


def _json_bytes(doc: dict) -> bytes:
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def summary_lines(doc: dict, out_dir: Path) -> list[str]:
    s = doc["summary"]
    reuse = f" ({s['computed']} computed, {s['reused']} reused)" if "reused" in s else ""
    lines = [
        f"{s['processed']} of {s['images']} images processed{reuse}, {s['skipped']} skipped; "
        f"{s['characters']} characters, {s['seconds']:.1f} s "
        f"({s['seconds'] / max(1, s['images']):.2f} s/image)"
    ]
    lines += [f"  skipped {k['source']}: {k['reason']}" for k in doc["skipped"]]
    lines += [f"  GT without image: {g}" for g in doc["unmatched_gt"]]
    lines.append(f"results: {join(location(out_dir), RESULTS)}")
    return lines


def stage_merge(params: dict, upstream_dir: Path, out_dir: Path) -> dict:
    upstream = load_manifest(upstream_dir)
    sources, records = sources_from_manifest(upstream)
    report = {k: v for k, v in upstream.items() if k not in ("items", "params")}
    cfg = _stage_cfg("merge", params, upstream)
    with exit_on_fatal():
        runner = make_runner(cfg)
        doc = write_results(
            Path(out_dir), sources, records, report, runner, jobs=int(cfg.get("jobs", 1))
        )
    print(report_counts(runner, ["merge"]))
    print("\n".join(summary_lines(doc, out_dir)))
    return doc


def extract(input_dir: Location, out_dir: Location, cfg: dict) -> dict:
    """Every step on every image under ``input_dir``; the output contract in ``out_dir`` (either
    may be an fsspec URL, :mod:`kiridashi.locations`)."""
    sources, records, report = discover_sources(location(input_dir))
    runner = make_runner(cfg)
    jobs = int(cfg.get("jobs", 1))
    settled: tuple[str, ...] = ()
    if runner.plates is not None and len(sources) > 1:
        # background plates pair images by their detections: detect every image first
        # (cached), then cut each with its partners; the detect pass's counts are the run's
        run_step(runner, "detect", sources, records, CacheView(runner), jobs=jobs)
        assign_partners(runner, sources, records)
        settled = FIRST_PASS
    doc = write_results(location(out_dir), sources, records, report, runner, jobs=jobs,
                        settled=settled)  # fmt: skip
    print(report_counts(runner))
    print("\n".join(summary_lines(doc, out_dir)))
    return doc
