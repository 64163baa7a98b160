"""Reading streams and the global feed: round trips, as-of reads, gap safety, subscriptions."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import asyncpg
import pytest
from pydantic import BaseModel

from eventstore import ANY, NO_STREAM, Cursor, EventStore, InvalidEventError, NewEvent, Subscription
from tests.eventstore.test_append import event

IST = timezone(timedelta(hours=5, minutes=30))


class Payload(BaseModel):
    amount: Decimal
    due: datetime
    note: str


async def test_decimals_datetimes_and_unicode_survive_a_round_trip(store: EventStore) -> None:
    typed = Payload(
        amount=Decimal("1234567.10"),
        due=datetime(2027, 3, 31, 23, 59, 59, 999999, IST),
        note="Grüße aus Köln, 東京, naïve café ✓ 🚀 e\u0301",
    )
    raw = {
        "exact": Decimal("0.10"),
        "tiny": Decimal("-0.000000001"),
        "huge": 12345678901234567890123,
        "when": datetime(2027, 1, 1, tzinfo=IST),
        "nested": [{"ü": [1, Decimal("2.50"), None, True, False]}],
        "typed": typed.model_dump(mode="json"),
    }
    await store.append("s", NO_STREAM, [NewEvent(uuid.uuid4(), "T", raw, {"actor": "Łukasz"})])
    [stored] = await store.read_stream("s")
    assert stored.data["exact"] == Decimal("0.10") and str(stored.data["exact"]) == "0.10"
    assert stored.data["tiny"] == Decimal("-0.000000001")
    assert stored.data["huge"] == 12345678901234567890123
    assert stored.data["when"] == "2027-01-01T00:00:00+05:30"
    assert stored.data["nested"] == [{"ü": [1, Decimal("2.50"), None, True, False]}]
    back = Payload.model_validate(stored.data["typed"])
    assert back == typed and back.due.utcoffset() == timedelta(hours=5, minutes=30)
    assert str(back.amount) == "1234567.10"
    assert stored.metadata == {"actor": "Łukasz"}
    assert stored.recorded_at.tzinfo is not None
    assert abs(stored.recorded_at - datetime.now(UTC)) < timedelta(minutes=5)


async def test_floats_come_back_as_decimals_never_rounded(store: EventStore) -> None:
    await store.append("s", NO_STREAM, [event(rate=0.1)])
    [stored] = await store.read_stream("s")
    assert stored.data["rate"] == Decimal("0.1")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"bad": "nul\x00byte"}, "NUL character"),
        ({"bad": datetime(2027, 1, 1)}, "has no time zone"),
        ({"bad": Decimal("NaN")}, "is not a JSON number"),
        ({"bad": float("inf")}, "is not a JSON number"),
        ({"bad": {1: "x"}}, "keys must be strings"),
        ({"bad": object()}, "object is not JSON"),
    ],
)
async def test_unstorable_payloads_are_refused_and_nothing_is_written(
    store: EventStore, data: dict, message: str
) -> None:
    with pytest.raises(InvalidEventError, match=message):
        await store.append("s", ANY, [NewEvent(uuid.uuid4(), "T", data)])
    assert await store.stream_version("s") == 0


async def test_read_stream_up_to_a_version_or_a_moment(store: EventStore, database_url: str) -> None:
    await store.append("s", NO_STREAM, [event(n=1), event(n=2)])
    conn = await asyncpg.connect(database_url)
    moment = await conn.fetchval("SELECT clock_timestamp()")
    await conn.close()
    await store.append("s", 2, [event(n=3)])
    assert [e.data["n"] for e in await store.read_stream("s", up_to_version=2)] == [1, 2]
    assert [e.data["n"] for e in await store.read_stream("s", as_of=moment)] == [1, 2]
    assert [e.data["n"] for e in await store.read_stream("s", after_version=1)] == [2, 3]
    assert [e.data["n"] for e in await store.read_stream("s", limit=1)] == [1]
    assert await store.read_stream("s", as_of=moment - timedelta(days=1)) == []
    with pytest.raises(InvalidEventError, match="no time zone"):
        await store.read_stream("s", as_of=datetime(2027, 1, 1))


async def test_read_all_pages_through_every_stream_in_order(store: EventStore) -> None:
    for n in range(7):
        await store.append(f"s{n % 3}", ANY, [event(n=n)])
    seen, cursor = [], Cursor()
    while True:
        page = await store.read_all(cursor, limit=2)
        if not page.events:
            break
        seen.extend(e.data["n"] for e in page.events)
        cursor = page.cursor
    assert seen == list(range(7))
    assert [e.data["n"] async for e in store.iter_all(page_size=3)] == list(range(7))
    # The cursor's text form is what API clients send back.
    assert (await store.read_all(str(cursor))).events == []


def test_cursor_text_is_validated() -> None:
    assert Cursor.parse("12-34") == Cursor(12, 34)
    assert Cursor.parse(None) == Cursor()
    for bad in ("x", "1-2-3", "-1-2", "a-b"):
        with pytest.raises(InvalidEventError, match="cursor"):
            Cursor.parse(bad)


async def begin_append(conn: asyncpg.Connection, stream: str) -> None:
    """Append inside a transaction the test controls, and leave it open."""
    await conn.execute("BEGIN")
    await conn.fetch(
        "SELECT * FROM eventstore_append($1, -1, $2::uuid[], $3::text[], $4::integer[], $5::text[],"
        " $6::text[], $7::text[])",
        stream,
        [uuid.uuid4()],
        ["Late"],
        [1],
        ['{"late": true}'],
        ["{}"],
        ["0" * 64],
    )


async def test_read_all_never_skips_an_event_that_commits_late(store: EventStore, database_url: str) -> None:
    # A takes a position first but commits last; B commits in between with a higher position.
    slow = await asyncpg.connect(database_url)
    try:
        await begin_append(slow, "slow")
        await store.append("fast", NO_STREAM, [event(n="fast")])
        page = await store.read_all()
        assert page.events == [], "the feed passed an in-flight transaction"
        await slow.execute("COMMIT")
    finally:
        await slow.close()
    page = await store.read_all(page.cursor)
    assert [e.stream_id for e in page.events] == ["slow", "fast"]


async def test_read_all_never_skips_a_lower_transaction_holding_a_higher_position(
    store: EventStore, database_url: str
) -> None:
    # B gets its transaction id first but takes its position after A has committed.
    early = await asyncpg.connect(database_url)
    try:
        await early.execute("BEGIN")
        await early.fetchval("SELECT pg_current_xact_id()")
        await store.append("a", NO_STREAM, [event(n="a")])
        first = await store.read_all()
        assert first.events == []
        await early.fetch(
            "SELECT * FROM eventstore_append($1, -1, $2::uuid[], $3::text[], $4::integer[], $5::text[],"
            " $6::text[], $7::text[])",
            "b",
            [uuid.uuid4()],
            ["Late"],
            [1],
            ["{}"],
            ["{}"],
            ["0" * 64],
        )
        await early.execute("COMMIT")
    finally:
        await early.close()
    events = (await store.read_all(first.cursor)).events
    assert [e.stream_id for e in events] == ["b", "a"]
    a, b = events[1], events[0]
    assert b.position > a.position and b.tx_id < a.tx_id


async def test_feed_keeps_each_streams_events_in_version_order(store: EventStore) -> None:
    async def writer(n: int) -> None:
        for i in range(5):
            await store.append(f"s{n % 4}", ANY, [event(n=n, i=i)])

    await asyncio.gather(*(writer(n) for n in range(16)))
    last: dict[str, int] = {}
    async for recorded in store.iter_all(page_size=7):
        assert recorded.version == last.get(recorded.stream_id, 0) + 1
        last[recorded.stream_id] = recorded.version
    assert sum(last.values()) == 80


async def test_subscription_is_woken_by_notify_and_resumes_from_its_cursor(store: EventStore) -> None:
    await store.append("s", NO_STREAM, [event(n=0)])
    # A poll interval far longer than the test: only NOTIFY can wake it in time.
    async with Subscription(store, poll_interval=60) as subscription:
        assert [e.data["n"] for e in await subscription.wait(timeout=5)] == [0]
        waiting = asyncio.create_task(subscription.wait())
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await store.append("s", 1, [event(n=1)])
        woken = await asyncio.wait_for(waiting, timeout=5)
        assert [e.data["n"] for e in woken] == [1]
        assert await subscription.wait(timeout=0.2) == []
        cursor = subscription.cursor
    await store.append("s", 2, [event(n=2)])
    received = []
    async for recorded in Subscription(store, cursor, poll_interval=0.1):
        received.append(recorded.data["n"])
        break
    assert received == [2]
