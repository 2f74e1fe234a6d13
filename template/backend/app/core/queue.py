"""The one way the app runs work outside a request: `await jobs.enqueue(call)`.

A job enqueued while the request's transaction is open goes to the queue only once that
transaction has committed: it may read what the transaction wrote, and must not run for
what a rollback undid. The queue is asked whether it answers first, so that a request
whose job cannot be queued is refused while it can still be undone.

With REDIS_URL set, the call goes to an RQ queue and a worker process (`python -m
app.worker`) runs it, retrying with backoff when it fails. Without Redis, the embedded
default, it runs in the API process after the response has been sent, once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any

from anyio import to_thread
from fastapi import BackgroundTasks
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from redis import Redis
from redis.exceptions import RedisError
from rq import Callback, Queue, Retry, get_current_job
from rq.job import Job
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.db import after_commit
from app.core.errors import ServiceUnavailableError
from app.core.job_runtime import inline_runtime
from app.core.request_context import current_request_id

logger = logging.getLogger(__name__)

# The worker takes jobs from these queues in this order: a verification email does not
# wait behind a batch of file processing.
EMAIL_QUEUE = "email"
DEFAULT_QUEUE = "default"
QUEUES = (EMAIL_QUEUE, DEFAULT_QUEUE)


class QueueUnavailableError(ServiceUnavailableError):
    """Redis did not take the job; the request answers 503 and keeps nothing."""

    public_message = "The job queue is unreachable, so nothing was done; try again soon."


@dataclass(frozen=True)
class JobCall:
    function: Callable[..., None]  # a module-level function, so RQ can import it by name
    args: tuple[Any, ...]
    description: str  # written to logs: never put a secret here
    queue: str = DEFAULT_QUEUE
    retry: bool = True  # for jobs that call other services


# What a job keeps of the request that enqueued it: its id, for the worker's log lines,
# and its trace context (W3C traceparent), so that the job's span joins its trace.
_REQUEST_ID_META = "request_id"
_TRACE_META = "trace"


def request_id_of(job: Job) -> str | None:
    value = job.meta.get(_REQUEST_ID_META)
    return value if isinstance(value, str) else None


# The trace context alone, not the baggage a client may have sent with its request.
_TRACE_CONTEXT = TraceContextTextMapPropagator()


def trace_context_of(job: Job) -> Context:
    carrier = job.meta.get(_TRACE_META)
    return _TRACE_CONTEXT.extract(carrier if isinstance(carrier, dict) else {})


def _origin_meta() -> dict[str, Any] | None:
    meta: dict[str, Any] = {}
    request_id = current_request_id()
    if request_id:
        meta[_REQUEST_ID_META] = request_id
    # Nothing is written while tracing is off: there is no span to carry.
    carrier: dict[str, str] = {}
    _TRACE_CONTEXT.inject(carrier)
    if carrier:
        meta[_TRACE_META] = carrier
    return meta or None


def final_attempt() -> bool:
    """Whether a failure now is the job's last: inline runs and exhausted retries."""
    job = get_current_job()
    return job is None or not job.retries_left


# What a job marks once its effect has happened, so that a run of it again (handed back
# after its worker died, or retried after a later step failed) does not repeat it.
_DONE_KEY = "dayone:job-done:{}"
_DONE_SECONDS = 7 * 24 * 3600


def done_before() -> bool:
    """Whether an earlier run of the current job marked its effect done (mark_done)."""
    job = get_current_job()
    return job is not None and bool(job.connection.exists(_DONE_KEY.format(job.id)))


def mark_done() -> None:
    """Mark the current job's effect done, for a job that must not repeat it (an email).
    A worker killed between the effect and this mark still repeats it: at least once."""
    job = get_current_job()
    if job is None:
        return
    try:
        job.connection.set(_DONE_KEY.format(job.id), 1, ex=_DONE_SECONDS)
    except RedisError as exc:
        # The effect has happened: failing the job now would only repeat it.
        logger.warning("Job %s done, but not marked so: %s", job.id, exc)


def log_failure(
    job: Job,
    connection: Redis,
    error_type: type[BaseException],
    error: BaseException,
    traceback: TracebackType,
) -> None:
    # RQ catches the job's error itself: the job's span (app/worker/worker.py) says so here.
    trace.get_current_span().set_status(StatusCode.ERROR, error_type.__name__)
    if job.retries_left:
        logger.warning(
            "Job %s (%s) failed: %s; %d retries left",
            job.id,
            job.description,
            error,
            job.retries_left,
        )
    else:
        logger.error(
            "Job %s (%s) failed for good: %s; it is in the failed job registry",
            job.id,
            job.description,
            error,
        )


def run_inline(settings: Settings, call: JobCall) -> None:
    try:
        with inline_runtime(settings):
            call.function(*call.args)
    except Exception:
        # After the response there is nobody to answer; the log is where this goes.
        logger.exception("Job %s failed", call.description)


class JobQueue:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = (
            Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
            if settings.REDIS_URL
            else None
        )

    @property
    def inline(self) -> bool:
        return self.redis is None

    async def enqueue(self, call: JobCall, background: BackgroundTasks) -> None:
        if self.redis is None:
            background.add_task(run_inline, self.settings, call)
            return
        await to_thread.run_sync(self._enqueue, self.redis, call)

    async def check(self) -> None:
        """QueueUnavailableError unless the queue answers."""
        if self.redis is not None:
            await to_thread.run_sync(self._ping, self.redis)

    @staticmethod
    def _ping(redis: Redis) -> None:
        try:
            redis.ping()
        except RedisError as exc:
            raise QueueUnavailableError(str(exc)) from exc

    async def enqueue_committed(self, call: JobCall, background: BackgroundTasks) -> None:
        """Enqueue the job of a transaction that has committed. Redis answered a moment
        ago; should it fail now, the request's answer still says what it saved (a 503
        would invite a retry of something done), and the lost job is logged."""
        try:
            await self.enqueue(call, background)
        except QueueUnavailableError as exc:
            logger.error(
                "Job %s not queued after its transaction committed: %s", call.description, exc
            )

    def put(self, call: JobCall) -> None:
        """Enqueue from code that is not a request's (the worker's keeper); needs Redis."""
        if self.redis is None:
            raise QueueUnavailableError("REDIS_URL is not set")
        self._enqueue(self.redis, call)

    def _enqueue(self, redis: Redis, call: JobCall) -> None:
        retry = None
        if call.retry and self.settings.JOB_RETRIES:
            retry = Retry(
                max=self.settings.JOB_RETRIES, interval=self.settings.JOB_RETRY_INTERVALS or 0
            )
        try:
            Queue(call.queue, connection=redis).enqueue(
                call.function,
                *call.args,
                description=call.description,
                retry=retry,
                on_failure=Callback(log_failure),
                meta=_origin_meta(),
            )
        except RedisError as exc:
            raise QueueUnavailableError(str(exc)) from exc

    def close(self) -> None:
        if self.redis is not None:
            self.redis.close()


class Jobs:
    """The job queue, bound to one request and its session:
    `await jobs.enqueue(send_email_job(...))`.

    Without Redis the call runs once the request's response has been sent.
    """

    def __init__(
        self, queue: JobQueue, background: BackgroundTasks, session: AsyncSession | None = None
    ) -> None:
        self.queue = queue
        self.background = background
        self.session = session

    async def enqueue(self, call: JobCall) -> None:
        if self.session is None or not self.session.in_transaction():
            await self.queue.enqueue(call, self.background)
            return
        await self.queue.check()
        after_commit(self.session, partial(self.queue.enqueue_committed, call, self.background))
