"""Prometheus metrics of the server (``GET /metrics``, text format), in a registry of its own."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """Requests by route and status, latency by route, images by outcome (``cached`` = cache
    hit), and gauges read when scraped: the queue length and the ready workers."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, queue_length: Callable[[], float], workers_ready: Callable[[], float]):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kiridashi_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kiridashi_request_seconds",
            "Time to answer a request",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.images = Counter(
            "kiridashi_images",
            "Images answered, by outcome: computed, cached (a cache hit) or skipped",
            ["outcome"],
            registry=self.registry,
        )
        self.cache_hits = Counter(
            "kiridashi_cache_hits", "Images answered from the cache", registry=self.registry
        )
        self.worker_deaths = Counter(
            "kiridashi_worker_deaths", "Workers that died or timed out", registry=self.registry
        )
        queue = Gauge(
            "kiridashi_queue_length",
            "Images waiting for a free worker (requests and job images)",
            registry=self.registry,
        )
        queue.set_function(queue_length)
        ready = Gauge(
            "kiridashi_workers_ready", "Workers with models loaded", registry=self.registry
        )
        ready.set_function(workers_ready)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def image(self, record: dict) -> None:
        if record.get("status") != "ok":
            self.images.labels("skipped").inc()
        elif record.get("cached"):
            self.images.labels("cached").inc()
            self.cache_hits.inc()
        else:
            self.images.labels("computed").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
