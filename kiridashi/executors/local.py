"""The local executor: a ``spawn`` process pool on this machine (models load once per worker)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from kiridashi.executors.base import Outcome


class LocalExecutor:
    """``workers`` processes of this machine; every item is submitted at once (the pool queues
    them), results come back in completion order."""

    def __init__(self, workers: int):
        self.workers = max(1, int(workers))

    def map(
        self,
        init: Callable[..., None],
        initargs: tuple,
        work: Callable[..., Any],
        items: Sequence[tuple],
    ) -> Iterator[Outcome]:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=self.workers, mp_context=ctx, initializer=init, initargs=initargs
        ) as pool:
            futures = {pool.submit(work, *item): i for i, item in enumerate(items)}
            try:
                for fut in as_completed(futures):
                    try:
                        yield futures[fut], fut.result(), None
                    except Exception as exc:  # noqa: BLE001 - the caller decides
                        yield futures[fut], None, exc
            finally:  # the caller stopped early (a fatal error): drop what has not started
                for fut in futures:
                    fut.cancel()
