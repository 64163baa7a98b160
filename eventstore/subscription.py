"""Following the feed: LISTEN/NOTIFY wakes a subscriber, which then re-reads from its cursor.

A notification is only a hint: nothing is taken from its payload, so a lost notification (a
reconnect, a transaction that was in flight when the hint came) costs at most one poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg

from eventstore import queries
from eventstore.store import EventStore
from eventstore.types import START, Cursor, RecordedEvent


class Subscription:
    """An async iterator over every event after ``after``, waiting for new ones as they commit."""

    def __init__(
        self,
        store: EventStore,
        after: Cursor | str | None = START,
        *,
        page_size: int = 500,
        poll_interval: float = 1.0,
    ) -> None:
        self.store = store
        self.cursor = after if isinstance(after, Cursor) else Cursor.parse(after)
        self.page_size = page_size
        self.poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._conn: asyncpg.Connection | None = None

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def __aenter__(self) -> Subscription:
        self._conn = await self.store.pool.acquire()
        await self._conn.add_listener(queries.LISTEN_CHANNEL, self._notified)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._conn is not None:
            await self._conn.remove_listener(queries.LISTEN_CHANNEL, self._notified)
            await self.store.pool.release(self._conn)
            self._conn = None

    async def wait(self, timeout: float | None = None) -> list[RecordedEvent]:
        """The next page of events; waits up to ``timeout`` (default: for ever) when there are none."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            # Clear before reading: a notification that lands during the read wakes the next wait.
            self._wake.clear()
            page = await self.store.read_all(self.cursor, self.page_size)
            if page.events:
                self.cursor = page.cursor
                return page.events
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return []
            pause = self.poll_interval if remaining is None else min(self.poll_interval, remaining)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)

    async def __aiter__(self) -> AsyncIterator[RecordedEvent]:
        async with self:
            while True:
                for event in await self.wait():
                    yield event
