"""Request throttling with `limits`: in Redis when REDIS_URL is set, so that every API
instance counts against the same budget, in process memory otherwise.

When Redis cannot be reached, each instance goes on counting in its own memory rather
than failing the request or letting everything through: logins keep working, and stay
throttled, through a Redis outage.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError

from app.core.config import Settings
from app.core.errors import AppError
from app.core.metrics import THROTTLED

logger = logging.getLogger(__name__)
T = TypeVar("T")


class RateLimitedError(AppError):
    """A throttled operation spent its budget, wherever it sits in a request."""

    status_code = 429
    log_level = logging.WARNING
    header_names = ("Retry-After",)

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many attempts; try again in {retry_after} seconds.",
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


class Throttle:
    def __init__(self, settings: Settings) -> None:
        self.fallback = MovingWindowRateLimiter(MemoryStorage())
        self.shared: MovingWindowRateLimiter | None = None
        # A pool of its own, so that the app's shutdown can close its connections.
        self.pool: ConnectionPool | None = None
        if settings.REDIS_URL:
            self.pool = ConnectionPool.from_url(
                settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1
            )
            storage: Storage = RedisStorage(
                "async+" + settings.REDIS_URL,
                implementation="redispy",
                key_prefix=f"{settings.JWT_ISSUER}:limits",
                # Documented by limits, though its signature types options as scalars.
                connection_pool=self.pool,  # type: ignore[arg-type]
            )
            self.shared = MovingWindowRateLimiter(storage)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.aclose()

    async def _run(self, operation: Callable[[MovingWindowRateLimiter], Awaitable[T]]) -> T:
        if self.shared is not None:
            try:
                return await operation(self.shared)
            except RedisError as exc:
                logger.warning("Rate limits fall back to this process's memory: %s", exc)
        return await operation(self.fallback)

    async def hit(self, limit: str, *key: str) -> None:
        """Spend one from `key`'s budget; raise RateLimitedError when there was none left.

        One atomic operation (a Lua script in Redis), never a test followed by a hit: of
        N concurrent callers with a budget of B left, exactly min(N, B) get through."""
        item = parse(limit)
        if not await self._run(lambda limiter: limiter.hit(item, *key)):
            # Counted by the budget's name ("login-address"), never by whose it is.
            THROTTLED.labels(key[0] if key else "").inc()
            raise RateLimitedError(await self._retry_after(item, *key))

    async def clear(self, limit: str, *key: str) -> None:
        item = parse(limit)
        await self._run(lambda limiter: limiter.clear(item, *key))

    async def _retry_after(self, item: RateLimitItem, *key: str) -> int:
        stats = await self._run(lambda limiter: limiter.get_window_stats(item, *key))
        return max(1, math.ceil(stats.reset_time - time.time()))
