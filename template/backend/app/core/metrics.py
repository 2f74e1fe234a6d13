"""Prometheus metrics, served on METRICS_PORT by `python -m app` (app/__main__.py).

The API counts its requests by route template and status, times them, counts those in
flight, samples its database pool, and counts failed logins and throttled requests. The
queues' depth and their failed jobs are read from Redis when the metrics are scraped.

With several uvicorn workers (WEB_CONCURRENCY) each process writes its values to files
in PROMETHEUS_MULTIPROC_DIR, which `python -m app` sets before any of them starts, and a
scrape adds them up: whichever worker served a request, it is counted once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.registry import FailedJobRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.core.queue import QUEUES

logger = logging.getLogger(__name__)

# Where the worker processes of one server write their values (prometheus_client's name).
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# A request that matched no route is counted under this, not under its path: paths are
# whatever clients send, and each would be a series of its own.
UNMATCHED_ROUTE = "unmatched"
# Likewise methods: any other a client sends is counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
POOL_SAMPLE_SECONDS = 1.0

REQUESTS = Counter("http_requests", "HTTP requests answered", ["method", "route", "status"])
REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "Time from a request's arrival to its answer's last byte",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
IN_FLIGHT = Gauge(
    "http_requests_in_flight", "HTTP requests being served", multiprocess_mode="livesum"
)
POOL_IN_USE = Gauge(
    "db_pool_connections_in_use",
    "Database connections lent out by the pool, sampled every second",
    multiprocess_mode="livesum",
)
POOL_SIZE = Gauge(
    "db_pool_connections_size",
    "Database connections the pool keeps",
    multiprocess_mode="livesum",
)
LOGIN_FAILURES = Counter("auth_login_failures", "Logins refused for their credentials", ["reason"])
THROTTLED = Counter("rate_limited_requests", "Requests refused with 429 by a rate limit", ["limit"])


class RequestMetrics:
    """Counts and times each HTTP request by method, route template and status, as
    RequestTracking (app/core/request_context.py) tells of it."""

    def started(self) -> None:
        IN_FLIGHT.inc()

    def finished(self, method: str, route: str | None, status: int, seconds: float) -> None:
        IN_FLIGHT.dec()
        labels = (method if method in METHODS else "other", route or UNMATCHED_ROUTE, str(status))
        REQUESTS.labels(*labels).inc()
        REQUEST_SECONDS.labels(*labels).observe(seconds)


async def sample_pool(engine: AsyncEngine) -> None:
    """Keep the pool gauges current, until cancelled (the app's lifespan runs this)."""
    pool = engine.pool
    while True:
        checked_out = getattr(pool, "checkedout", None)
        size = getattr(pool, "size", None)
        if callable(checked_out) and callable(size):
            POOL_IN_USE.set(checked_out())
            POOL_SIZE.set(size())
        await asyncio.sleep(POOL_SAMPLE_SECONDS)


class QueueCollector(Collector):
    """The jobs waiting in each queue and those that failed for good, read from Redis at
    each scrape; nothing when Redis does not answer (the health check says why)."""

    def __init__(self, redis_url: str) -> None:
        self.redis = Redis.from_url(redis_url, socket_connect_timeout=1, socket_timeout=2)

    def collect(self) -> Iterator[Metric]:
        queued = GaugeMetricFamily("jobs_queued", "Jobs waiting in a queue", labels=["queue"])
        failed = GaugeMetricFamily(
            "jobs_failed", "Jobs in a queue's failed job registry", labels=["queue"]
        )
        try:
            for name in QUEUES:
                queue = Queue(name, connection=self.redis)
                queued.add_metric([name], queue.count)
                failed.add_metric([name], FailedJobRegistry(queue=queue).count)
        except RedisError as exc:
            logger.warning("Queue metrics left out: Redis did not answer: %s", exc)
            return
        yield queued
        yield failed


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROCESS_DIR_VARIABLE)


def serve(settings: Settings, port: int) -> None:
    """Serve /metrics on HOST:`port` from a thread of this process: the supervisor of
    several workers, which reads their files, or the one server process."""
    if multiprocess_dir() is None:
        registry = REGISTRY
    else:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    if settings.REDIS_URL:
        registry.register(QueueCollector(settings.REDIS_URL))
    start_http_server(port, addr=settings.HOST, registry=registry)
    logger.info("Metrics served on http://%s:%d/metrics", settings.HOST, port)


def process_exited() -> None:
    """Drop this worker's live gauges (in flight, pool) from the sums, as it stops."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
