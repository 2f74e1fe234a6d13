"""Request throttling with `limits`: in Redis when REDIS_URL is set, so that every API
instance counts against the same budget, in process memory otherwise."""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from app.core.config import Settings


class RateLimitedError(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


class Throttle:
    def __init__(self, settings: Settings) -> None:
        storage: Storage
        if settings.REDIS_URL:
            storage = RedisStorage(
                settings.REDIS_URL.replace("redis://", "async+redis://", 1),
                implementation="redispy",
                key_prefix=f"{settings.JWT_ISSUER}:limits",
            )
        else:
            storage = MemoryStorage()
        self.storage = storage
        self.limiter = MovingWindowRateLimiter(storage)

    async def check(self, limit: str, *key: str) -> None:
        """Raise RateLimitedError when `key` has used up `limit`, without spending from it."""
        item = parse(limit)
        if not await self.limiter.test(item, *key):
            raise RateLimitedError(await self._retry_after(item, *key))

    async def hit(self, limit: str, *key: str) -> None:
        """Spend one from `key`'s budget; raise RateLimitedError when there was none left."""
        item = parse(limit)
        if not await self.limiter.hit(item, *key):
            raise RateLimitedError(await self._retry_after(item, *key))

    async def clear(self, limit: str, *key: str) -> None:
        await self.limiter.clear(parse(limit), *key)

    async def _retry_after(self, item: RateLimitItem, *key: str) -> int:
        stats = await self.limiter.get_window_stats(item, *key)
        return max(1, math.ceil(stats.reset_time - time.time()))
