"""The API process's background work, run by the app's lifespan (`planloop api` and `planloop up` run it):

* a FeedNotifier: one LISTEN connection that wakes every long-polling ``GET /events`` at once;
* the projector: the read models (plan list, approvals inbox, tracking) and the webhook dispatcher, each
  behind its checkpoint;
* the webhook sender: POSTs due deliveries.

Why the API process and not the workers: there are many workers (docker-compose runs three) and usually one
API, and the API is what reads the read models. Two projectors would still be correct (a projection's rows
and its checkpoint change in one transaction, and a batch whose checkpoint moved is dropped), only wasteful;
so the projector also takes a PostgreSQL advisory lock and only the holder projects. A second API replica
waits as a standby and takes over when the holder's connection goes. Senders may run in every API process:
each claims deliveries with ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

import asyncpg
import httpx

from eventstore import EventStore
from planloop.integration import FeedNotifier, WebhookDispatcher, WebhookSender
from planloop.integration.sealing import Sealer
from planloop.integration.webhooks import check_target
from planloop.logging import get_logger
from planloop.readmodels import Projection, Projector, all_projections

log = get_logger(__name__)

#: The session advisory lock only one projector holds (``"projectr"`` as an int). The event store's
#: per-stream locks are transaction locks on hashes of stream ids and its migrator's is another constant.
PROJECTOR_LOCK: Final = 0x70726F6A65637472
TRY_LOCK: Final = "SELECT pg_try_advisory_lock($1)"
UNLOCK: Final = "SELECT pg_advisory_unlock($1)"


@dataclass
class BackgroundWork:
    """What runs beside the API; ``notifier`` is None when the database's DSN is unknown (requests poll)."""

    notifier: FeedNotifier | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


async def project_while_holding_lock(
    store: EventStore,
    stop: asyncio.Event,
    database_url: str | None = None,
    *,
    standby_interval: float = 5.0,
    poll_interval: float = 1.0,
) -> None:
    """Run the projector while this process holds the projector lock; wait as a standby otherwise.

    The lock lives on a connection of its own (taken from the pool only when the DSN is unknown), so it
    does not shrink the pool the requests share.
    """
    standing_by = False
    while not stop.is_set():
        async with _lock_connection(store, database_url) as conn:
            if await conn.fetchval(TRY_LOCK, PROJECTOR_LOCK):
                log.info("projector running", projections=[p.name for p in _projections()])
                try:
                    await Projector(store, _projections(), poll_interval=poll_interval).run(stop)
                finally:
                    with contextlib.suppress(Exception):
                        await conn.fetchval(UNLOCK, PROJECTOR_LOCK)
                return
        if not standing_by:
            log.info("another process runs the projector; standing by", retry_every=standby_interval)
            standing_by = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), standby_interval)


@contextlib.asynccontextmanager
async def _lock_connection(store: EventStore, database_url: str | None) -> AsyncIterator[asyncpg.Connection]:
    if database_url is None:
        async with store.pool.acquire() as pooled:
            yield pooled
        return
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            await conn.close()


def _projections() -> list[Projection]:
    return [*all_projections(), WebhookDispatcher()]


async def keep_running(
    name: str, run: Callable[[], Awaitable[None]], stop: asyncio.Event, max_backoff: float = 30.0
) -> None:
    """Run ``run()`` until ``stop``; restart it with backoff when it fails (a lost connection, a bug)."""
    backoff = 1.0
    while not stop.is_set():
        try:
            await run()
        except Exception:
            log.exception("background task failed; restarting", task=name, retry_in=backoff)
        else:
            if stop.is_set():
                return
            log.warning("background task ended early; restarting", task=name, retry_in=backoff)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), backoff)
        backoff = min(backoff * 2, max_backoff)


@contextlib.asynccontextmanager
async def background_work(
    store: EventStore, database_url: str | None, sealer: Sealer, *, private_targets: bool = False
) -> AsyncIterator[BackgroundWork]:
    """Start the notifier, the projector and the webhook sender; stop them on exit. Unless
    ``private_targets``, the sender refuses webhook targets that resolve to non-public addresses."""
    stop = asyncio.Event()
    work = BackgroundWork()
    if database_url:
        work.notifier = await FeedNotifier(database_url).start()
    else:
        log.warning("no database URL: long polls of GET /events poll instead of waking on NOTIFY")
    async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as http:
        guard = None if private_targets else check_target
        sender = WebhookSender(store.pool, http, sealer, target_guard=guard)
        work.tasks = [
            asyncio.create_task(
                keep_running(
                    "projector", lambda: project_while_holding_lock(store, stop, database_url), stop
                ),
                name="projector",
            ),
            asyncio.create_task(
                keep_running("webhook sender", lambda: sender.run(stop), stop), name="webhooks"
            ),
        ]
        try:
            yield work
        finally:
            stop.set()
            _, pending = await asyncio.wait(work.tasks, timeout=10)
            for task in pending:
                task.cancel()
            await asyncio.gather(*work.tasks, return_exceptions=True)
            if work.notifier is not None:
                await work.notifier.close()
