"""What keeps the queues moving when a worker dies: a thread in every worker.

Each second it marks its worker alive (a key that lapses ALIVE_SECONDS after the last
mark), and the one worker that holds the keeper lease (LEASE_SECONDS, renewed each
second) moves retries whose time has come back to their queue, hands the jobs of
workers that are no longer alive back to RQ, which retries them as it would a failure,
and queues the periodic jobs (worker.py lists them) when they are due.

So a worker killed (SIGKILL, a lost machine) costs seconds: its lease passes to another
worker within LEASE_SECONDS, and the job it was running runs again ALIVE_SECONDS plus
the first retry interval later. (A worker killed in the milliseconds between taking a
job from its queue and recording it as started loses that job, as with RQ alone.) RQ's
own scheduler holds its lock for 61 seconds and its clean-up runs every ten minutes,
which is why it is not used for this. Jobs must therefore be idempotent: a job whose
worker only seemed dead (it could not reach Redis for ALIVE_SECONDS) runs a second time.
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
from rq.timeouts import TimerDeathPenalty

from app.core.queue import QUEUES, JobCall

logger = logging.getLogger(__name__)

TICK_SECONDS = 1.0
ALIVE_SECONDS = 10
LEASE_SECONDS = 5
LEASE_KEY = "dayone:keeper-lease"
ALIVE_KEY = "dayone:worker-alive:{}"
KEPT_KEY = "dayone:worker-kept:{}"
KEPT_SECONDS = 24 * 3600
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
        redis_url: str,
        *,
        periodic: Sequence[Periodic],
        enqueue: Callable[[JobCall], None],
    ) -> None:
        self.worker_name = worker_name
        # A client of its own with short timeouts: RQ raises the worker's to minutes for
        # its blocking reads, and a call that hangs that long would outlast the mark.
        self.redis = Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
        # Every queue of the app, whichever ones this worker takes jobs from: the lease
        # holder keeps them all moving.
        self.queues = [Queue(name, connection=self.redis) for name in QUEUES]
        self.periodic = list(periodic)
        self.enqueue = enqueue
        self.lease = self.redis.register_script(_LEASE)
        self.scheduler = RQScheduler(self.queues, connection=self.redis)
        self.scheduler.prepare_registries(list(QUEUES))
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
        self.redis.close()

    def _run(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            try:
                self.tick()
            except RedisError as exc:
                # The worker's own loop reports Redis trouble; this says it once.
                if self._unreachable_since is None:
                    self._unreachable_since = time.monotonic()
                    logger.warning("Keeper cannot reach Redis: %s", exc)
            else:
                self._unreachable_since = None

    def mark_alive(self) -> None:
        # The second key says that this worker has a keeper: only the jobs of such
        # workers are handed back when their mark lapses (a burst run, `rq worker` or a
        # worker of an earlier release marks nothing, and keeps its jobs).
        with self.redis.pipeline() as pipeline:
            pipeline.set(ALIVE_KEY.format(self.worker_name), 1, ex=ALIVE_SECONDS)
            pipeline.set(KEPT_KEY.format(self.worker_name), 1, ex=KEPT_SECONDS)
            pipeline.execute()

    def tick(self) -> None:
        self.mark_alive()
        if self.lease(keys=[LEASE_KEY], args=[self.worker_name, LEASE_SECONDS]) != 1:
            return
        for duty in (
            self.move_due_retries,
            self.hand_back_abandoned_jobs,
            self.queue_periodic_jobs,
        ):
            try:
                duty()
            except RedisError:
                raise
            except Exception:
                # One duty failing (a job that cannot be read back, say) leaves the
                # others to run.
                logger.exception("Keeper: %s failed", duty.__name__)

    def move_due_retries(self) -> None:
        self.scheduler.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]  # rq leaves it unannotated

    def queue_periodic_jobs(self) -> None:
        for call, every in self.periodic:
            due = self.redis.set(PERIODIC_KEY.format(call.description), 1, nx=True, ex=every)
            if not due:
                continue
            try:
                self.enqueue(call)
            except Exception:
                # Not queued, so due again at the next tick.
                self.redis.delete(PERIODIC_KEY.format(call.description))
                raise

    def hand_back_abandoned_jobs(self) -> None:
        """Jobs in a started registry whose worker is no longer alive go back to RQ: it
        retries them (or records them failed when no retry is left)."""
        for queue in self.queues:
            # RQ runs each handed-back job's failure callback under a timeout; a timer,
            # since signals work only in the main thread.
            registry = StartedJobRegistry(
                queue.name, connection=self.redis, death_penalty_class=TimerDeathPenalty
            )
            abandoned = []
            for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
                try:
                    worker = Execution.fetch(execution_id, job_id, self.redis).worker_name
                except ValueError:
                    # The job ended between the two reads; an entry whose record lapsed
                    # is RQ's own clean-up's.
                    continue
                if worker and self._died(worker):
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

    def _died(self, worker: str) -> bool:
        """Whether `worker` had a keeper and is no longer marked alive."""
        with self.redis.pipeline(transaction=False) as pipeline:
            pipeline.exists(KEPT_KEY.format(worker))
            pipeline.exists(ALIVE_KEY.format(worker))
            kept, alive = pipeline.execute()
        return bool(kept) and not alive
