"""The Ray executor: the same per-image work on a Ray cluster (or a Ray runtime on this machine).

- A pool of actors, one per CPU it uses (``executor.actors``, else ``jobs`` when above 1, else the
  cluster's CPUs): each runs the worker set-up once (models load once per actor), then images.
- Bounded in-flight work: each actor has at most ``executor.in_flight`` images queued; the next
  image is submitted when one finishes, so a million images never become a million Ray tasks.
- A worker that dies (killed, out of memory, its node lost) takes only its in-flight images with
  it: the actor is replaced and those images are retried (``executor.retries`` times), then
  reported as failed with the reason; the run goes on.
- ``executor.address``: null starts a Ray runtime on this machine for the run (and stops it
  after); ``auto`` joins the cluster this machine is part of (``ray start``); ``ray://HOST:PORT``
  connects to a remote cluster's client server. Every node needs kiridashi and its models
  (``pip install 'kiridashi[ray]'``); results are shared through ``cache.remote``.
"""

from __future__ import annotations

import logging
import os
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from kiridashi.config import ConfigError
from kiridashi.executors.base import Outcome

log = logging.getLogger(__name__)

# environment a Ray runtime on this machine passes on to its actors (cache and model folders)
_FORWARDED_ENV = ("KIRIDASHI_",)


class WorkerLost(RuntimeError):
    """An image whose worker died on every try."""


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "executor=ray needs Ray: pip install 'kiridashi[ray]' (or choose executor=local)"
        ) from None
    return ray


class _ImageWorker:
    """One Ray actor: set up once, then one image per call."""

    def __init__(self, init: Callable[..., None], initargs: tuple, work: Callable[..., Any]):
        init(*initargs)
        self._work = work

    def run(self, *item: Any) -> Any:
        return self._work(*item)

    def pid(self) -> int:
        return os.getpid()


class RayExecutor:
    """Images through a pool of Ray actors; see the module docstring."""

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        in_flight: int = 2,
        retries: int = 2,
    ):
        self.address = address or None
        self.requested = workers
        self.workers = workers or 0  # known once connected (the cluster's CPUs)
        self.in_flight = max(1, int(in_flight))
        self.retries = max(0, int(retries))
        self.actors: list[Any] = []

    @classmethod
    def from_config(cls, cfg: dict, jobs: int) -> RayExecutor:
        actors = cfg.get("actors") or (jobs if jobs > 1 else None)
        for key, value, least in (("actors", actors, 1), ("in_flight", cfg.get("in_flight", 2), 1),
                                  ("retries", cfg.get("retries", 2), 0)):  # fmt: skip
            if value is not None and (not isinstance(value, int) or value < least):
                raise ConfigError(f"executor.{key}={value}: expected an integer >= {least}")
        return cls(cfg.get("address"), actors, cfg.get("in_flight", 2), cfg.get("retries", 2))

    # -- the Ray runtime --------------------------------------------------------------------
    def _connect(self) -> bool:
        """Connect to (or start) Ray; True when this call started it (it is then stopped)."""
        ray = _ray()
        if ray.is_initialized():
            return False
        kwargs: dict[str, Any] = {"address": self.address, "log_to_driver": True}
        if self.address is None:
            kwargs.update(num_cpus=self.requested, include_dashboard=False)
        try:
            ray.init(**kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure to reach the cluster is one line
            where = self.address or "a local Ray runtime"
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(f"executor=ray: cannot start or join {where}: {first}") from None
        return True

    def _cluster_cpus(self) -> int:
        return max(1, int(_ray().cluster_resources().get("CPU", 1)))

    def _actor_options(self) -> dict:
        options: dict[str, Any] = {"num_cpus": 1, "max_restarts": 0, "max_task_retries": 0}
        if self.address is None:  # same machine: the actors use this run's cache and models
            env = {k: v for k, v in os.environ.items() if k.startswith(_FORWARDED_ENV)}
            if env:
                options["runtime_env"] = {"env_vars": env}
        return options

    def worker_pids(self) -> list[int]:
        """Process ids of the live actors (for diagnostics and tests)."""
        ray = _ray()
        return ray.get([a.pid.remote() for a in self.actors])

    # -- the work -----------------------------------------------------------------------------
    def map(
        self,
        init: Callable[..., None],
        initargs: tuple,
        work: Callable[..., Any],
        items: Sequence[tuple],
    ) -> Iterator[Outcome]:
        ray = _ray()
        from ray.exceptions import RayError, RayTaskError

        started = self._connect()
        try:
            cpus = self._cluster_cpus()
            n = max(1, min(self.requested or cpus, cpus, len(items) or 1))
            self.workers = n
            actor_cls = ray.remote(_ImageWorker).options(**self._actor_options())

            def new_actor():
                return actor_cls.remote(init, initargs, work)

            self.actors = [new_actor() for _ in range(n)]
            generation = [0] * n
            load = [0] * n
            queue = deque(range(len(items)))
            tries: Counter = Counter()
            pending: dict[Any, tuple[int, int, int]] = {}  # ref -> (slot, generation, index)

            def fill(slot: int) -> None:
                while load[slot] < self.in_flight and queue:
                    i = queue.popleft()
                    ref = self.actors[slot].run.remote(*items[i])
                    pending[ref] = (slot, generation[slot], i)
                    load[slot] += 1

            for slot in range(n):
                fill(slot)
            while pending:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                slot, gen, i = pending.pop(ref)
                if gen == generation[slot]:
                    load[slot] -= 1
                try:
                    value = ray.get(ref)
                except RayTaskError as exc:  # the work itself raised: the caller decides
                    cause = getattr(exc, "cause", None)
                    yield i, None, cause if isinstance(cause, BaseException) else exc
                except RayError as exc:  # the worker is gone (killed, OOM, node lost)
                    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    if gen == generation[slot]:  # replace it once, whatever it had in flight
                        log.warning("ray worker %d died (%s): replacing it", slot, reason)
                        ray.kill(self.actors[slot], no_restart=True)
                        self.actors[slot] = new_actor()
                        generation[slot] += 1
                        load[slot] = 0
                    tries[i] += 1
                    if tries[i] <= self.retries:
                        queue.appendleft(i)
                    else:
                        lost = WorkerLost(f"worker died {tries[i]} times ({reason})")
                        yield i, None, lost
                else:
                    yield i, value, None
                for other in range(n):
                    fill(other)
        finally:
            for actor in self.actors:
                ray.kill(actor, no_restart=True)
            self.actors = []
            if started:
                ray.shutdown()
