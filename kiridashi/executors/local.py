"""The local executor: a ``spawn`` process pool on this machine (models load once per worker)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from kiridashi.executors.base import Outcome


class LocalExecutor:
    """``workers`` processes of this machine. At most ``in_flight`` items per worker are
    submitted at a time (the next when one finishes: a million images are never a million
    pending futures); results come back in completion order."""

    def __init__(self, workers: int, in_flight: int = 2):
        self.workers = max(1, int(workers))
        self.in_flight = max(1, int(in_flight))

    def map(
        self,
        init: Callable[..., None],
        initargs: tuple,
        work: Callable[..., Any],
        items: Sequence[tuple],
    ) -> Iterator[Outcome]:
        ctx = multiprocessing.get_context("spawn")
        limit = self.workers * self.in_flight
        queue = iter(enumerate(items))
        pending: dict[Future, int] = {}
        with ProcessPoolExecutor(
            max_workers=self.workers, mp_context=ctx, initializer=init, initargs=initargs
        ) as pool:

            def fill() -> None:
                while len(pending) < limit:
                    nxt = next(queue, None)
                    if nxt is None:
                        return
                    pending[pool.submit(work, *nxt[1])] = nxt[0]

            try:
                fill()
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        i = pending.pop(fut)
                        try:
                            value = fut.result()
                        except Exception as exc:  # noqa: BLE001 - the caller decides
                            yield i, None, exc
                        else:
                            yield i, value, None
                    fill()
            finally:  # the caller stopped early (a fatal error): drop what has not started
                for fut in pending:
                    fut.cancel()
