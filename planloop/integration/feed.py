"""The outbound feed: every event in global order, paged by cursor, with long polling.

``GET /events?after=CURSOR&limit=N&wait=SECONDS`` answers the events after the cursor (the store's
gap-safe order: an event whose transaction commits late is never passed over) and the cursor to send
next. With nothing new it holds the request up to ``wait`` seconds and answers as soon as an event
commits: a NOTIFY wakes it at once, and a short poll covers what NOTIFY cannot say (an event that
became readable only when an older, unrelated transaction ended).
"""

# No `from __future__ import annotations`: FastAPI must resolve the route's Annotated dependencies,
# which name the factory's local arguments.

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Final
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from eventstore import Cursor, EventStore, InvalidEventError, RecordedEvent
from eventstore.queries import LISTEN_CHANNEL

#: Longest a request may be held open, so proxies and clients with common timeouts are not cut off.
MAX_WAIT_SECONDS: Final = 30.0
MAX_LIMIT: Final = 1000
#: Channel the event store's append notifies on commit.


class FeedEvent(BaseModel):
    """One event as the feed publishes it. ``event_id`` is what receivers deduplicate on."""

    model_config = ConfigDict(frozen=True)

    position: int
    cursor: str
    stream_id: str
    version: int
    event_id: UUID
    type: str
    schema_version: int
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime


class FeedPage(BaseModel):
    """A page of the feed; pass ``next_cursor`` as ``after`` to continue (it is the same cursor when
    the page is empty)."""

    model_config = ConfigDict(frozen=True)

    events: list[FeedEvent]
    next_cursor: str


def feed_event(recorded: RecordedEvent) -> FeedEvent:
    return FeedEvent(
        position=recorded.position,
        cursor=str(recorded.cursor),
        stream_id=recorded.stream_id,
        version=recorded.version,
        event_id=recorded.event_id,
        type=recorded.type,
        schema_version=recorded.schema_version,
        data=recorded.data,
        metadata=recorded.metadata,
        recorded_at=recorded.recorded_at,
    )


class FeedNotifier:
    """One LISTEN connection per process that wakes every long-polling request at once.

    Requests must not each hold a pooled connection while they wait (thirty waiting clients would
    starve the pool), so they share this one. A waiter takes ``signal()`` *before* it reads, so an
    event that commits during the read still wakes it.
    """

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: asyncpg.Connection | None = None
        self._signal = asyncio.Event()

    async def start(self) -> "FeedNotifier":
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self.dsn)
            await self._conn.add_listener(LISTEN_CHANNEL, self._notified)
        return self

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(asyncpg.InterfaceError, OSError):
                await self._conn.close()
            self._conn = None

    async def __aenter__(self) -> "FeedNotifier":
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def _notified(self, *_: object) -> None:
        # Wake everyone waiting on this generation; later waiters get a fresh one.
        self._signal.set()
        self._signal = asyncio.Event()

    def signal(self) -> asyncio.Event:
        """An event set by the next notification after this call."""
        return self._signal


def _limits(limit: int, wait_seconds: float) -> float:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidEventError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    if wait_seconds < 0:
        raise InvalidEventError(f"wait must be 0 or more seconds, got {wait_seconds}")
    return min(wait_seconds, MAX_WAIT_SECONDS)


async def read_feed(
    store: EventStore,
    after: str | None,
    limit: int = 100,
    wait_seconds: float = 0,
    *,
    notifier: FeedNotifier | None = None,
    poll_interval: float = 0.5,
) -> FeedPage:
    """The events after cursor ``after`` (the start when None), at most ``limit`` of them.

    When there are none it waits up to ``wait_seconds`` (capped at 30 s) for one to commit. Raises
    InvalidEventError for a malformed cursor or an out-of-range limit or wait.
    """
    cursor = Cursor.parse(after)
    wait = _limits(limit, wait_seconds)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        signal = notifier.signal() if notifier is not None else None
        page = await store.read_all(cursor, limit)
        remaining = deadline - loop.time()
        if page.events or remaining <= 0:
            return FeedPage(events=[feed_event(e) for e in page.events], next_cursor=str(page.cursor))
        pause = min(poll_interval, remaining)
        if signal is None:
            await asyncio.sleep(pause)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), pause)


def app_store(request: Request) -> EventStore:
    """The store the planloop API keeps in ``app.state.store``."""
    return request.app.state.store


def app_notifier(request: Request) -> FeedNotifier | None:
    """The notifier in ``app.state.feed_notifier``, if the app started one (else requests poll)."""
    return getattr(request.app.state, "feed_notifier", None)


def events_router(
    *,
    get_store: Callable[..., EventStore] = app_store,
    get_notifier: Callable[..., FeedNotifier | None] = app_notifier,
    dependencies: Sequence[Any] | None = None,
) -> APIRouter:
    """``GET /events``: the feed. Mount with ``app.include_router(events_router(dependencies=[auth]))``.

    ``get_store`` and ``get_notifier`` are FastAPI dependencies; by default they read
    ``app.state.store`` and ``app.state.feed_notifier``.
    """
    router = APIRouter(dependencies=list(dependencies or ()), tags=["feed"])

    @router.get("/events", response_model=FeedPage)
    async def events(
        store: Annotated[EventStore, Depends(get_store)],
        notifier: Annotated[FeedNotifier | None, Depends(get_notifier)],
        after: Annotated[
            str | None, Query(description="The cursor a previous page returned; omit to start.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Most events in one page.")] = 100,
        wait: Annotated[
            float,
            Query(ge=0, le=MAX_WAIT_SECONDS, description="Seconds to wait for an event when none is new."),
        ] = 0,
    ) -> Any:
        try:
            return await read_feed(store, after, limit, wait, notifier=notifier)
        except InvalidEventError as err:
            return JSONResponse(status_code=400, content={"code": "invalid_request", "message": str(err)})

    return router
