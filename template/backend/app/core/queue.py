"""The one way the app runs work outside a request: `await jobs.enqueue(call)`.

With REDIS_URL set, the call goes to an RQ queue and a worker process (`python -m
app.worker`) runs it, retrying with backoff when it fails. Without Redis, the embedded
default, it runs in the API process after the response has been sent, once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from anyio import to_thread
from fastapi import BackgroundTasks
from redis import Redis
from redis.exceptions import RedisError
from rq import Callback, Queue, Retry, get_current_job
from rq.job import Job

from app.core.config import Settings, get_settings
from app.core.errors import ServiceUnavailableError

logger = logging.getLogger(__name__)

# The worker takes jobs from these queues in this order: a verification email does not
# wait behind a batch of file processing.
EMAIL_QUEUE = "email"
DEFAULT_QUEUE = "default"
QUEUES = (EMAIL_QUEUE, DEFAULT_QUEUE)

_settings: ContextVar[Settings | None] = ContextVar("job_settings", default=None)


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


def job_settings() -> Settings:
    """The settings a job runs with: the API's own when run inline, the environment's in
    the worker."""
    return _settings.get() or get_settings()


def final_attempt() -> bool:
    """Whether a failure now is the job's last: inline runs and exhausted retries."""
    job = get_current_job()
    return job is None or not job.retries_left


def log_failure(
    job: Job,
    connection: Redis,
    error_type: type[BaseException],
    error: BaseException,
    traceback: TracebackType,
) -> None:
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
    token = _settings.set(settings)
    try:
        call.function(*call.args)
    except Exception:
        # After the response there is nobody to answer; the log is where this goes.
        logger.exception("Job %s failed", call.description)
    finally:
        _settings.reset(token)


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
            )
        except RedisError as exc:
            raise QueueUnavailableError(str(exc)) from exc

    def close(self) -> None:
        if self.redis is not None:
            self.redis.close()


class Jobs:
    """The job queue, bound to one request: `await jobs.enqueue(send_email_job(...))`.

    Without Redis the call runs once the request's response has been sent.
    """

    def __init__(self, queue: JobQueue, background: BackgroundTasks) -> None:
        self.queue = queue
        self.background = background

    async def enqueue(self, call: JobCall) -> None:
        await self.queue.enqueue(call, self.background)
