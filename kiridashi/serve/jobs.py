"""Batch jobs: a folder under ``serve.roots`` or an uploaded zip, through the worker pool.

Each job lives in ``<serve.dir>/jobs/<id>/``: ``job.json`` (its state and progress, rewritten
atomically after every image), ``input/`` (an uploaded zip, unpacked) and ``output/`` (the
output contract of ``kiridashi extract``: masks, crops, ``extraction_results.json`` and the
quality report). Jobs run one after another, each image on a free worker. A job that was
queued or running when the server stopped runs again at the next start: every image already
done is a cache hit, so it resumes where it was.
"""

from __future__ import annotations

import datetime as _dt
import io
import logging
import queue
import secrets
import shutil
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path, PurePosixPath
from typing import Any

from kiridashi import io as kio
from kiridashi.errors import one_line
from kiridashi.serve.metrics import Metrics
from kiridashi.serve.pool import WorkerDied, WorkerPool, WorkerStartError
from kiridashi.serve.settings import ServeSettings

log = logging.getLogger(__name__)
JOB = "job.json"
UNFINISHED = ("queued", "running")


class JobError(Exception):
    """A job that cannot be created; ``status`` is the HTTP status (403, 404, 422)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def within(path: Path, roots: tuple[Path, ...]) -> bool:
    """``path`` (resolved: symlinks followed, ``..`` removed) is inside one of ``roots``."""
    real = Path(path).resolve()
    return any(real == r or real.is_relative_to(r) for r in roots)


def resolve_input(text: str, roots: tuple[Path, ...]) -> Path:
    """The folder a job asks for: absolute, or relative to a root. JobError 403 when it is
    outside every root (``..`` and symlinks included), 404 when it is no folder."""
    if not roots:
        raise JobError(403, "no folder jobs: serve.roots is empty")
    path = Path(text).expanduser()
    candidates = [path] if path.is_absolute() else [r / path for r in roots]
    inside = [c.resolve() for c in candidates if within(c, roots)]
    if not inside:
        raise JobError(403, f"{text}: outside the folders jobs may read (serve.roots)")
    for folder in inside:
        if folder.is_dir():
            return folder
    raise JobError(404, f"{text}: no such folder under serve.roots")


def unpack_zip(data: bytes, dest: Path, max_bytes: int) -> int:
    """Unpack an uploaded zip into ``dest``; the number of files. JobError 422 for a non-zip, a
    member path leaving ``dest``, or more than ``max_bytes`` unpacked (a zip bomb)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError) as exc:
        raise JobError(422, f"not a zip archive: {exc}") from None
    infos = [i for i in archive.infolist() if not i.is_dir()]
    for info in infos:
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts
        if not parts or info.filename.startswith("/") or ".." in parts or ":" in parts[0]:
            raise JobError(422, f"unsafe path in the archive: {info.filename}")
    if sum(i.file_size for i in infos) > max_bytes:
        raise JobError(422, f"the archive unpacks to more than {max_bytes / 2**20:.0f} MB")
    written = 0
    for info in infos:
        target = dest / PurePosixPath(info.filename.replace("\\", "/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as src, open(target, "wb") as out:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > max_bytes:  # a header that lied about the size
                    raise JobError(
                        422, f"the archive unpacks to more than {max_bytes / 2**20:.0f} MB"
                    )
                out.write(chunk)
    return len(infos)


class Jobs:
    """The job store on disk and the thread that runs the jobs."""

    def __init__(
        self, settings: ServeSettings, pool: WorkerPool, base_overrides: list[str], metrics: Metrics
    ):
        self.settings, self.pool, self.metrics = settings, pool, metrics
        self.base = list(base_overrides)
        self.dir = settings.jobs_dir
        self._queue: queue.Queue[str] = queue.Queue()
        self._lock = threading.Lock()
        self._cancelled: set[str] = set()
        self._pending = 0  # job images not yet handed to a worker

    @property
    def pending(self) -> int:
        return self._pending

    # -- store ---------------------------------------------------------------------------------
    def _path(self, job_id: str) -> Path:
        if not job_id.isalnum():
            raise KeyError(job_id)
        return self.dir / job_id / JOB

    def get(self, job_id: str) -> dict | None:
        try:
            return kio.read_json(self._path(job_id))
        except (KeyError, FileNotFoundError, kio.BadInput, ValueError):
            return None

    def _save(self, job: dict) -> None:
        job["updated"] = _now()
        with self._lock:
            kio.atomic_write_json(self._path(job["id"]), job)

    def list(self) -> list[dict]:
        jobs = [j for p in sorted(self.dir.glob(f"*/{JOB}")) if (j := self.get(p.parent.name))]
        return sorted(jobs, key=lambda j: j.get("created", ""))

    def start(self) -> None:
        """Queue the jobs a previous server left unfinished, then run jobs in the background."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for job in self.list():
            if job.get("status") in UNFINISHED:
                job["status"] = "queued"
                job.setdefault("resumed", 0)
                job["resumed"] += 1
                self._save(job)
                self._queue.put(job["id"])
                log.info("job %s resumes", job["id"])
        threading.Thread(target=self._loop, daemon=True, name="kiridashi-jobs").start()

    def create(
        self, overrides: list[str], folder: str | None = None, archive: bytes | None = None
    ) -> dict:
        """A new queued job on ``folder`` (under serve.roots) or the zip ``archive``."""
        job_id = secrets.token_hex(8)
        home = self.dir / job_id
        if folder is not None:
            input_dir = resolve_input(folder, self.settings.roots)
            label = folder
        else:
            input_dir = home / "input"
            input_dir.mkdir(parents=True)
            try:
                unpack_zip(archive or b"", input_dir, self.settings.max_unzip_bytes)
            except JobError:
                shutil.rmtree(home, ignore_errors=True)
                raise
            label = "uploaded zip"
        job = {
            "id": job_id,
            "status": "queued",
            "input": label,
            "input_dir": str(input_dir),
            "zip": folder is None,
            "overrides": list(overrides),
            "created": _now(),
            "total": None,
            "done": 0,
            "processed": 0,
            "cached": 0,
            "skipped": [],
            "error": None,
            "output_dir": str(home / "output"),
        }
        self._save(job)
        self._queue.put(job_id)
        return job

    def cancel(self, job_id: str) -> dict | None:
        job = self.get(job_id)
        if job is None:
            return None
        if job["status"] in UNFINISHED:
            self._cancelled.add(job_id)
            job["status"] = "cancelled"
            self._save(job)
        return job

    # -- running -------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            job_id = self._queue.get()
            job = self.get(job_id)
            if job is None or job["status"] != "queued":
                continue
            try:
                self._run(job)
            except Exception as exc:  # noqa: BLE001 - one broken job must not stop the others
                log.exception("job %s failed", job_id)
                job.update(status="failed", error=one_line(exc))
                self._save(job)

    def _run(self, job: dict) -> None:
        from kiridashi.config import ConfigError
        from kiridashi.evaluate import run_evaluation
        from kiridashi.pipeline import (
            FIRST_PASS,
            RESULTS,
            assign_partners,
            count_skipped,
            counted_before,
            discover_sources,
            make_runner,
            remove_stale_temp_files,
            results_document,
        )
        from kiridashi.schema import compose_valid

        job_id = job["id"]
        t0 = time.perf_counter()
        cfg = compose_valid(self.base + job["overrides"])
        input_dir, out_dir = Path(job["input_dir"]), Path(job["output_dir"])
        sources, records, report = discover_sources(input_dir)
        runner = make_runner(cfg)  # counts only: the images run in the workers
        count_skipped(runner, "merge", len(report["skipped_files"]))
        remove_stale_temp_files(out_dir)
        todo = []
        for src, record in zip(sources, records, strict=True):
            if not job["zip"] and not within(src.path, self.settings.roots):
                record.update(status="skipped", reason="a link to a file outside serve.roots")
                count_skipped(runner, "merge")
            else:
                todo.append((src, record))
        skipped = [*report["skipped_files"]] + [
            {"source": r["source"], "reason": r["reason"]}
            for r in records
            if r.get("status") == "skipped"
        ]
        job.update(
            status="running", total=len(records) + len(report["skipped_files"]), done=len(skipped)
        )
        job.update(processed=0, cached=0, skipped=skipped, error=None)
        self._save(job)
        with self._lock:
            self._pending += len(todo)

        def call(task: dict) -> tuple:
            if job_id in self._cancelled:
                return ("cancelled",)
            try:
                return self.pool.call(task, self.settings.request_timeout_s)
            except (WorkerDied, WorkerStartError) as exc:
                return ("error", "internal", f"worker failed: {exc}")

        settled: tuple[str, ...] = ()
        if runner.plates is not None and len(todo) > 1:
            # background plates pair images by their detections (as `kiridashi extract`):
            # every image's detect step first, then each image is cut with its partners
            base = {"overrides": job["overrides"], "step": "detect"}
            job["detected"] = 0  # this pass's progress (the page shows it)
            replies: list[tuple] = [("cancelled",)] * len(todo)
            with ThreadPoolExecutor(max_workers=self.pool.size) as ex:
                firsts = {ex.submit(call, {**base, "path": str(s.path), "name": s.rel}): k
                          for k, (s, _) in enumerate(todo)}  # fmt: skip
                for fut in as_completed(firsts):
                    replies[firsts[fut]] = fut.result()
                    job["detected"] += 1
                    if job_id not in self._cancelled:
                        self._save(job)
            for reply in replies:
                if reply[0] == "error" and reply[1] == "config":
                    raise ConfigError(reply[2])
                if reply[0] == "ok":
                    runner.add_tally(reply[3])
                elif reply[0] == "error":  # a lost worker: counted where the pass stopped
                    count_skipped(runner, "detect")
            ok = [(s, r) for (s, r), reply in zip(todo, replies, strict=True)
                  if reply[0] == "ok" and reply[1]["status"] == "ok"]  # fmt: skip
            if job_id not in self._cancelled:  # (cancelled: the second pass stops at once)
                assign_partners(runner, [s for s, _ in ok], [r for _, r in ok])
            settled = FIRST_PASS  # the second pass's preprocess / detect are this pass's

        def one(src, record) -> tuple:
            with self._lock:
                self._pending -= 1
            return call({
                "path": str(src.path),
                "name": src.rel,
                "overrides": job["overrides"],
                "out_dir": str(out_dir),
                "record": dict(record),
                "quality": False,
                "partners": [str(p.path) for p in src.partners],
            })  # fmt: skip

        with counted_before(runner, settled), ThreadPoolExecutor(self.pool.size) as ex:
            futures = {ex.submit(one, s, r): r for s, r in todo}
            for fut in as_completed(futures):
                record = futures[fut]
                reply = fut.result()
                if reply[0] == "cancelled":
                    continue
                if reply[0] == "error" and reply[1] == "config":
                    self._cancelled.add(job_id)
                    raise ConfigError(reply[2])
                if reply[0] == "error":
                    record.update(status="skipped", reason=reply[2])
                    count_skipped(runner, "merge")
                else:
                    _, result, _, delta = reply
                    self.metrics.image(result)
                    job["cached"] += bool(result.pop("cached", False))
                    result.pop("flags", None)
                    record.clear()
                    record.update(result)
                    runner.add_tally(delta)
                job["done"] += 1
                if record.get("status") == "ok":
                    job["processed"] += 1
                else:
                    job["skipped"].append({"source": record["source"], "reason": record["reason"]})
                if job_id not in self._cancelled:
                    self._save(job)
        if job_id in self._cancelled:
            self._cancelled.discard(job_id)
            log.info("job %s cancelled at %d of %d", job_id, job["done"], job["total"])
            return
        doc = results_document(records, report, cfg, runner, time.perf_counter() - t0)
        kio.atomic_write_json(out_dir / RESULTS, doc)
        run_evaluation(out_dir / RESULTS, cfg=cfg.get("evaluate"), cache=runner.cache)
        job.update(status="done", seconds=round(time.perf_counter() - t0, 2))
        self._save(job)
        log.info("job %s done: %d images", job_id, job["total"])

    def results(self, job_id: str) -> dict[str, Any] | None:
        """The finished job's ``extraction_results.json`` and quality report."""
        from kiridashi.evaluate import REPORT
        from kiridashi.pipeline import RESULTS

        job = self.get(job_id)
        if job is None:
            return None
        out = Path(job["output_dir"])
        if job["status"] != "done":
            return {"status": job["status"]}
        return {
            "status": "done",
            "results": kio.read_json(out / RESULTS),
            "report": kio.read_json(out / REPORT),
        }
