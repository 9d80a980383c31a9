"""The local executor (kiridashi/executors/local.py) on a real ``spawn`` process pool: every item
comes back once, errors come back as values, and only ``in_flight`` items per worker are
submitted at a time."""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor

from kiridashi.executors import make_executor
from kiridashi.executors.local import LocalExecutor


def _init(*_args) -> None:
    pass


def _square(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    time.sleep(0.01)
    return x * x


def test_the_local_pool_keeps_only_a_few_items_per_worker_in_flight(monkeypatch):
    submitted = []
    real_submit = ProcessPoolExecutor.submit

    def spy(self, fn, /, *args, **kwargs):
        submitted.append(args)
        return real_submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(ProcessPoolExecutor, "submit", spy)
    outcomes, most = [], 0
    for outcome in LocalExecutor(2, in_flight=2).map(_init, (), _square, [(k,) for k in range(24)]):
        most = max(most, len(submitted) - len(outcomes))  # submitted and not yet given back
        outcomes.append(outcome)
    assert len(submitted) == 24 and most <= 2 * 2, most
    assert sorted(i for i, _, _ in outcomes) == list(range(24))  # each item once
    values = {i: (value, exc) for i, value, exc in outcomes}
    assert values[5] == (25, None)
    assert values[3][0] is None and isinstance(values[3][1], ValueError)  # an error is a value


def test_the_executor_config_sets_the_local_pool_in_flight(cfg):
    assert cfg["executor"] == {"name": "local", "in_flight": 2}
    pool = make_executor(cfg["executor"], 3)
    assert isinstance(pool, LocalExecutor) and (pool.workers, pool.in_flight) == (3, 2)
    assert make_executor({"name": "local", "in_flight": 5}, 2).in_flight == 5
