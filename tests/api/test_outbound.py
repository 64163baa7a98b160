"""The event feed and webhook subscriptions through the API: cursor paging, a long poll that a command wakes,
and a subscription whose deliveries the API process's dispatcher and sender make."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from eventstore import EventStore
from planloop.api.auth import Role
from planloop.integration import verify_signature
from tests.api.conftest import MakeToken
from tests.api.test_plans import draft
from tests.conftest import free_port


async def test_the_feed_pages_by_cursor_and_a_long_poll_wakes_on_a_command(
    http: httpx.AsyncClient, app: FastAPI, cycle: str, make_token: MakeToken, store: EventStore
) -> None:
    reader = await make_token("crm", Role.INTEGRATION)
    seen: list[tuple[str, int]] = []
    after = None
    while True:
        page = (await http.get("/events", params={"after": after, "limit": 2}, headers=reader)).json()
        if not page["events"]:
            assert page["next_cursor"] == after  # an empty page keeps the cursor
            break
        assert len(page["events"]) <= 2 and page["events"][-1]["cursor"] == page["next_cursor"]
        seen.extend((e["stream_id"], e["version"]) for e in page["events"])
        after = page["next_cursor"]
    assert seen == [(e.stream_id, e.version) for e in [e async for e in store.iter_all()]]
    assert (f"plan:{cycle}:DE", 1) in seen

    # Nothing new: a long poll waits, and the next command wakes it (the app's notifier, not a poll).
    assert app.state.feed_notifier is not None
    waiting = asyncio.create_task(http.get("/events", params={"after": after, "wait": 20}, headers=reader))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    author = await make_token("fr-mgr", Role.PLANNER)
    revised = await http.post(
        f"/cycles/{cycle}/plans/FR/commands/ReviseStrategy", json=draft(cycle, "FR"), headers=author
    )
    assert revised.status_code == 200, revised.text
    woken = (await asyncio.wait_for(waiting, 15)).json()  # well before its 20 s wait runs out
    assert [(e["stream_id"], e["type"]) for e in woken["events"]] == [
        (f"plan:{cycle}:FR", "RevisionRecorded")
    ]
    assert woken["events"][0]["metadata"]["actor"] == "fr-mgr"

    # Scoped tokens and plan authors do not read the company's feed.
    scoped = await make_token("eu-auditor", Role.AUDITOR, scopes=("EU",))
    assert (await http.get("/events", headers=scoped)).status_code == 403
    bad = await http.get("/events", params={"after": "nonsense"}, headers=reader)
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_request")


class Receiver:
    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []

    async def endpoint(self, request: Request) -> Response:
        self.received.append(({k.lower(): v for k, v in request.headers.items()}, await request.body()))
        return Response(status_code=204)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hook, port = Receiver(), free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=[Route("/hook", hook.endpoint, methods=["POST"])]),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield hook, f"http://127.0.0.1:{port}/hook"
    finally:
        server.should_exit = True
        await serving


async def test_a_webhook_subscription_is_managed_and_delivered_to(
    http: httpx.AsyncClient, cycle: str, make_token: MakeToken, receiver: tuple[Receiver, str]
) -> None:
    hook, url = receiver
    crm = await make_token("crm", Role.INTEGRATION)
    body: dict[str, Any] = {"url": url, "event_types": ["PlanSubmitted"], "secret": "s" * 32}
    created = await http.post("/webhooks/subscriptions", json=body, headers=crm)
    assert created.status_code == 201, created.text
    subscription = created.json()
    assert subscription["secret"] == "s" * 32 and subscription["active"]
    listed = (await http.get("/webhooks/subscriptions", headers=crm)).json()
    assert [s["id"] for s in listed] == [subscription["id"]] and "secret" not in listed[0]

    unknown = await http.post(
        "/webhooks/subscriptions", json={**body, "event_types": ["PlanSubmited"]}, headers=crm
    )
    assert unknown.status_code == 422 and "PlanSubmited" in unknown.json()["message"]
    ftp = await http.post("/webhooks/subscriptions", json={"url": "ftp://x"}, headers=crm)
    assert ftp.status_code == 422
    path = f"/webhooks/subscriptions/{subscription['id']}"
    assert (await http.post(f"{path}/pause", headers=crm)).json()["active"] is False
    assert (await http.post(f"{path}/resume", headers=crm)).json()["active"] is True
    missing = await http.post(
        "/webhooks/subscriptions/00000000-0000-0000-0000-000000000000/pause", headers=crm
    )
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")

    # The API process's dispatcher enqueues the submission and its sender delivers it, signed.
    author = await make_token("us-mgr", Role.PLANNER)
    base = f"/cycles/{cycle}/plans/US/commands"
    assert (await http.post(f"{base}/ReviseStrategy", json=draft(cycle, "US"), headers=author)).is_success
    assert (await http.post(f"{base}/SubmitForApproval", json={}, headers=author)).is_success
    deadline = time.monotonic() + 15
    while not hook.received:
        assert time.monotonic() < deadline, "the submission was never delivered"
        await asyncio.sleep(0.05)
    [(headers, sent)] = hook.received
    verify_signature("s" * 32, headers["x-planloop-timestamp"], sent, headers["x-planloop-signature"])
    event = json.loads(sent)
    assert (event["type"], event["stream_id"]) == ("PlanSubmitted", f"plan:{cycle}:US")
    assert headers["x-planloop-event-id"] == event["event_id"]
