"""A worker process of the pool: loads the models once, then answers one image at a time.

It talks to the server over a pipe: after start-up it sends ``("ready", pid)`` (or
``("failed", reason)``), then for each task (a dict, see :func:`handle`) one reply:
``("ok", record, result_id, counts)`` or ``("error", kind, one line)`` with kind ``config``
(a bad override: the request's fault) or ``internal``.
"""

from __future__ import annotations

import logging
import os
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

from kiridashi import io as kio
from kiridashi.cache import params_digest
from kiridashi.errors import one_line
from kiridashi.runner import STEPS

log = logging.getLogger(__name__)
MAX_CONFIGS = 4  # Extractors kept per worker for requests with their own overrides


class _Extractors:
    """The worker's Extractors by request overrides (the server's own config first)."""

    def __init__(self, base_overrides: list[str], jobs: int):
        from kiridashi.extractor import Extractor
        from kiridashi.schema import compose_valid

        self._compose, self._make = compose_valid, Extractor
        self.base, self.jobs = list(base_overrides), jobs
        self.by_overrides: OrderedDict[tuple[str, ...], Any] = OrderedDict()
        self.get(())

    def get(self, overrides: tuple[str, ...]):
        if overrides not in self.by_overrides:
            cfg = self._compose(self.base + list(overrides))
            self.by_overrides[overrides] = self._make(cfg, jobs=self.jobs)
            while len(self.by_overrides) > MAX_CONFIGS:
                self.by_overrides.popitem(last=False)[1].close()
        self.by_overrides.move_to_end(overrides)
        return self.by_overrides[overrides]


def worker_main(conn, base_overrides: list[str], jobs: int, results_dir: str, parent: int) -> None:
    """The worker process: models first, then tasks until the pipe closes."""
    from kiridashi.detectors.base import set_missing_model_level
    from kiridashi.lifeline import die_with_parent
    from kiridashi.logs import setup_logging

    die_with_parent(parent)
    setup_logging()
    set_missing_model_level(logging.DEBUG)  # the server reported missing models at start-up
    try:
        extractors = _Extractors(base_overrides, jobs)
        extractors.get(()).load_models()
    except Exception as exc:  # noqa: BLE001 - reported to the server as one line
        conn.send(("failed", one_line(exc)))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        conn.send(handle(extractors, task, Path(results_dir)))


def handle(extractors: _Extractors, task: dict, results_dir: Path) -> tuple:
    """One task: ``data`` (bytes) or ``path`` (a file to read), ``name``, ``overrides``,
    ``out_dir`` (a job's output folder; else the cut-outs go to ``results_dir/<result id>``),
    ``record`` (the record to fill), ``quality`` (add the flags), ``partners`` (files of the
    image's background-plate partners); with ``step: detect`` only the detect step runs."""
    from kiridashi.config import ConfigError
    from kiridashi.errors import OutputWriteError
    from kiridashi.models import ModelError

    name = task["name"]
    try:
        ex = extractors.get(tuple(task.get("overrides") or ()))
        data = task.get("data")
        if data is None:
            try:
                data = kio.read_bytes(Path(task["path"]))
            except kio.BadInput as exc:
                record = {**(task.get("record") or {}), "status": "skipped", "reason": str(exc)}
                return ("ok", record, None, Counter({("step", s, "skipped"): 1 for s in STEPS}))
        before = ex.counts()
        if task.get("step") == "detect":  # a job's first pass (background plates)
            ok = ex.detect(data, name)
            return ("ok", {"status": "ok" if ok else "skipped"}, None, ex.counts() - before)
        out_dir = task.get("out_dir")
        result = ex.extract(
            data,
            name,
            out_dir=out_dir,
            quality=task.get("quality", True),
            record=task.get("record"),
            partners=task.get("partners"),
        )
        counts = ex.counts() - before
        rid = None
        if result.ok and out_dir is None:
            rid = params_digest([result.key, name])
            folder = results_dir / rid
            if not (folder / "record.json").is_file():
                result.save(folder)
                kio.atomic_write_json(folder / "record.json", result.record)
        return ("ok", result.record, rid, counts)
    except (ConfigError, ModelError, OutputWriteError) as exc:
        return ("error", "config", one_line(exc))
    except Exception as exc:  # noqa: BLE001 - one broken image must not end the worker
        log.error("%s failed: %s", name, exc, exc_info=log.isEnabledFor(logging.DEBUG))
        return ("error", "internal", f"{type(exc).__name__}: {one_line(exc)}")
