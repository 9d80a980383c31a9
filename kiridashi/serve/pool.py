"""A pool of worker processes that keep the models loaded (:mod:`kiridashi.serve.worker`).

Each worker answers one task at a time over its own pipe; a caller blocks in :meth:`WorkerPool.
call` until a worker is free. A worker that dies (or does not answer within the timeout) fails
only the task it held, with :class:`WorkerDied`, and a fresh worker takes its place.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import threading
import time
from typing import Any

log = logging.getLogger(__name__)
START_TIMEOUT_S = 600.0


class WorkerDied(RuntimeError):
    """The worker holding the task died or stopped answering; the task was not done."""


class WorkerStartError(RuntimeError):
    """A worker could not start (its one-line reason)."""


class _Worker:
    def __init__(self, ctx, base_overrides: list[str], jobs: int, results_dir: str):
        from kiridashi.serve.worker import worker_main

        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=worker_main,
            args=(child, base_overrides, jobs, results_dir, os.getpid()),
            daemon=True,
            name="kiridashi-worker",
        )
        self.proc.start()
        child.close()
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float) -> None:
        if not self.conn.poll(timeout):
            self.kill()
            raise WorkerStartError(f"worker {self.pid} not ready after {timeout:.0f} s")
        try:
            msg = self.conn.recv()
        except (EOFError, OSError):
            raise WorkerStartError(f"worker {self.pid} died while loading the models") from None
        if msg[0] != "ready":
            raise WorkerStartError(str(msg[1]))

    def call(self, task: dict, timeout: float) -> Any:
        try:
            self.conn.send(task)
            if not self.conn.poll(timeout):
                self.kill()
                raise WorkerDied(f"the worker did not answer within {timeout:.0f} s")
            return self.conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            self.kill()
            raise WorkerDied(
                f"the worker died while processing the image (exit code {self.proc.exitcode})"
            ) from None

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


class WorkerPool:
    """``size`` workers for the config of ``base_overrides``; :meth:`call` runs one task."""

    def __init__(self, size: int, base_overrides: list[str], jobs: int, results_dir: str):
        self.size = size
        self._args = (list(base_overrides), jobs, results_dir)
        self._ctx = multiprocessing.get_context("spawn")
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._ready = 0
        self._waiting = 0
        self._busy: set[int] = set()  # pids of the workers holding a task
        self.failure: str | None = None  # why the pool cannot start, when it cannot
        self._closed = False

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start every worker; each joins the pool when its models are loaded."""
        for _ in range(self.size):
            self._spawn()

    def _spawn(self) -> None:
        worker = _Worker(self._ctx, *self._args)
        with self._lock:
            self._workers.append(worker)
        threading.Thread(target=self._join, args=(worker,), daemon=True).start()

    def _join(self, worker: _Worker) -> None:
        try:
            worker.wait_ready(START_TIMEOUT_S)
        except WorkerStartError as exc:
            log.error("worker failed to start: %s", exc)
            with self._lock:
                self.failure = str(exc)
                self._workers.remove(worker)
            worker.kill()
            return
        with self._lock:
            self._ready += 1
        log.info("worker %d ready", worker.pid)
        self._idle.put(worker)

    def close(self) -> None:
        self._closed = True
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.kill()

    # -- state ---------------------------------------------------------------------------------
    @property
    def ready(self) -> int:
        return self._ready

    @property
    def waiting(self) -> int:
        """Tasks waiting for a free worker (the queue length)."""
        return self._waiting

    def pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in self._workers]

    def busy(self) -> list[int]:
        """Pids of the workers processing a task now."""
        with self._lock:
            return sorted(self._busy)

    # -- work ----------------------------------------------------------------------------------
    def call(self, task: dict, timeout: float) -> Any:
        """Run ``task`` on a free worker (waiting for one); WorkerDied when it dies meanwhile."""
        with self._lock:
            self._waiting += 1
        try:
            while True:
                if self.failure and not self._ready:
                    raise WorkerStartError(self.failure)
                try:
                    worker = self._idle.get(timeout=1.0)
                    break
                except queue.Empty:
                    if self._closed:
                        raise WorkerDied("the server is shutting down") from None
        finally:
            with self._lock:
                self._waiting -= 1
        with self._lock:
            self._busy.add(worker.pid)
        try:
            reply = worker.call(task, timeout)
        except WorkerDied:
            self._replace(worker)
            raise
        finally:
            with self._lock:
                self._busy.discard(worker.pid)
        self._idle.put(worker)
        return reply

    def _replace(self, worker: _Worker) -> None:
        with self._lock:
            self._ready -= 1
            if worker in self._workers:
                self._workers.remove(worker)
        log.error("worker %d died; starting another", worker.pid)
        if not self._closed:
            self._spawn()


def wait_ready(pool: WorkerPool, timeout: float) -> bool:
    """Block until every worker of ``pool`` is ready (True) or ``timeout`` passes."""
    end = time.monotonic() + timeout
    while pool.ready < pool.size and time.monotonic() < end and not pool.failure:
        time.sleep(0.1)
    return pool.ready >= pool.size
