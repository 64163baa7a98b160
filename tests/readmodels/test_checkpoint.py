"""The checkpoint moves with the rows: a crash applies nothing, a retry applies each event once, and
an event that commits late is never passed over."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import pytest

from domain import commands as cmd
from domain import encode_event
from eventstore import Cursor, EventStore, RecordedEvent
from planloop.readmodels import PlanListProjection, Projection, catch_up, checkpoint, list_plans, run_batch
from tests.domain.factory import AUTHOR, Harness, drafted, open_plan
from tests.readmodels.plans import PlanWriter


class Crash(Exception):
    pass


class Ledger(Projection):
    """Records every event it applies; refuses a second application by the primary key."""

    name = "ledger"
    reset_statements = ("DELETE FROM ledger",)
    decodes = False

    def __init__(self, crash_at: int | None = None) -> None:
        self.crash_at = crash_at
        self.calls = 0

    async def apply(self, conn: asyncpg.Connection, recorded: RecordedEvent, decoded: Any) -> None:
        self.calls += 1
        await conn.execute("INSERT INTO ledger (event_id) VALUES ($1)", recorded.event_id)
        if self.calls == self.crash_at:
            raise Crash(f"crashed while applying event {self.calls}")


@pytest.fixture
async def ledger(store: EventStore) -> None:
    await store.pool.execute("CREATE TABLE ledger (event_id uuid PRIMARY KEY)")


async def stored_ids(store: EventStore) -> list[uuid.UUID]:
    return [e.event_id async for e in store.iter_all()]


async def test_a_crash_mid_batch_leaves_rows_and_checkpoint_and_the_rerun_applies_once(
    store: EventStore, ledger: None
) -> None:
    w = PlanWriter(store, drafted())
    await w.flush()
    await w.do(cmd.SubmitForApproval, AUTHOR)
    ids = await stored_ids(store)
    assert len(ids) == 3  # opened, first revision, submitted

    # Batches of two: the first commits, the second crashes after writing a row of its own.
    with pytest.raises(Crash):
        await catch_up(store, Ledger(crash_at=3), batch_size=2)
    assert [r["event_id"] for r in await store.pool.fetch("SELECT event_id FROM ledger")] == ids[:2]
    after_first = (await store.read_all(None, 2)).cursor
    assert await checkpoint(store, "ledger") == after_first

    rerun = Ledger()
    assert await catch_up(store, rerun, batch_size=2) == 1
    assert rerun.calls == 1
    assert sorted(r["event_id"] for r in await store.pool.fetch("SELECT event_id FROM ledger")) == sorted(ids)
    assert await catch_up(store, Ledger(), batch_size=2) == 0


async def test_a_plan_projection_that_crashes_writes_nothing(store: EventStore) -> None:
    class Failing(PlanListProjection):
        async def write(self, *args: Any) -> None:
            await super().write(*args)
            raise Crash("after the row was written")

    w = PlanWriter(store, drafted())
    await w.flush()
    with pytest.raises(Crash):
        await run_batch(store, Failing())
    assert await list_plans(store.pool) == []
    assert await store.pool.fetchval("SELECT count(*) FROM projection_plan_states") == 0
    assert await checkpoint(store, "plan_list") == Cursor()
    await catch_up(store, PlanListProjection())
    [plan] = await list_plans(store.pool)
    assert plan.version == 2


async def test_a_batch_read_before_another_runner_moved_the_checkpoint_is_dropped(
    store: EventStore, ledger: None
) -> None:
    class RacingStore(EventStore):
        """Lets another runner apply the batch between this runner's read and its transaction."""

        async def read_all(self, after: Any = None, limit: int = 1000) -> Any:
            page = await super().read_all(after, limit)
            await catch_up(EventStore(self.pool), Ledger())
            return page

    await PlanWriter(store, drafted()).flush()
    result = await run_batch(RacingStore(store.pool), Ledger())
    assert (result.moved, result.applied) == (True, 0)
    assert await store.pool.fetchval("SELECT count(*) FROM ledger") == 2


async def test_the_projection_never_skips_an_event_that_commits_late(
    store: EventStore, database_url: str
) -> None:
    late = Harness()
    late.run(open_plan(unit_id="FR-SALES"))
    [opened] = late.events
    slow = await asyncpg.connect(database_url)
    try:
        # FR-SALES takes its transaction id and position first but commits last.
        await slow.execute("BEGIN")
        await slow.fetch(
            "SELECT * FROM eventstore_append($1, -1, $2::uuid[], $3::text[], $4::integer[], $5::text[],"
            " $6::text[], $7::text[])",
            "plan:FY2027:FR-SALES",
            [uuid.uuid4()],
            [opened.type],
            [opened.schema_version],
            [json.dumps(encode_event(opened))],
            ["{}"],
            ["0" * 64],
        )
        await PlanWriter(store, drafted()).flush()
        projection = PlanListProjection()
        assert await catch_up(store, projection) == 0, "the projection passed an in-flight transaction"
        await slow.execute("COMMIT")
    finally:
        await slow.close()
    assert await catch_up(store, projection) == 3
    assert [p.unit_id for p in await list_plans(store.pool)] == ["DE-AUTOMATION", "FR-SALES"]
