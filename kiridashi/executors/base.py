"""The executor protocol: what :func:`kiridashi.executors.make_executor` returns (its own module,
so the executors import it without importing the package that builds them)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

Outcome = tuple[int, Any, BaseException | None]


class Executor(Protocol):
    """Runs ``work(*item)`` for every item, in workers set up by ``init(*initargs)``."""

    workers: int

    def map(
        self,
        init: Callable[..., None],
        initargs: tuple,
        work: Callable[..., Any],
        items: Sequence[tuple],
    ) -> Iterator[Outcome]: ...
