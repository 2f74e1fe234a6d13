"""What keeps the queues moving when a worker dies: a thread in every worker.

Each second it marks its worker alive (a key that lapses ALIVE_SECONDS after the last
mark), and the one worker that holds the keeper lease (LEASE_SECONDS, renewed each
second) moves retries whose time has come back to their queue, hands the jobs of
workers that are no longer alive back to RQ, which retries them as it would a failure,
and queues the periodic jobs (worker.py lists them) when they are due.

So a worker killed at any moment (SIGKILL, a lost machine) costs seconds: its lease
passes to another worker within LEASE_SECONDS, and the job it was running runs again
ALIVE_SECONDS plus the first retry interval later. RQ's own scheduler holds its lock for
61 seconds and its clean-up runs every ten minutes, which is why it is not used for this.
Jobs must therefore be idempotent: a job whose worker only seemed dead (it could not
reach Redis for ALIVE_SECONDS) runs a second time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.executions import Execution
from rq.registry import StartedJobRegistry
from rq.scheduler import RQScheduler

from app.core.queue import JobCall

logger = logging.getLogger(__name__)

TICK_SECONDS = 1.0
ALIVE_SECONDS = 10
LEASE_SECONDS = 5
LEASE_KEY = "dayone:keeper-lease"
ALIVE_KEY = "dayone:worker-alive:{}"
# Set for a periodic job's interval each time it is queued: while it lasts, it is not due.
PERIODIC_KEY = "dayone:periodic:{}"

# Take the lease if nobody holds it, renew it if we do; 1 when we hold it afterwards.
_LEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('expire', KEYS[1], ARGV[2])
  return 1
end
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return 1
end
return 0
"""


# A job, and the seconds from one run of it to the next.
Periodic = tuple[JobCall, int]


class Keeper:
    def __init__(
        self,
        worker_name: str,
        queues: Sequence[Queue],
        redis: Redis,
        *,
        periodic: Sequence[Periodic],
        enqueue: Callable[[JobCall], None],
    ) -> None:
        self.worker_name = worker_name
        self.queues = list(queues)
        self.redis = redis
        self.periodic = list(periodic)
        self.enqueue = enqueue
        self.lease = redis.register_script(_LEASE)
        self.scheduler = RQScheduler(self.queues, connection=redis)
        self.scheduler.prepare_registries([queue.name for queue in self.queues])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="keeper", daemon=True)
        self._unreachable_since: float | None = None

    def start(self) -> None:
        # Alive before the first job is taken, so that no keeper mistakes it for dead.
        self.mark_alive()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.redis.delete(ALIVE_KEY.format(self.worker_name))
            self.redis.eval(
                "if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) end",
                1,
                LEASE_KEY,
                self.worker_name,
            )
        except RedisError:
            pass  # both lapse on their own

    def _run(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            try:
                self.tick()
            except RedisError as exc:
                # The worker's own loop reports Redis trouble; this says it once.
                if self._unreachable_since is None:
                    self._unreachable_since = time.monotonic()
                    logger.warning("Keeper cannot reach Redis: %s", exc)
            except Exception:
                logger.exception("Keeper tick failed")
            else:
                self._unreachable_since = None

    def mark_alive(self) -> None:
        self.redis.set(ALIVE_KEY.format(self.worker_name), 1, ex=ALIVE_SECONDS)

    def tick(self) -> None:
        self.mark_alive()
        if self.lease(keys=[LEASE_KEY], args=[self.worker_name, LEASE_SECONDS]) != 1:
            return
        self.scheduler.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
        self.hand_back_abandoned_jobs()
        self.queue_periodic_jobs()

    def queue_periodic_jobs(self) -> None:
        for call, every in self.periodic:
            due = self.redis.set(PERIODIC_KEY.format(call.description), 1, nx=True, ex=every)
            if due:
                self.enqueue(call)

    def hand_back_abandoned_jobs(self) -> None:
        """Jobs in a started registry whose worker is no longer alive go back to RQ: it
        retries them (or records them failed when no retry is left)."""
        for queue in self.queues:
            registry = StartedJobRegistry(queue.name, connection=self.redis)
            abandoned = []
            for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
                try:
                    worker = Execution.fetch(execution_id, job_id, self.redis).worker_name
                except ValueError:
                    # A job that has just ended loses its execution record a moment
                    # before its registry entry; an entry whose record lapsed is RQ's
                    # own clean-up's.
                    continue
                if worker and not self.redis.exists(ALIVE_KEY.format(worker)):
                    abandoned.append(f"{job_id}:{execution_id}")
            if not abandoned:
                continue
            logger.warning(
                "Jobs %s on %s were running on workers that died; handing them back",
                ", ".join(entry.partition(":")[0] for entry in abandoned),
                queue.name,
            )
            # Expired now, so that RQ's own clean-up takes them as abandoned jobs.
            self.redis.zadd(registry.key, dict.fromkeys(abandoned, 1), xx=True)
            registry.cleanup()
