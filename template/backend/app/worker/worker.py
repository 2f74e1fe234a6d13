"""The RQ worker: `python -m app.worker` (add `--burst` to stop when the queues are empty).

It takes jobs from the queues in priority order (email first) and runs them one after
another in its own process, so that the database engine, the storage client and the
event loop a job needs are made once and reused by every job (app/core/job_runtime.py):
a fork per job would make each of them again. A job that raises is recorded and retried; a job
that kills the process (or a worker killed from outside) is handed back by the keeper
(keeper.py) within seconds, to run again on another worker or on this one's
replacement. Run as many workers as the load needs: each takes one job at a time.

SIGTERM or Ctrl-C once lets the current job finish before the worker exits (a warm
shutdown); a second one stops it at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.job import Job

from app.core.config import get_settings
from app.core.job_runtime import close_job_runtime
from app.core.logging import bind_job, configure_logging, unbind_job
from app.core.queue import QUEUES, JobQueue, request_id_of, trace_context_of

# The modules whose functions are the jobs (each builds its calls with a `..._job`).
from app.services import account_service, email_service, file_service, retention_service
from app.worker.keeper import Keeper

logger = logging.getLogger(__name__)


tracer = trace.get_tracer(__name__)


class Worker(SimpleWorker):
    """RQ's worker that runs jobs in its own process, with each job's id, and the id of
    the request that enqueued it, on every log line written while the job runs; with
    tracing on, each job is a span in the trace of that request."""

    def execute_job(self, job: Job, queue: Queue) -> None:
        fields = {"job_id": job.id, "request_id": request_id_of(job)}
        tokens = bind_job(**{name: value for name, value in fields.items() if value})
        try:
            with tracer.start_as_current_span(
                f"job {job.func_name}",
                context=trace_context_of(job),
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "rq",
                    "messaging.destination.name": queue.name,
                    "messaging.message.id": job.id,
                },
            ):
                super().execute_job(job, queue)
        finally:
            unbind_job(tokens)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.worker", description="Run the job worker.")
    parser.add_argument(
        "--burst",
        action="store_true",
        help="run the queued jobs, then exit (for scripts and tests)",
    )
    parser.add_argument(
        "--queues",
        nargs="+",
        default=list(QUEUES),
        metavar="QUEUE",
        help=f"the queues to take jobs from, first first (default: {' '.join(QUEUES)})",
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.LOG_LEVEL, json_lines=settings.log_json)
    if settings.tracing_enabled:
        from app.core.tracing import start_tracing

        start_tracing(settings, f"{settings.OTEL_SERVICE_NAME}-worker")
    if settings.SENTRY_DSN:
        from app.core.sentry import start_sentry

        start_sentry(settings)
    if not settings.REDIS_URL:
        print(
            "error: REDIS_URL is not set. Without Redis the API runs jobs itself, after "
            "each response, and needs no worker; set REDIS_URL to use one.",
            file=sys.stderr,
        )
        return 1
    redis = Redis.from_url(settings.REDIS_URL)
    try:
        redis.ping()
    except RedisError as exc:
        print(f"error: cannot reach Redis at REDIS_URL: {exc}", file=sys.stderr)
        return 1
    # Everything a job needs is loaded once, here, before the first job: none of them
    # pays for importing the app or compiling the email templates.
    logger.debug(
        "Jobs loaded from %s",
        ", ".join(
            module.__name__
            for module in (account_service, email_service, file_service, retention_service)
        ),
    )
    email_service.warm_up()
    queues = [Queue(name, connection=redis) for name in args.queues]
    worker = Worker(
        queues,
        connection=redis,
        # RQ would log each job's arguments; ours carry email addresses and links.
        log_job_description=False,
    )
    logger.info("Worker %s taking jobs from %s", worker.name, ", ".join(args.queues))
    job_queue = JobQueue(settings)
    keeper = None
    if not args.burst:
        keeper = Keeper(
            worker.name,
            settings.REDIS_URL,
            periodic=[
                (file_service.sweep_storage_job(), settings.STORAGE_SWEEP_INTERVAL_SECONDS),
                (retention_service.prune_job(), retention_service.PRUNE_INTERVAL_SECONDS),
            ],
            enqueue=job_queue.put,
        )
    if keeper is not None:
        keeper.start()
    try:
        worker.work(
            burst=args.burst,
            # A burst run moves the retries due as it starts; otherwise the keeper does.
            with_scheduler=args.burst,
            logging_level=settings.LOG_LEVEL.upper(),
        )
    finally:
        if keeper is not None:
            keeper.stop()
        job_queue.close()
        close_job_runtime()
        if settings.tracing_enabled:
            from app.core.tracing import stop_tracing

            stop_tracing()
    return 0
