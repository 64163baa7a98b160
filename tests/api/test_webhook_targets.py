"""Webhook targets inside the network (SSRF): refused at subscription when the URL names such an address,
and before each POST when a name resolves to one, unless PLANLOOP_WEBHOOK_PRIVATE_TARGETS allows them (the
other API tests' receivers listen on loopback, so their app allows them)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from eventstore import EventStore
from planloop.api import create_app
from planloop.api.auth import Role, create_token
from planloop.integration import WebhookSender, create_subscription
from planloop.integration.webhooks import resolved_target_refusal, target_refusal
from planloop.settings import Settings

REFUSED = [
    "http://127.0.0.1:9/hook",
    "http://localhost:8080/hook",
    "http://api.localhost/hook",
    "http://10.0.0.5/hook",
    "http://192.168.1.20/hook",
    "http://169.254.169.254/latest/meta-data",  # a cloud's metadata service
    "http://0.0.0.0/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[fe80::1]/hook",
    "http://2130706433/hook",  # 127.0.0.1 written as a number
    "http://0x7f.1/hook",
]
ALLOWED = ["https://hooks.example.com/planloop", "http://93.184.216.34/hook", "https://[2606:4700::1111]/x"]


@pytest.mark.parametrize("url", REFUSED)
def test_urls_naming_internal_addresses_are_refused(url: str) -> None:
    reason = target_refusal(url)
    assert reason is not None and "PLANLOOP_WEBHOOK_PRIVATE_TARGETS=true" in reason


@pytest.mark.parametrize("url", ALLOWED)
def test_public_addresses_and_names_pass_the_url_check(url: str) -> None:
    assert target_refusal(url) is None


async def test_the_subscription_is_refused_unless_the_setting_allows_it(
    store: EventStore, dev_server_env: WorkflowEnvironment, database_url: str
) -> None:
    token, _ = await create_token(store.pool, "crm", [Role.INTEGRATION])
    headers = {"Authorization": f"Bearer {token}"}
    for allowed in (False, True):
        settings = Settings(database_url=database_url, webhook_private_targets=allowed)
        app = create_app(settings, store=store, client=dev_server_env.client)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://planloop.test"
        ) as http:
            answer = await http.post(
                "/webhooks/subscriptions", json={"url": "http://169.254.169.254/hook"}, headers=headers
            )
            if allowed:
                assert answer.status_code == 201, answer.text
            else:
                assert answer.status_code == 422 and answer.json()["code"] == "invalid_request"
                assert "not a public address" in answer.json()["message"]
                assert await store.pool.fetchval("SELECT count(*) FROM webhook_subscriptions") == 0
    assert await store.pool.fetchval("SELECT count(*) FROM webhook_subscriptions") == 1


async def test_the_sender_fails_a_delivery_to_a_name_that_resolves_inside_without_contacting_it(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A name passes the URL check; this one resolves (in this test's resolver) to a private address.
    async def resolve(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        assert (host, port) == ("hooks.corp.example", 80)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port))]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", resolve)
    assert target_refusal("http://hooks.corp.example/hook") is None
    subscription = await create_subscription(store.pool, "http://hooks.corp.example/hook", secret="s" * 16)
    await store.pool.execute(
        "INSERT INTO webhook_deliveries (id, subscription_id, event_id, event_type, body) "
        "VALUES ($1, $2, $3, 'PlanSubmitted', '{}')",
        uuid.uuid4(),
        subscription.id,
        uuid.uuid4(),
    )
    contacted: list[Any] = []

    def receive(request: httpx.Request) -> httpx.Response:
        contacted.append(request)
        return httpx.Response(204)

    async with httpx.AsyncClient(transport=httpx.MockTransport(receive)) as client:
        sender = WebhookSender(store.pool, client, target_guard=resolved_target_refusal)
        assert await sender.send_due() == 1
        assert await sender.send_due() == 0  # failed at once: nothing left to retry
    row = await store.pool.fetchrow("SELECT status, attempts, last_error FROM webhook_deliveries")
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert row["last_error"].startswith("refused target: ") and "resolves to 10.1.2.3" in row["last_error"]
    assert contacted == []


async def test_without_a_guard_the_sender_posts_to_any_target(store: EventStore) -> None:
    subscription = await create_subscription(store.pool, "http://127.0.0.1:9/hook", secret="s" * 16)
    await store.pool.execute(
        "INSERT INTO webhook_deliveries (id, subscription_id, event_id, event_type, body) "
        "VALUES ($1, $2, $3, 'PlanSubmitted', '{}')",
        uuid.uuid4(),
        subscription.id,
        uuid.uuid4(),
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(204))) as client:
        assert await WebhookSender(store.pool, client).send_due() == 1
    assert await store.pool.fetchval("SELECT status FROM webhook_deliveries") == "delivered"
