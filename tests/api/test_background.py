"""The API process's projector: of two processes on one database only the holder of the advisory lock
projects; the other stands by and takes over when the holder stops."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from eventstore import EventStore
from planloop.api.background import PROJECTOR_LOCK, project_while_holding_lock
from planloop.readmodels import list_plans
from tests.domain.factory import drafted
from tests.readmodels.plans import PlanWriter


async def eventually(check: Callable[[], Awaitable[object]], timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "never happened"
        await asyncio.sleep(0.05)


async def test_one_projector_at_a_time_and_a_standby_takes_over(store: EventStore, database_url: str) -> None:
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    first = second = None
    try:
        first = asyncio.create_task(project_while_holding_lock(store, stop_first, database_url))
        await PlanWriter(store, drafted()).flush()
        await eventually(lambda: list_plans(store.pool))
        second = asyncio.create_task(
            project_while_holding_lock(store, stop_second, database_url, standby_interval=0.1)
        )
        await asyncio.sleep(0.3)
        holders = """
            SELECT count(*) FROM pg_locks
             WHERE locktype = 'advisory' AND granted AND classid::bigint = $1 AND objid::bigint = $2
        """
        key = (PROJECTOR_LOCK >> 32, PROJECTOR_LOCK & 0xFFFFFFFF)
        assert await store.pool.fetchval(holders, *key) == 1
        assert not second.done()

        stop_first.set()
        await asyncio.wait_for(first, 5)
        other = PlanWriter(store, drafted(), stream="plan:FY2027:FR-SALES")

        async def two_plans_listed() -> bool:
            return len(await list_plans(store.pool)) == 2

        await other.flush()
        await eventually(two_plans_listed)  # projected by the standby
        stop_second.set()
        await asyncio.wait_for(second, 5)
    finally:  # a failed check must not leave a projector holding the pool's connections
        stop_first.set()
        stop_second.set()
        await asyncio.gather(*(t for t in (first, second) if t is not None), return_exceptions=True)
