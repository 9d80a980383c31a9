"""The routes: thin handlers over the worker pool and the job store.

``GET /`` the page, ``GET /healthz``, ``POST /v1/extract``, ``GET /v1/results/{id}/...`` (the
cut-outs of an upload), ``POST|GET /v1/jobs``, ``GET|DELETE /v1/jobs/{id}``,
``GET /v1/jobs/{id}/results``, ``GET /metrics``. FastAPI's ``/docs`` (Swagger UI from a CDN) is
off: the page loads nothing from the internet.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.staticfiles import StaticFiles

from kiridashi.errors import one_line
from kiridashi.serve.guard import BodyTooLarge, Guard
from kiridashi.serve.jobs import JobError, Jobs
from kiridashi.serve.metrics import Metrics
from kiridashi.serve.pool import WorkerDied, WorkerPool, WorkerStartError
from kiridashi.serve.settings import ServeSettings

STATIC = Path(__file__).parent / "static"
_RID = re.compile(r"^[0-9a-f]{16}$")
_FILE = re.compile(r"^[A-Za-z0-9._-]+\.png$")


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _overrides(text: str | None) -> list[str]:
    """The ``overrides`` form field: a JSON list of Hydra overrides (ValueError otherwise)."""
    if not text:
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError("overrides: expected a JSON list of strings") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("overrides: expected a JSON list of strings")
    return value


def _check_overrides(base: list[str], overrides: list[str]) -> None:
    """Refuse a bad override before a worker sees it (ConfigError, one line)."""
    if overrides:
        from kiridashi.schema import compose_valid

        compose_valid(base + overrides)


def with_urls(record: dict, rid: str | None) -> dict:
    """The record with ``mask_url`` and each character's ``crop_url``."""
    out = dict(record)
    if rid and record.get("status") == "ok":
        out["mask_url"] = f"/v1/results/{rid}/{record['mask']}"
        out["zip_url"] = f"/v1/results/{rid}/crops.zip"
        out["characters"] = [
            {**ch, "crop_url": f"/v1/results/{rid}/{ch['crop']}"} for ch in record["characters"]
        ]
    return out


def crops_zip(folder: Path) -> bytes:
    """The RGBA crops of one result folder as a zip."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for png in sorted((folder / "crops").glob("*.png")):
            zf.write(png, png.name)
    return buf.getvalue()


def _zip_response(folder: Path) -> Response:
    return Response(
        crops_zip(folder),
        media_type="application/zip",
        headers={"content-disposition": 'attachment; filename="crops.zip"'},
    )


def create_app(settings: ServeSettings, base_overrides: list[str]):
    """The ASGI app: the FastAPI routes behind :class:`~kiridashi.serve.guard.Guard`."""
    pool = WorkerPool(settings.jobs, base_overrides, settings.jobs, str(settings.results_dir))
    jobs_box: dict[str, Jobs] = {}
    metrics = Metrics(
        queue_length=lambda: pool.waiting + (jobs_box["jobs"].pending if jobs_box else 0),
        workers_ready=lambda: pool.ready,
    )
    jobs = Jobs(settings, pool, base_overrides, metrics)
    jobs_box["jobs"] = jobs

    @asynccontextmanager
    async def lifespan(_app):
        settings.results_dir.mkdir(parents=True, exist_ok=True)
        pool.start()
        jobs.start()
        yield
        pool.close()

    app = FastAPI(
        title="kiridashi",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/v1/openapi.json",
    )
    app.state.pool, app.state.jobs, app.state.metrics = pool, jobs, metrics
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_request, exc):
        return JSONResponse({"detail": str(exc)}, status_code=413, headers={"connection": "close"})

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/healthz")
    async def healthz():
        body = {
            "ready": pool.ready,
            "workers": pool.size,
            "pids": pool.pids(),
            "busy": pool.busy(),
            "error": pool.failure,
        }
        return JSONResponse(body, status_code=200 if pool.ready >= pool.size else 503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus():
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.post("/v1/extract")
    async def extract(request: Request, format: str = "json"):  # noqa: A002 - the query name
        from kiridashi.config import ConfigError
        from kiridashi.extractor import safe_name

        if format not in ("json", "zip"):
            return _error(422, "format: json or zip")
        form = await request.form(max_files=1, max_fields=8)
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            return _error(422, "expected a multipart file field named 'image'")
        try:
            overrides = _overrides(form.get("overrides"))  # type: ignore[arg-type]
            await run_in_threadpool(_check_overrides, base_overrides, overrides)
        except (ValueError, ConfigError) as exc:
            return _error(422, one_line(exc))
        data = await upload.read()
        task = {"data": data, "name": safe_name(upload.filename), "overrides": overrides}
        try:
            reply = await run_in_threadpool(pool.call, task, settings.request_timeout_s)
        except WorkerDied as exc:
            metrics.worker_deaths.inc()
            return _error(503, str(exc))
        except WorkerStartError as exc:
            return _error(503, f"no worker: {exc}")
        if reply[0] == "error":
            return _error(422 if reply[1] == "config" else 500, reply[2])
        _, record, rid, _ = reply
        metrics.image(record)
        if record.get("status") != "ok":
            return _error(422, record.get("reason") or "not processed")
        if format == "zip":
            return _zip_response(settings.results_dir / rid)
        return with_urls(record, rid)

    def _result_folder(rid: str) -> Path | None:
        folder = settings.results_dir / rid
        return folder if _RID.match(rid) and folder.is_dir() else None

    @app.get("/v1/results/{rid}/crops.zip")
    async def result_zip(rid: str):
        folder = _result_folder(rid)
        if folder is None:
            return _error(404, "no such result")
        return _zip_response(folder)

    @app.get("/v1/results/{rid}/{kind}/{name}")
    async def result_file(rid: str, kind: str, name: str):
        folder = _result_folder(rid)
        if folder is None or kind not in ("crops", "masks") or not _FILE.match(name):
            return _error(404, "no such file")
        path = folder / kind / name
        if not path.is_file():
            return _error(404, "no such file")
        return FileResponse(path, media_type="image/png")

    @app.get("/v1/results/{rid}")
    async def result_record(rid: str):
        folder = _result_folder(rid)
        if folder is None:
            return _error(404, "no such result")
        return with_urls(json.loads((folder / "record.json").read_text("utf-8")), rid)

    # -- jobs ----------------------------------------------------------------------------------
    @app.post("/v1/jobs", status_code=202)
    async def create_job(request: Request):
        from kiridashi.config import ConfigError

        ctype = request.headers.get("content-type", "")
        try:
            if ctype.startswith("multipart/"):
                form = await request.form(max_files=1, max_fields=8)
                upload = form.get("archive") or form.get("zip")
                if not isinstance(upload, UploadFile):
                    return _error(422, "expected a multipart file field named 'archive' (a zip)")
                overrides = _overrides(form.get("overrides"))  # type: ignore[arg-type]
                folder, archive = None, await upload.read()
            else:
                try:
                    body = await request.json()
                except (json.JSONDecodeError, UnicodeDecodeError):
                    return _error(422, 'expected JSON {"input": FOLDER} or a zip upload')
                if not isinstance(body, dict) or not isinstance(body.get("input"), str):
                    return _error(422, 'expected JSON {"input": FOLDER} or a zip upload')
                overrides = body.get("overrides") or []
                if not isinstance(overrides, list) or not all(
                    isinstance(v, str) for v in overrides
                ):
                    return _error(422, "overrides: expected a list of strings")
                folder, archive = body["input"], None
            await run_in_threadpool(_check_overrides, base_overrides, overrides)
            job = await run_in_threadpool(jobs.create, overrides, folder, archive)
        except JobError as exc:
            return _error(exc.status, str(exc))
        except (ValueError, ConfigError) as exc:
            return _error(422, one_line(exc))
        return JSONResponse(_public(job), status_code=202)

    @app.get("/v1/jobs")
    async def list_jobs():
        return {"jobs": [_public(j) for j in await run_in_threadpool(jobs.list)]}

    @app.get("/v1/jobs/{job_id}")
    async def job_status(job_id: str):
        job = jobs.get(job_id)
        return _public(job) if job else _error(404, "no such job")

    @app.delete("/v1/jobs/{job_id}")
    async def cancel_job(job_id: str):
        job = jobs.cancel(job_id)
        return _public(job) if job else _error(404, "no such job")

    @app.get("/v1/jobs/{job_id}/results")
    async def job_results(job_id: str):
        found = await run_in_threadpool(jobs.results, job_id)
        if found is None:
            return _error(404, "no such job")
        if found["status"] != "done":
            return _error(409, f"job is {found['status']}, not done")
        return found

    return Guard(app, settings.token, settings.max_body_bytes, metrics)


def _public(job: dict) -> dict:
    """A job as the API shows it (no server paths)."""
    hidden = ("input_dir", "output_dir")
    return {k: v for k, v in job.items() if k not in hidden}
