"""The outbound feed: cursor paging, long polls that wake on a commit, and the router over HTTP."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx
import pytest
from fastapi import Depends, FastAPI, Header, HTTPException

from eventstore import EventStore, InvalidEventError
from planloop.integration import FeedNotifier, events_router, read_feed
from tests.domain.factory import drafted
from tests.eventstore.test_read import begin_append
from tests.readmodels.plans import PlanWriter


async def test_pages_follow_the_cursor_through_every_event(store: EventStore) -> None:
    w = PlanWriter(store, drafted())
    await w.flush()
    other = PlanWriter(store, drafted(), stream="plan:FY2027:FR-SALES")
    await other.flush()
    seen, after = [], None
    while True:
        page = await read_feed(store, after, limit=3)
        if not page.events:
            break
        seen.extend((e.stream_id, e.version, e.type) for e in page.events)
        after = page.next_cursor
        assert page.events[-1].cursor == after
    assert seen == [
        ("plan:FY2027:DE-AUTOMATION", 1, "PlanOpened"),
        ("plan:FY2027:DE-AUTOMATION", 2, "RevisionRecorded"),
        ("plan:FY2027:FR-SALES", 1, "PlanOpened"),
        ("plan:FY2027:FR-SALES", 2, "RevisionRecorded"),
    ]
    assert (await read_feed(store, after)).next_cursor == after  # an empty page keeps the cursor
    with pytest.raises(InvalidEventError, match="cursor 'x' is not valid"):
        await read_feed(store, "x")
    with pytest.raises(InvalidEventError, match="limit must be between 1 and 1000"):
        await read_feed(store, None, limit=0)


@pytest.mark.parametrize("notified", [True, False], ids=["notify", "poll"])
async def test_a_long_poll_answers_as_soon_as_an_event_commits(
    store: EventStore, database_url: str, notified: bool
) -> None:
    async with FeedNotifier(database_url) as notifier:
        chosen = notifier if notified else None
        waiting = asyncio.create_task(
            read_feed(store, None, wait_seconds=30, notifier=chosen, poll_interval=8 if notified else 0.2)
        )
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await PlanWriter(store, drafted()).flush()
        # Answered before the wait (30 s) ran out and, with a notifier, before its first poll (8 s):
        # so the commit itself woke it.
        page = await asyncio.wait_for(waiting, 6)
    assert [e.type for e in page.events] == ["PlanOpened", "RevisionRecorded"]


async def test_a_long_poll_answers_empty_after_its_wait(store: EventStore, database_url: str) -> None:
    async with FeedNotifier(database_url) as notifier:
        started = time.monotonic()
        page = await read_feed(store, None, wait_seconds=0.6, notifier=notifier)
        elapsed = time.monotonic() - started
    # It waited its whole wait before answering empty (not a busy answer at once).
    assert page.events == [] and page.next_cursor == "0-0"
    assert elapsed >= 0.6


def require_token(authorization: str | None = Header(default=None)) -> None:
    if authorization != "Bearer feed-reader":
        raise HTTPException(401, "no token")


async def test_the_router_serves_the_feed_behind_the_apps_auth(store: EventStore, database_url: str) -> None:
    app = FastAPI()
    app.state.store = store
    app.include_router(events_router(dependencies=[Depends(require_token)]))
    await PlanWriter(store, drafted()).flush()
    transport = httpx.ASGITransport(app=app)
    auth = {"Authorization": "Bearer feed-reader"}
    async with httpx.AsyncClient(transport=transport, base_url="http://planloop") as client:
        assert (await client.get("/events")).status_code == 401
        first = (await client.get("/events", params={"limit": 1}, headers=auth)).json()
        [opened] = first["events"]
        assert opened["type"] == "PlanOpened" and opened["stream_id"] == "plan:FY2027:DE-AUTOMATION"
        assert set(opened) >= {
            "position",
            "cursor",
            "version",
            "event_id",
            "schema_version",
            "data",
            "metadata",
            "recorded_at",
        }
        assert opened["data"]["unit_id"] == "DE-AUTOMATION" and opened["metadata"] == {
            "actor": "system:cycle"
        }
        rest = (await client.get("/events", params={"after": first["next_cursor"]}, headers=auth)).json()
        assert [e["type"] for e in rest["events"]] == ["RevisionRecorded"]

        async with FeedNotifier(database_url) as notifier:
            app.state.feed_notifier = notifier
            polling = asyncio.create_task(
                client.get("/events", params={"after": rest["next_cursor"], "wait": 10}, headers=auth)
            )
            await asyncio.sleep(0.3)
            await PlanWriter(store, drafted(), stream="plan:FY2027:FR-SALES").flush()
            woken = (await asyncio.wait_for(polling, 5)).json()
        assert [e["stream_id"] for e in woken["events"]] == ["plan:FY2027:FR-SALES"] * 2

        bad = await client.get("/events", params={"after": "nonsense"}, headers=auth)
        assert bad.status_code == 400 and "cursor 'nonsense' is not valid" in bad.json()["message"]
        too_long = await client.get("/events", params={"wait": 31}, headers=auth)
        assert too_long.status_code == 422


async def test_over_http_a_late_commit_is_served_before_what_committed_after_it(
    store: EventStore, database_url: str
) -> None:
    """GET /events, not only the store: an event whose transaction took its position first but commits
    last is never skipped by a reader that came by in between."""
    app = FastAPI()
    app.state.store = store
    app.include_router(events_router(dependencies=[Depends(require_token)]))
    auth = {"Authorization": "Bearer feed-reader"}
    slow = await asyncpg.connect(database_url)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://planloop"
    ) as client:
        try:
            await begin_append(slow, "plan:FY2027:SLOW")
            await PlanWriter(store, drafted(), stream="plan:FY2027:FAST").flush()
            held = (await client.get("/events", headers=auth)).json()
            assert held["events"] == [], "the feed served events past a transaction still in flight"
            await slow.execute("COMMIT")
        finally:
            await slow.close()
        after = {"after": held["next_cursor"]} if held["next_cursor"] else {}
        served = (await client.get("/events", params=after, headers=auth)).json()
    assert [e["stream_id"] for e in served["events"]] == ["plan:FY2027:SLOW"] + ["plan:FY2027:FAST"] * 2
