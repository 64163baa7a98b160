"""Webhooks: deliveries retried with backoff until a real receiver on loopback answers 2xx, each signed
and carrying its event id; a resend after a crash is recognised by event id; inbound signatures checked."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domain import commands as cmd
from eventstore import EventStore
from planloop.integration import (
    SignatureError,
    WebhookDispatcher,
    WebhookSender,
    create_subscription,
    set_subscription_active,
    sign,
    verify_signature,
)
from planloop.integration.sealing import Sealer
from planloop.integration.webhooks import Delivery
from planloop.readmodels import catch_up, reset
from tests.conftest import free_port
from tests.domain.factory import AUTHOR, drafted
from tests.readmodels.plans import PlanWriter

SECRET = "whsec-test"


@dataclass
class Receiver:
    """A webhook receiver that answers 503 to the first ``failures`` attempts at each event."""

    failures: int = 2
    calls: list[tuple[float, dict[str, str], bytes]] = field(default_factory=list)
    processed: dict[str, dict] = field(default_factory=dict)

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.calls.append((time.monotonic(), headers, body))
        event_id = headers["x-planloop-event-id"]
        tries = sum(1 for _, h, _ in self.calls if h["x-planloop-event-id"] == event_id)
        if tries <= self.failures:
            return Response("busy", status_code=503)
        # Deduplicate by event id, as the sender asks receivers to.
        self.processed.setdefault(event_id, json.loads(body))
        return Response(status_code=204)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hook = Receiver()
    port = free_port()
    app = Starlette(routes=[Route("/hook", hook.endpoint, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield hook, f"http://127.0.0.1:{port}/hook"
    finally:
        server.should_exit = True
        await serving


async def deliveries(store: EventStore) -> list[dict]:
    sql = """
        SELECT id, event_id, event_type, attempts, status, last_error
          FROM webhook_deliveries ORDER BY created_at, (body::jsonb ->> 'position')::bigint
    """
    return [dict(r) for r in await store.pool.fetch(sql)]


async def send_until_settled(sender: WebhookSender, store: EventStore, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while await store.pool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"):
        assert time.monotonic() < deadline, await deliveries(store)
        if not await sender.send_due():
            await asyncio.sleep(0.02)


async def test_deliveries_are_retried_with_backoff_until_the_receiver_answers(
    store: EventStore, receiver: tuple[Receiver, str], sealer: Sealer
) -> None:
    hook, url = receiver
    await create_subscription(store.pool, sealer, url, secret=SECRET)
    w = PlanWriter(store, drafted())
    await w.flush()
    assert await catch_up(store, WebhookDispatcher()) == 2
    stored = [e async for e in store.iter_all()]

    async with httpx.AsyncClient(timeout=5) as client:
        sender = WebhookSender(store.pool, client, sealer, base_delay=0.2, jitter=lambda: 1.0)
        await send_until_settled(sender, store)

    rows = await deliveries(store)
    delivery_ids = {r["event_id"]: r["id"] for r in rows}
    assert [(r["event_type"], r["attempts"], r["status"]) for r in rows] == [
        ("PlanOpened", 3, "delivered"),
        ("RevisionRecorded", 3, "delivered"),
    ]
    assert set(hook.processed) == {str(e.event_id) for e in stored}
    for event in stored:
        attempts = [(at, h, b) for at, h, b in hook.calls if h["x-planloop-event-id"] == str(event.event_id)]
        assert [h["x-planloop-attempt"] for _, h, _ in attempts] == ["1", "2", "3"]
        # Doubling backoff: 0.2 s after the first failure, 0.4 s after the second.
        gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(attempts)]
        assert gaps[0] >= 0.19 and gaps[1] >= 0.39, gaps
        for _, headers, body in attempts:
            verify_signature(SECRET, headers["x-planloop-timestamp"], body, headers["x-planloop-signature"])
            sent = json.loads(body)
            assert sent["event_id"] == str(event.event_id) and sent["cursor"] == str(event.cursor)
            assert headers["x-planloop-delivery"] == str(delivery_ids[event.event_id])


class CrashAfterPost(WebhookSender):
    """Dies after the receiver answered 2xx and before the delivery is marked delivered."""

    async def _mark_delivered(self, delivery: Delivery) -> None:
        raise RuntimeError("the sender died")


async def test_a_sender_crash_after_the_post_resends_and_the_receiver_dedupes_by_event_id(
    store: EventStore, receiver: tuple[Receiver, str], sealer: Sealer
) -> None:
    hook, url = receiver
    hook.failures = 0
    await create_subscription(store.pool, sealer, url, secret=SECRET)
    await PlanWriter(store, drafted()).flush()
    await catch_up(store, WebhookDispatcher())
    async with httpx.AsyncClient(timeout=5) as client:
        with pytest.raises(RuntimeError, match="the sender died"):
            await CrashAfterPost(store.pool, client, sealer, lease=0.3).send_due()
        # Within its lease nobody else takes the delivery; after it, another sender sends it again.
        assert await WebhookSender(store.pool, client, sealer).send_due() == 0
        await asyncio.sleep(0.35)
        assert await WebhookSender(store.pool, client, sealer).send_due() == 2
    assert len(hook.calls) == 4 and len(hook.processed) == 2
    assert [(r["attempts"], r["status"]) for r in await deliveries(store)] == [(2, "delivered")] * 2


async def test_subscriptions_filter_event_types_and_pause_and_each_event_is_enqueued_once(
    store: EventStore, sealer: Sealer
) -> None:
    submitted_only = await create_subscription(
        store.pool, sealer, "http://127.0.0.1:9/a", event_types=["PlanSubmitted"]
    )
    paused = await create_subscription(store.pool, sealer, "http://127.0.0.1:9/b")
    assert len(submitted_only.secret) >= 32
    await set_subscription_active(store.pool, paused.id, False)
    w = PlanWriter(store, drafted())
    await w.flush()
    await w.do(cmd.SubmitForApproval, AUTHOR)
    dispatcher = WebhookDispatcher()
    await catch_up(store, dispatcher)

    async def queued() -> dict[str, list[str]]:
        rows = await store.pool.fetch(
            "SELECT subscription_id, event_type FROM webhook_deliveries ORDER BY created_at"
        )
        found: dict[str, list[str]] = {}
        for row in rows:
            found.setdefault(str(row["subscription_id"]), []).append(row["event_type"])
        return found

    # The filtered subscription gets only its type; the paused one gets everything queued, waiting for
    # its resume (regression: paused subscriptions used to lose the events recorded during the pause).
    first = await queued()
    assert first[str(submitted_only.id)] == ["PlanSubmitted"]
    assert first[str(paused.id)][-1] == "PlanSubmitted" and len(first[str(paused.id)]) == w.written
    # Replaying the feed (a reset checkpoint) enqueues nothing twice.
    await reset(store, dispatcher)
    await catch_up(store, dispatcher)
    assert await queued() == first
    with pytest.raises(ValueError, match="must start with http"):
        await create_subscription(store.pool, sealer, "ftp://example.com")
    with pytest.raises(ValueError, match="not a valid URL"):
        await create_subscription(store.pool, sealer, "http://exa mple.com/\thook")


async def test_a_delivery_gives_up_after_its_last_attempt_and_keeps_the_error(
    store: EventStore, sealer: Sealer
) -> None:
    await create_subscription(store.pool, sealer, "http://receiver.test/hook", secret=SECRET)
    await PlanWriter(store, drafted()).flush()
    await catch_up(store, WebhookDispatcher())

    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text="database down")

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        sender = WebhookSender(store.pool, client, sealer, max_attempts=2, base_delay=0.01)
        await send_until_settled(sender, store)
    assert [(r["attempts"], r["status"], r["last_error"]) for r in await deliveries(store)] == [
        (2, "failed", "HTTP 500: database down")
    ] * 2


def test_backoff_doubles_up_to_its_cap_and_is_jittered() -> None:
    sender = WebhookSender(None, None, None, base_delay=1, max_delay=10, jitter=lambda: 1.0)  # type: ignore[arg-type]
    assert [sender.backoff(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 10]
    sender.jitter = lambda: 0.0
    assert sender.backoff(3) == 2


NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
TS = int(NOW.timestamp())
BODY = b'{"event_id": "e-1"}'


def test_an_inbound_webhook_with_a_good_signature_and_fresh_timestamp_is_accepted() -> None:
    verify_signature(SECRET, str(TS), BODY, sign(SECRET, TS, BODY), now=NOW)
    # While a sender rotates secrets it may send both signatures.
    verify_signature(SECRET, TS, BODY, f"{sign('old', TS, BODY)}, {sign(SECRET, TS, BODY)}", now=NOW)


@pytest.mark.parametrize(
    ("timestamp", "body", "signature", "reason"),
    [
        (TS, BODY, sign("wrong-secret", TS, BODY), "does not match the body and timestamp"),
        (TS, b'{"event_id": "e-2"}', sign(SECRET, TS, BODY), "does not match the body and timestamp"),
        (TS - 600, BODY, sign(SECRET, TS - 600, BODY), "600 s old, more than the 300 s allowed"),
        (TS + 600, BODY, sign(SECRET, TS + 600, BODY), "in the future"),
        (TS, BODY, None, "X-Planloop-Signature header is missing"),
        ("yesterday", BODY, sign(SECRET, TS, BODY), "is not a Unix time in seconds"),
    ],
)
def test_an_inbound_webhook_is_refused_with_a_clear_reason(
    timestamp: object, body: bytes, signature: str | None, reason: str
) -> None:
    with pytest.raises(SignatureError, match=reason):
        verify_signature(SECRET, timestamp, body, signature, now=NOW, tolerance=timedelta(minutes=5))  # type: ignore[arg-type]
