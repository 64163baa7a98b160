"""The projector: follows the event store's feed and applies each event to a projection, exactly once.

Exactly-once effect comes from one rule: a projection's rows and its checkpoint change in the same
transaction. A batch is read from the feed, then applied inside a transaction that first locks the
projection's checkpoint row and checks it still stands where the batch was read from (another runner
or a rebuild may have moved it), and last advances it past the batch. A crash anywhere in between
rolls back both, so the next run starts from the same place and applies the same events once.

Batches stay small on purpose: a transaction that writes holds a transaction id, and every feed
reader (this one included) stops below the oldest transaction in flight.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Final

import asyncpg
import structlog

from domain import decode_event
from eventstore import Cursor, EventStore, RecordedEvent, Subscription

log = structlog.stdlib.get_logger("planloop.readmodels")

ENSURE_CHECKPOINT: Final = """
INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING
"""
READ_CHECKPOINT: Final = """
SELECT cursor_tx, cursor_pos, updated_at FROM projection_checkpoints WHERE name = $1
"""
LOCK_CHECKPOINT: Final = """
SELECT cursor_tx, cursor_pos FROM projection_checkpoints WHERE name = $1 FOR UPDATE
"""
ADVANCE_CHECKPOINT: Final = """
UPDATE projection_checkpoints SET cursor_tx = $2, cursor_pos = $3, updated_at = now() WHERE name = $1
"""
RESET_CHECKPOINT: Final = """
UPDATE projection_checkpoints SET cursor_tx = 0, cursor_pos = 0, updated_at = now() WHERE name = $1
"""


class Projection(ABC):
    """A read model: a name, the events it handles, and how one event changes its rows.

    ``apply`` runs inside the batch's transaction on ``conn``; it must only write through ``conn``
    (never through a pool), or its writes would escape the exactly-once guarantee.
    """

    name: ClassVar[str]
    #: Event types it handles; None for every type. Other events only move the checkpoint.
    event_types: ClassVar[frozenset[str] | None] = None
    #: Only streams whose id starts with this are handled ("plan:" for plan read models).
    stream_prefix: ClassVar[str] = ""
    #: Whether apply wants the domain event (decoded with upcasting) or only the envelope.
    decodes: ClassVar[bool] = True
    #: SQL that empties the projection's rows (run by ``reset``, without arguments).
    reset_statements: ClassVar[tuple[str, ...]] = ()

    def handles(self, event: RecordedEvent) -> bool:
        return event.stream_id.startswith(self.stream_prefix) and (
            self.event_types is None or event.type in self.event_types
        )

    async def reset(self, conn: asyncpg.Connection) -> None:
        """Empty the projection's rows, inside the transaction that resets its checkpoint."""
        for statement in self.reset_statements:
            await conn.execute(statement)

    @abstractmethod
    async def apply(self, conn: asyncpg.Connection, recorded: RecordedEvent, decoded: Any) -> None:
        """Change the projection's rows for one event (``decoded`` is None when ``decodes`` is off)."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    read: int  # events read from the feed
    applied: int  # events the projection handled
    cursor: Cursor  # the checkpoint after the batch
    moved: bool = False  # the checkpoint was moved under us; nothing was applied


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    name: str
    cursor: str
    updated_at: datetime | None
    caught_up: bool


async def checkpoint(store: EventStore, name: str) -> Cursor:
    """Where projection ``name`` stands (the start if it never ran)."""
    row = await store.pool.fetchrow(READ_CHECKPOINT, name)
    return Cursor() if row is None else Cursor(row["cursor_tx"], row["cursor_pos"])


async def run_batch(store: EventStore, projection: Projection, batch_size: int = 500) -> BatchResult:
    """Read one batch after the projection's checkpoint and apply it in one transaction."""
    await store.pool.execute(ENSURE_CHECKPOINT, projection.name)
    start = await checkpoint(store, projection.name)
    page = await store.read_all(start, batch_size)
    if not page.events:
        return BatchResult(0, 0, start)
    applied = 0
    async with store.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(LOCK_CHECKPOINT, projection.name)
        if Cursor(row["cursor_tx"], row["cursor_pos"]) != start:
            # Another runner applied this batch, or a rebuild reset the checkpoint, after we read it.
            return BatchResult(0, 0, Cursor(row["cursor_tx"], row["cursor_pos"]), moved=True)
        for event in page.events:
            if not projection.handles(event):
                continue
            decoded = (
                decode_event(event.type, event.schema_version, event.data) if projection.decodes else None
            )
            await projection.apply(conn, event, decoded)
            applied += 1
        await conn.execute(ADVANCE_CHECKPOINT, projection.name, page.cursor.tx_id, page.cursor.position)
    return BatchResult(len(page.events), applied, page.cursor)


async def catch_up(
    store: EventStore,
    projection: Projection,
    batch_size: int = 500,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Apply batches until the feed has nothing more for the projection; return the events handled.
    ``on_batch`` hears how many events each batch read (a progress bar)."""
    total = 0
    while True:
        result = await run_batch(store, projection, batch_size)
        total += result.applied
        if on_batch is not None:
            on_batch(result.read)
        if result.read < batch_size and not result.moved:
            return total


async def reset(store: EventStore, projection: Projection) -> None:
    """Empty the projection's rows and put its checkpoint back to the start, in one transaction."""
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute(ENSURE_CHECKPOINT, projection.name)
        # Taking the checkpoint lock first makes a running batch either finish before the reset or
        # find the checkpoint moved and drop its work.
        await conn.fetchrow(LOCK_CHECKPOINT, projection.name)
        await projection.reset(conn)
        await conn.execute(RESET_CHECKPOINT, projection.name)


async def status(store: EventStore, projection: Projection) -> ProjectionStatus:
    row = await store.pool.fetchrow(READ_CHECKPOINT, projection.name)
    cursor = Cursor() if row is None else Cursor(row["cursor_tx"], row["cursor_pos"])
    behind = (await store.read_all(cursor, 1)).events
    return ProjectionStatus(projection.name, str(cursor), row and row["updated_at"], not behind)


class Projector:
    """Keeps projections current: catches each up, then waits for new events (NOTIFY or a poll).

    A failing batch (a bug in a projection, a lost connection) is logged and retried with backoff;
    nothing of it was applied, so retrying is safe.
    """

    def __init__(
        self,
        store: EventStore,
        projections: Sequence[Projection],
        *,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        max_backoff: float = 30.0,
    ) -> None:
        self.store = store
        self.projections = list(projections)
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff

    async def run_once(self) -> int:
        """Catch every projection up with the feed; return the events applied."""
        total = 0
        for projection in self.projections:
            total += await catch_up(self.store, projection, self.batch_size)
        return total

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Follow the feed until ``stop`` is set (or the task is cancelled)."""
        stop = stop or asyncio.Event()
        backoff = self.poll_interval
        # The subscription is only an alarm clock: each projection reads from its own checkpoint.
        async with Subscription(self.store, poll_interval=self.poll_interval) as wake:
            wake.cursor = await _feed_head(self.store, wake.cursor)
            while not stop.is_set():
                try:
                    await self.run_once()
                    backoff = self.poll_interval
                except Exception:  # a supervisor loop: nothing of a failed batch was applied
                    log.exception("projection batch failed; retrying", retry_in=backoff)
                    await _first(asyncio.sleep(backoff), stop.wait())
                    backoff = min(backoff * 2, self.max_backoff)
                    continue
                await _first(wake.wait(timeout=self.poll_interval), stop.wait())


async def _feed_head(store: EventStore, cursor: Cursor) -> Cursor:
    """The cursor after every event readable now: the wake-up subscription waits from there."""
    while True:
        page = await store.read_all(cursor, 1000)
        if len(page.events) < 1000:
            return page.cursor
        cursor = page.cursor


async def _first(*waits: Awaitable[Any]) -> None:
    """Wait until the first of ``waits`` finishes; cancel the rest."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
