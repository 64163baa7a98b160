"""The PostgreSQL event store on asyncpg: append, read a stream, read the feed, verify chains."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from eventstore import jsoncodec, queries
from eventstore.errors import ConcurrencyError, DuplicateEventError, InvalidEventError
from eventstore.types import (
    ANY,
    NO_STREAM,
    START,
    AppendResult,
    ChainBreak,
    Cursor,
    ExpectedVersion,
    NewEvent,
    Page,
    RecordedEvent,
    VerifyReport,
)

# Session settings for every pooled connection. An idle open transaction holds back the feed for
# every reader (they stop below the oldest transaction in flight), so none may linger.
_SERVER_SETTINGS = {"idle_in_transaction_session_timeout": "60000", "application_name": "planloop"}


def _expected_code(expected: ExpectedVersion) -> int:
    if expected == ANY:
        return -1
    if expected == NO_STREAM:
        return 0
    if isinstance(expected, int) and not isinstance(expected, bool) and expected >= 0:
        return expected
    raise InvalidEventError(
        f"expected version {expected!r} is not valid; pass a version number (0 or more), "
        f"{NO_STREAM!r} or {ANY!r}"
    )


def _describe(expected: ExpectedVersion) -> str:
    if expected in (NO_STREAM, 0):
        return "no stream (version 0)"
    if expected == ANY:
        return "any version"
    return f"version {expected}"


def _id_in(detail: str | None, ids: list[UUID]) -> UUID:
    """The event id a unique-violation detail names, e.g. 'Key (event_id)=(…) already exists.'"""
    return next((i for i in ids if detail and str(i) in detail), ids[0])


async def _keep_session(_: asyncpg.Connection) -> None:
    """Pool reset that leaves the session as it is.

    asyncpg's default reset costs a round trip on every release (UNLISTEN, RESET ALL, ...). The store
    never changes session state on pooled connections (settings come with the connection, locks are
    transaction-scoped, a Subscription removes its listener), so there is nothing to reset.
    """


def _recorded(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(
        position=row["position"],
        stream_id=row["stream_id"],
        version=row["version"],
        event_id=row["event_id"],
        type=row["type"],
        schema_version=row["schema_version"],
        data=jsoncodec.loads(row["data"]),
        metadata=jsoncodec.loads(row["metadata"]),
        recorded_at=row["recorded_at"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
        tx_id=row["tx_id"],
    )


class EventStore:
    """Append-only, hash-chained event streams in one PostgreSQL table.

    Generic: it knows envelopes (stream, version, type, JSON data and metadata), not plans.
    """

    #: How long appends are gathered into one wake-up hint for subscribers.
    HINT_DELAY = 0.01

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._hint_task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 2, max_size: int = 10) -> EventStore:
        """Open a connection pool of the given size to ``dsn``."""
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            server_settings=_SERVER_SETTINGS,
            reset=_keep_session,
        )
        return cls(pool)

    async def close(self) -> None:
        if self._hint_task is not None:
            await asyncio.gather(self._hint_task, return_exceptions=True)
        await self.pool.close()

    def _hint(self) -> None:
        """Wake subscribers soon: one NOTIFY for all appends committed within HINT_DELAY.

        Notifying inside each append's transaction would serialise the commits of all writers; a
        subscriber re-reads the feed from its cursor anyway, and polls as a fallback, so a coalesced
        (or lost) hint costs at most a little latency, never an event.
        """
        if self._hint_task is None or self._hint_task.done():
            self._hint_task = asyncio.get_running_loop().create_task(self._send_hint())

    async def _send_hint(self) -> None:
        await asyncio.sleep(self.HINT_DELAY)
        with contextlib.suppress(asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
            await self.pool.execute(queries.NOTIFY)

    # -- writing ---------------------------------------------------------------------------------

    async def append(
        self, stream_id: str, expected_version: ExpectedVersion, events: Sequence[NewEvent]
    ) -> AppendResult:
        """Append ``events`` to ``stream_id`` in one transaction, if the stream is at ``expected_version``.

        Idempotent on event ids: resending events that are stored with the same content returns the
        original result and writes nothing. Raises ConcurrencyError on a version mismatch and
        DuplicateEventError when an id is stored with other content.
        """
        if not stream_id:
            raise InvalidEventError("stream_id must be a non-empty string, e.g. 'plan:FY2027:DE-SALES'")
        if not events:
            raise InvalidEventError(f"nothing to append to {stream_id!r}: pass at least one event")
        expected = _expected_code(expected_version)
        ids = [e.event_id for e in events]
        if len(set(ids)) != len(ids):
            raise InvalidEventError(
                "the same event id appears twice in one append; give each event its own id"
            )
        # The digest first: its canonical encoding is also what refuses payloads that are not JSON.
        digests = [
            jsoncodec.content_digest(e.event_id, stream_id, e.type, e.schema_version, e.data, e.metadata)
            for e in events
        ]
        data = [jsoncodec.dumps(e.data) for e in events]
        metadata = [jsoncodec.dumps(e.metadata) for e in events]
        try:
            rows = await self.pool.fetch(
                queries.APPEND,
                stream_id,
                expected,
                ids,
                [e.type for e in events],
                [e.schema_version for e in events],
                data,
                metadata,
                digests,
            )
        except asyncpg.UniqueViolationError as err:
            # The function answers retried batches itself; what reaches the constraint is an id that
            # another stream (or an earlier, different batch) already holds.
            raise DuplicateEventError(_id_in(err.detail, ids), "in another stream or batch") from None
        result = self._result(stream_id, expected_version, rows)
        if not result.duplicate:
            self._hint()
        return result

    @staticmethod
    def _result(stream_id: str, expected: ExpectedVersion, rows: list[asyncpg.Record]) -> AppendResult:
        statuses = {row["status"] for row in rows}
        if statuses == {"appended"}:
            return AppendResult(stream_id, rows[-1]["version"], tuple(r["position"] for r in rows))
        if statuses == {"conflict"}:
            raise ConcurrencyError(stream_id, _describe(expected), rows[0]["current_version"])
        if statuses == {"duplicate"}:
            versions = [r["version"] for r in rows]
            if versions != list(range(versions[0], versions[0] + len(versions))):
                raise DuplicateEventError(rows[0]["event_id"], "but not as one batch in this order")
            return AppendResult(stream_id, versions[-1], tuple(r["position"] for r in rows), duplicate=True)
        for row in rows:
            if row["status"] == "mismatch":
                raise DuplicateEventError(row["event_id"], "with other content or in another stream")
        missing = next(r for r in rows if r["status"] == "missing")
        raise DuplicateEventError(
            next(r["event_id"] for r in rows if r["status"] == "duplicate"),
            f"while event {missing['event_id']} of the same batch is not; "
            "a batch is stored whole or not at all",
        )

    # -- reading ---------------------------------------------------------------------------------

    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version; 0 when it has no events."""
        version = await self.pool.fetchval(queries.STREAM_VERSION, stream_id)
        return version or 0

    async def read_stream(
        self,
        stream_id: str,
        *,
        after_version: int = 0,
        up_to_version: int | None = None,
        as_of: datetime | None = None,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """The stream's events in version order, optionally only up to a version or a moment."""
        if as_of is not None and as_of.tzinfo is None:
            raise InvalidEventError("as_of has no time zone; pass a timezone-aware datetime")
        rows = await self.pool.fetch(
            queries.READ_STREAM, stream_id, after_version, up_to_version, as_of, limit
        )
        return [_recorded(row) for row in rows]

    async def read_all(self, after: Cursor | str | None = START, limit: int = 1000) -> Page:
        """A page of every stream's events in feed order, after ``after``.

        The feed never skips an event whose transaction commits after a later-numbered one: it stops
        below the oldest transaction still in flight, and the next call picks the rest up.
        """
        cursor = after if isinstance(after, Cursor) else Cursor.parse(after)
        if limit < 1:
            raise InvalidEventError(f"limit must be 1 or more, got {limit}")
        rows = await self.pool.fetch(queries.READ_ALL, str(cursor.tx_id), cursor.position, limit)
        events = [_recorded(row) for row in rows]
        return Page(events, events[-1].cursor if events else cursor)

    async def iter_all(
        self, after: Cursor | str | None = START, page_size: int = 1000
    ) -> AsyncIterator[RecordedEvent]:
        """Every event committed so far, in feed order, page by page."""
        cursor = after if isinstance(after, Cursor) else Cursor.parse(after)
        while True:
            page = await self.read_all(cursor, page_size)
            for event in page.events:
                yield event
            if len(page.events) < page_size:
                return
            cursor = page.cursor

    # -- verifying -------------------------------------------------------------------------------

    async def verify(self, stream_id: str) -> VerifyReport:
        """Recompute one stream's hash chain from its stored events; name the first that does not match."""
        # One snapshot for rows and head: an append committing between two reads is no tampering.
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await conn.fetch(queries.VERIFY_ROWS, stream_id)
            head = await conn.fetchrow(queries.STREAM_HEAD, stream_id)
        found = _check_chain(stream_id, rows, head)
        return VerifyReport(1 if rows or head else 0, len(rows), (found,) if found else ())

    async def verify_all(self, batch: int = 500) -> VerifyReport:
        """Verify every stream in the store; report the first break of each broken stream."""
        streams = events = 0
        breaks: list[ChainBreak] = []
        last = ""
        while True:
            ids = [r["stream_id"] for r in await self.pool.fetch(queries.STREAM_IDS, last, batch)]
            for stream_id in ids:
                report = await self.verify(stream_id)
                streams += report.streams_checked
                events += report.events_checked
                breaks.extend(report.breaks)
            if len(ids) < batch:
                return VerifyReport(streams, events, tuple(breaks))
            last = ids[-1]


def _check_chain(stream_id: str, rows: list[asyncpg.Record], head: Any) -> ChainBreak | None:
    prev_hash = ""
    for expected_version, row in enumerate(rows, start=1):

        def broken(reason: str, row: asyncpg.Record = row) -> ChainBreak:
            return ChainBreak(stream_id, row["version"], row["event_id"], row["position"], reason)

        if row["version"] > expected_version:
            return ChainBreak(
                stream_id,
                expected_version,
                None,
                None,
                f"version {expected_version} is missing: the next stored event is version {row['version']} "
                f"(id {row['event_id']}): events were removed",
            )
        if row["version"] < expected_version:
            return broken(f"version {row['version']} is stored twice")
        if row["prev_hash"] != prev_hash:
            return broken("its previous-hash does not match the hash of the event before it")
        try:
            digest = jsoncodec.content_digest(
                row["event_id"],
                row["stream_id"],
                row["type"],
                row["schema_version"],
                jsoncodec.loads(row["data"]),
                jsoncodec.loads(row["metadata"]),
            )
        except (InvalidEventError, ValueError) as err:
            return broken(f"its content cannot be read back: {err}")
        if digest != row["content_digest"]:
            return broken("its content (type, data or metadata) was changed after it was written")
        if jsoncodec.chain_hash(prev_hash, row["version"], row["recorded_at"], digest) != row["hash"]:
            return broken("its hash does not match its content, version and time")
        prev_hash = row["hash"]
    if head is None:
        return None
    if head["version"] > len(rows):
        return ChainBreak(
            stream_id,
            len(rows) + 1,
            None,
            None,
            f"the stream head says version {head['version']}, but the stored events end at version "
            f"{len(rows)}: events were removed",
        )
    if head["version"] < len(rows):
        extra = rows[head["version"]]
        return ChainBreak(
            stream_id,
            extra["version"],
            extra["event_id"],
            extra["position"],
            f"the stream head says version {head['version']}: this event was added behind the store's back",
        )
    if head["last_hash"] != prev_hash:
        last = rows[-1]
        return ChainBreak(
            stream_id,
            last["version"],
            last["event_id"],
            last["position"],
            "the stream head's hash does not match the last event's hash",
        )
    return None
