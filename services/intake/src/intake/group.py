"""Group commit: callers that arrive while a flush is running share the next one, so many filings cost one store
round trip per kind instead of one each. Nothing waits for a timer: an idle service flushes a lone filing at once,
a busy one flushes whatever gathered during the previous flush (up to `max_batch`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# The flush returns one result per item, in order; an Exception in place of a result fails that item's caller only.
Flush = Callable[[list[T]], Awaitable[list["R | Exception"]]]


class Coalescer(Generic[T, R]):
    def __init__(self, flush: Flush, *, max_batch: int = 256) -> None:
        self._flush = flush
        self.max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())
        # A caller that goes away (a closed connection) does not cancel the others' flush.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
                try:
                    results = await self._flush([item for item, _ in batch])
                except Exception as exc:  # noqa: BLE001 - the whole flush failed: each caller hears why
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._draining = None

    async def drain(self) -> None:
        """Wait for what is being flushed (graceful shutdown)."""
        if self._draining is not None:
            await asyncio.shield(self._draining)
