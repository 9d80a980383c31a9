"""Where the images of a step run: this machine's process pool or a Ray cluster.

An executor knows nothing of the pipeline. It gets a worker set-up function (run once per worker:
it loads the models), a work function (run once per image) and the work items, and yields
``(index, value, error)`` for each item as it finishes: ``error`` is the exception the work
function raised or that lost the worker (then ``value`` is None). The caller decides what an
error means (:func:`kiridashi.pipeline.run_step`: a fatal one stops the run, any other skips the
image with the reason).

Config group ``executor`` (``conf/executor/``): ``local`` (default) or ``ray``.
"""

from __future__ import annotations

from kiridashi.config import ConfigError
from kiridashi.executors.base import Executor, Outcome

EXECUTORS = ("local", "ray")
__all__ = ["EXECUTORS", "Executor", "Outcome", "is_local", "make_executor"]


def is_local(executor_cfg: dict | None) -> bool:
    """True for the default executor (also when the config has no ``executor`` section)."""
    return (executor_cfg or {}).get("name", "local") == "local"


def make_executor(executor_cfg: dict | None, jobs: int) -> Executor:
    """The executor of an ``executor`` config section, with ``jobs`` workers (``ray``: the
    cluster's CPUs when ``jobs`` is 1 and ``executor.actors`` is not set)."""
    cfg = dict(executor_cfg or {})
    name = cfg.get("name", "local")
    if name == "local":
        from kiridashi.executors.local import LocalExecutor

        return LocalExecutor(jobs, cfg.get("in_flight", 2))
    if name == "ray":
        from kiridashi.executors.ray import RayExecutor

        return RayExecutor.from_config(cfg, jobs)
    raise ConfigError(f"executor.name={name}: expected one of {', '.join(EXECUTORS)}")
