"""The RQ worker: `python -m app.worker` (add `--burst` to stop when the queues are empty).

It takes jobs from the queues in priority order (email first) and runs each in a forked
work horse, so a crashing job cannot take the worker down. SIGTERM or Ctrl-C once lets
the current job finish before the worker exits (a warm shutdown); a second one stops it
at once. Jobs waiting for a retry are moved back to their queue by the scheduler that
runs inside the worker.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker

from app.core.config import get_settings
from app.core.logging import LOG_FORMAT, configure_logging
from app.core.queue import QUEUES

# The modules whose functions are the jobs (each builds its calls with a `..._job`).
from app.services import account_service, email_service, file_service

logger = logging.getLogger(__name__)


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
    configure_logging(settings.LOG_LEVEL)
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
    # Everything a job needs is loaded once, here: each job runs in a process forked from
    # this one, which then starts warm instead of importing the app all over again.
    logger.debug(
        "Jobs loaded from %s",
        ", ".join(module.__name__ for module in (account_service, email_service, file_service)),
    )
    email_service.warm_up()
    worker = Worker(
        [Queue(name, connection=redis) for name in args.queues],
        connection=redis,
        # RQ would log each job's arguments; ours carry email addresses and links.
        log_job_description=False,
    )
    logger.info("Worker %s taking jobs from %s", worker.name, ", ".join(args.queues))
    worker.work(
        burst=args.burst,
        with_scheduler=True,
        logging_level=settings.LOG_LEVEL.upper(),
        log_format=LOG_FORMAT,
    )
    return 0
