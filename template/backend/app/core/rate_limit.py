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
from redis.exceptions import RedisError

from app.core.config import Settings

logger = logging.getLogger(__name__)
T = TypeVar("T")


class RateLimitedError(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


class Throttle:
    def __init__(self, settings: Settings) -> None:
        self.fallback = MovingWindowRateLimiter(MemoryStorage())
        self.shared: MovingWindowRateLimiter | None = None
        if settings.REDIS_URL:
            storage: Storage = RedisStorage(
                settings.REDIS_URL.replace("redis://", "async+redis://", 1),
                implementation="redispy",
                key_prefix=f"{settings.JWT_ISSUER}:limits",
                socket_connect_timeout=1,
                socket_timeout=1,
            )
            self.shared = MovingWindowRateLimiter(storage)

    async def _run(self, operation: Callable[[MovingWindowRateLimiter], Awaitable[T]]) -> T:
        if self.shared is not None:
            try:
                return await operation(self.shared)
            except RedisError as exc:
                logger.warning("Rate limits fall back to this process's memory: %s", exc)
        return await operation(self.fallback)

    async def check(self, limit: str, *key: str) -> None:
        """Raise RateLimitedError when `key` has used up `limit`, without spending from it."""
        item = parse(limit)
        if not await self._run(lambda limiter: limiter.test(item, *key)):
            raise RateLimitedError(await self._retry_after(item, *key))

    async def hit(self, limit: str, *key: str) -> None:
        """Spend one from `key`'s budget; raise RateLimitedError when there was none left."""
        item = parse(limit)
        if not await self._run(lambda limiter: limiter.hit(item, *key)):
            raise RateLimitedError(await self._retry_after(item, *key))

    async def clear(self, limit: str, *key: str) -> None:
        item = parse(limit)
        await self._run(lambda limiter: limiter.clear(item, *key))

    async def _retry_after(self, item: RateLimitItem, *key: str) -> int:
        stats = await self._run(lambda limiter: limiter.get_window_stats(item, *key))
        return max(1, math.ceil(stats.reset_time - time.time()))
