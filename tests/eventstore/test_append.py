"""Contract tests for appending: versions, optimistic concurrency, idempotency, bad input."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from eventstore import (
    ANY,
    NO_STREAM,
    ConcurrencyError,
    DuplicateEventError,
    EventStore,
    InvalidEventError,
    NewEvent,
)


def event(kind: str = "Noted", **data: object) -> NewEvent:
    return NewEvent(uuid.uuid4(), kind, dict(data), {"actor": "u-1"})


async def test_append_returns_new_version_and_positions(store: EventStore) -> None:
    first = await store.append("plan:FY2027:DE", NO_STREAM, [event(n=1), event(n=2)])
    second = await store.append("plan:FY2027:DE", 2, [event(n=3)])
    assert first.version == 2 and len(first.positions) == 2
    assert second.version == 3
    assert second.positions[0] > first.positions[1]
    assert not first.duplicate and not second.duplicate
    assert await store.stream_version("plan:FY2027:DE") == 3
    assert [e.version for e in await store.read_stream("plan:FY2027:DE")] == [1, 2, 3]


async def test_expected_version_any_and_exact(store: EventStore) -> None:
    await store.append("s", ANY, [event()])
    await store.append("s", ANY, [event()])
    assert (await store.append("s", 2, [event()])).version == 3
    assert await store.stream_version("missing") == 0


async def test_conflict_names_stream_expected_and_actual(store: EventStore) -> None:
    await store.append("s", NO_STREAM, [event(), event()])
    with pytest.raises(ConcurrencyError) as caught:
        await store.append("s", 1, [event()])
    assert caught.value.actual == 2
    message = str(caught.value)
    assert "'s'" in message and "version 2" in message and "expected version 1" in message
    with pytest.raises(ConcurrencyError, match="expected no stream"):
        await store.append("s", NO_STREAM, [event()])
    with pytest.raises(ConcurrencyError, match="is at version 0"):
        await store.append("other", 5, [event()])
    assert await store.stream_version("s") == 2
    assert await store.stream_version("other") == 0


async def test_many_concurrent_writers_on_one_stream_write_each_version_once(store: EventStore) -> None:
    writers, per_writer = 24, 5
    conflicts = 0

    async def writer(n: int) -> None:
        nonlocal conflicts
        written = 0
        while written < per_writer:
            version = await store.stream_version("contended")
            try:
                await store.append("contended", version, [event(writer=n, i=written)])
                written += 1
            except ConcurrencyError as err:
                assert err.actual > version
                conflicts += 1

    await asyncio.gather(*(writer(n) for n in range(writers)))
    events = await store.read_stream("contended")
    assert [e.version for e in events] == list(range(1, writers * per_writer + 1))
    assert sorted((e.data["writer"], e.data["i"]) for e in events) == sorted(
        (n, i) for n in range(writers) for i in range(per_writer)
    )
    assert conflicts > 0, "the writers never collided, so optimistic concurrency was not exercised"
    assert (await store.verify("contended")).ok


async def test_racing_first_appends_exactly_one_wins(store: EventStore) -> None:
    results = await asyncio.gather(
        *(store.append("race", NO_STREAM, [event(n=n)]) for n in range(16)), return_exceptions=True
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(err, ConcurrencyError) and err.actual == 1 for err in losers)
    assert len(await store.read_stream("race")) == 1


async def test_retried_append_returns_original_result_and_writes_nothing(store: EventStore) -> None:
    batch = [event(n=1), event(n=2)]
    original = await store.append("s", NO_STREAM, batch)
    await store.append("s", 2, [event(n=3)])
    # The retry still says NO_STREAM: a retry after a lost answer must not fail on the version.
    retried = await store.append("s", NO_STREAM, batch)
    assert retried.duplicate
    assert (retried.version, retried.positions) == (original.version, original.positions)
    assert len(await store.read_stream("s")) == 3


async def test_concurrent_retries_of_one_append_store_it_once(store: EventStore) -> None:
    batch = [event(n=1)]
    results = await asyncio.gather(*(store.append("s", ANY, batch) for _ in range(10)))
    assert sum(not r.duplicate for r in results) == 1
    assert {r.positions for r in results} == {results[0].positions}
    assert len(await store.read_stream("s")) == 1


async def test_same_id_with_other_content_is_refused(store: EventStore) -> None:
    original = event(n=1)
    await store.append("s", NO_STREAM, [original])
    changed = NewEvent(original.event_id, original.type, {"n": 2}, original.metadata)
    with pytest.raises(DuplicateEventError, match="with other content") as caught:
        await store.append("s", ANY, [changed])
    assert caught.value.event_id == original.event_id
    with pytest.raises(DuplicateEventError, match="in another stream"):
        await store.append("elsewhere", ANY, [original])
    assert [e.data for e in await store.read_stream("s")] == [{"n": 1}]
    assert await store.stream_version("elsewhere") == 0


async def test_batch_mixing_stored_and_new_ids_is_refused(store: EventStore) -> None:
    stored = event(n=1)
    await store.append("s", NO_STREAM, [stored])
    with pytest.raises(DuplicateEventError, match="stored whole or not at all"):
        await store.append("s", ANY, [stored, event(n=2)])
    assert await store.stream_version("s") == 1


@pytest.mark.parametrize(
    ("stream", "expected", "events", "message"),
    [
        ("", ANY, [event()], "stream_id must be a non-empty string"),
        ("s", ANY, [], "pass at least one event"),
        ("s", -3, [event()], "expected version -3 is not valid"),
        ("s", "latest", [event()], "expected version 'latest' is not valid"),
    ],
)
async def test_bad_append_arguments_are_refused_clearly(
    store: EventStore, stream: str, expected: object, events: list[NewEvent], message: str
) -> None:
    with pytest.raises(InvalidEventError, match=message):
        await store.append(stream, expected, events)  # type: ignore[arg-type]


async def test_duplicate_id_within_one_batch_is_refused(store: EventStore) -> None:
    one = event()
    with pytest.raises(InvalidEventError, match="appears twice"):
        await store.append("s", ANY, [one, one])
    assert await store.stream_version("s") == 0


def test_new_event_validates_its_fields() -> None:
    with pytest.raises(InvalidEventError, match="non-empty type"):
        NewEvent(uuid.uuid4(), "", {})
    with pytest.raises(InvalidEventError, match="must be a UUID"):
        NewEvent("not-a-uuid", "T", {})  # type: ignore[arg-type]
    with pytest.raises(InvalidEventError, match="schema_version must be 1 or more"):
        NewEvent(uuid.uuid4(), "T", {}, schema_version=0)


async def test_id_held_by_another_stream_is_refused_even_when_the_version_matches(store: EventStore) -> None:
    # The function only looks for stored ids when the version does not match; the unique constraint
    # is the backstop for an id that another stream holds.
    held = event(n=1)
    await store.append("first", NO_STREAM, [held])
    with pytest.raises(DuplicateEventError, match="in another stream") as caught:
        await store.append("second", NO_STREAM, [event(n=0), held])
    assert caught.value.event_id == held.event_id
    assert await store.stream_version("second") == 0
