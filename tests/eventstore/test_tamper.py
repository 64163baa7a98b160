"""History cannot be rewritten quietly: the trigger refuses it, and verify() pins what slipped past."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from eventstore import NO_STREAM, EventStore
from tests.eventstore.test_append import event


@pytest.fixture
async def dba(store: EventStore, database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection on a database holding a good stream 'kept' and a 5-event 'plan'."""
    await store.append("kept", NO_STREAM, [event(n=0)])
    await store.append("plan", NO_STREAM, [event(n=n) for n in range(1, 6)])
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


async def tamper(conn: asyncpg.Connection, sql: str, *args: object) -> None:
    """What a database administrator can do: switch the guard off, change rows, switch it on."""
    await conn.execute("ALTER TABLE events DISABLE TRIGGER events_no_update_delete")
    await conn.execute(sql, *args)
    await conn.execute("ALTER TABLE events ENABLE TRIGGER events_no_update_delete")


@pytest.mark.parametrize(
    "statement", ["UPDATE events SET type = 'X'", "DELETE FROM events", "TRUNCATE events"]
)
async def test_trigger_refuses_update_delete_and_truncate(dba: asyncpg.Connection, statement: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await dba.execute(statement)
    assert await dba.fetchval("SELECT count(*) FROM events") == 6


async def test_intact_store_verifies(store: EventStore, dba: asyncpg.Connection) -> None:
    report = await store.verify_all()
    assert report.ok and (report.streams_checked, report.events_checked) == (2, 6)


async def assert_broken_at(store: EventStore, version: int, reason: str) -> None:
    report = await store.verify("plan")
    assert not report.ok
    [found] = report.breaks
    assert (found.stream_id, found.version) == ("plan", version)
    assert reason in found.reason
    whole = await store.verify_all()
    assert [b.stream_id for b in whole.breaks] == ["plan"], "the untouched stream was reported too"


async def test_edited_payload_is_pinned(store: EventStore, dba: asyncpg.Connection) -> None:
    await tamper(dba, """UPDATE events SET data = '{"n": 99}' WHERE stream_id = 'plan' AND version = 3""")
    await assert_broken_at(store, 3, "content (type, data or metadata) was changed")


async def test_edited_metadata_with_recomputed_digest_is_pinned(
    store: EventStore, dba: asyncpg.Connection
) -> None:
    # A careful tamperer also rewrites the stored digest; the chain hash still gives it away.
    row = await dba.fetchrow("SELECT * FROM events WHERE stream_id = 'plan' AND version = 2")
    from eventstore import jsoncodec

    digest = jsoncodec.content_digest(row["event_id"], "plan", row["type"], 1, {"n": 2}, {"actor": "mallory"})
    await tamper(
        dba,
        """UPDATE events SET metadata = '{"actor": "mallory"}', content_digest = $1
            WHERE stream_id = 'plan' AND version = 2""",
        digest,
    )
    await assert_broken_at(store, 2, "hash does not match its content, version and time")


async def test_backdated_event_is_pinned(store: EventStore, dba: asyncpg.Connection) -> None:
    await tamper(
        dba,
        "UPDATE events SET recorded_at = recorded_at - interval '1 day' "
        "WHERE stream_id = 'plan' AND version = 4",
    )
    await assert_broken_at(store, 4, "hash does not match")


async def test_deleted_event_is_pinned(store: EventStore, dba: asyncpg.Connection) -> None:
    await tamper(dba, "DELETE FROM events WHERE stream_id = 'plan' AND version = 2")
    await assert_broken_at(store, 2, "version 2 is missing")


async def test_deleted_last_event_is_pinned(store: EventStore, dba: asyncpg.Connection) -> None:
    await tamper(dba, "DELETE FROM events WHERE stream_id = 'plan' AND version = 5")
    await assert_broken_at(store, 5, "events were removed")


async def test_reordered_events_are_pinned(store: EventStore, dba: asyncpg.Connection) -> None:
    # Swap versions 2 and 3 (through a spare number: the unique constraint checks every row).
    for sql in (
        "UPDATE events SET version = 1000 WHERE stream_id = 'plan' AND version = 2",
        "UPDATE events SET version = 2 WHERE stream_id = 'plan' AND version = 3",
        "UPDATE events SET version = 3 WHERE stream_id = 'plan' AND version = 1000",
    ):
        await tamper(dba, sql)
    await assert_broken_at(store, 2, "previous-hash does not match")


async def test_inserted_event_is_pinned(store: EventStore, dba: asyncpg.Connection) -> None:
    # Insert a forged event in the middle: shift the later ones up and slot it in at version 3.
    await tamper(dba, "UPDATE events SET version = version + 100 WHERE stream_id = 'plan' AND version >= 3")
    await tamper(dba, "UPDATE events SET version = version - 99 WHERE stream_id = 'plan' AND version >= 103")
    await dba.execute("ALTER TABLE events DISABLE TRIGGER USER")
    await dba.execute(
        """INSERT INTO events (stream_id, version, event_id, type, schema_version, data, metadata,
                               recorded_at, content_digest, prev_hash, hash)
           SELECT stream_id, 3, gen_random_uuid(), 'Forged', 1, '{}', '{}', recorded_at,
                  content_digest, hash, hash
             FROM events WHERE stream_id = 'plan' AND version = 2"""
    )
    await dba.execute("ALTER TABLE events ENABLE TRIGGER USER")
    await assert_broken_at(store, 3, "content (type, data or metadata) was changed")


async def test_event_appended_behind_the_stores_back_is_pinned(
    store: EventStore, dba: asyncpg.Connection
) -> None:
    await dba.execute(
        """INSERT INTO events (stream_id, version, event_id, type, schema_version, data, metadata,
                               recorded_at, content_digest, prev_hash, hash)
           SELECT stream_id, 6, gen_random_uuid(), type, 1, data, metadata, recorded_at,
                  content_digest, hash, hash
             FROM events WHERE stream_id = 'plan' AND version = 5"""
    )
    report = await store.verify("plan")
    assert report.breaks[0].version == 6


async def test_a_stream_unknown_to_the_heads_table_is_still_verified(
    store: EventStore, dba: asyncpg.Connection
) -> None:
    await dba.execute(
        """INSERT INTO events (stream_id, version, event_id, type, schema_version, data, metadata,
                               recorded_at, content_digest, prev_hash, hash)
           VALUES ('smuggled', 1, gen_random_uuid(), 'T', 1, '{}', '{}', now(), 'x', '', 'y')"""
    )
    report = await store.verify_all()
    assert [b.stream_id for b in report.breaks] == ["smuggled"]


async def test_regression_verify_raises_no_false_alarm_while_appends_commit(store: EventStore) -> None:
    # verify() read the events and the stream head in two snapshots; an append committing in between
    # looked like removed events.
    import asyncio

    from eventstore import ANY

    stop = False
    appended = asyncio.Event()

    async def appender() -> None:
        while not stop:
            await store.append("live", ANY, [event()])
            appended.set()

    task = asyncio.create_task(appender())
    try:
        # Verify only once appends are landing (on a loaded machine the first one can take a while),
        # and until some committed while verify ran.
        await asyncio.wait_for(appended.wait(), timeout=60)
        reports = [await store.verify("live")]
        while len(reports) < 60 or reports[-1].events_checked == reports[0].events_checked:
            assert len(reports) < 1000, "no append committed during 1,000 verifications"
            reports.append(await store.verify("live"))
    finally:
        stop = True
        await task
    assert all(r.ok for r in reports), [r.breaks for r in reports if not r.ok][:1]
    assert reports[-1].events_checked > reports[0].events_checked
