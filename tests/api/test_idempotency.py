"""Idempotency-Key: the same key returns the same answer and never acts twice; a key is single-use."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI

from eventstore import EventStore
from planloop.api.auth import Role
from tests.api.conftest import MakeToken


async def test_a_repeated_key_returns_the_first_answer_and_stores_events_once(
    http: httpx.AsyncClient, cycle: str, make_token: MakeToken, store: EventStore
) -> None:
    author = await make_token("de-mgr", Role.PLANNER)
    path = f"/cycles/{cycle}/plans/DE/commands/CancelPlan"
    stream = f"plan:{cycle}:DE"
    before = await store.stream_version(stream)
    headers: Any = {**author, "Idempotency-Key": "crm-4711"}
    first = await http.post(path, json={"reason": "merged into FR"}, headers=headers)
    assert first.status_code == 200, first.text
    again = await http.post(path, json={"reason": "merged into FR"}, headers=headers)
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert await store.stream_version(stream) == before + 1
    stored = await store.read_stream(stream)
    assert stored[-1].metadata["request_id"] == "de-mgr:crm-4711"

    reused = await http.post(path, json={"reason": "something else"}, headers=headers)
    assert (reused.status_code, reused.json()["code"]) == (422, "idempotency_key_reused")

    # A refusal is an answer too: replayed as it was, without asking the plan again.
    refused = await http.post(
        f"/cycles/{cycle}/plans/DE/commands/SubmitForApproval",
        json={},
        headers={**author, "Idempotency-Key": "k2"},
    )
    replay = await http.post(
        f"/cycles/{cycle}/plans/DE/commands/SubmitForApproval",
        json={},
        headers={**author, "Idempotency-Key": "k2"},
    )
    assert refused.status_code == replay.status_code == 409 and refused.json() == replay.json()


async def test_concurrent_duplicates_act_once(
    http: httpx.AsyncClient, cycle: str, make_token: MakeToken, store: EventStore
) -> None:
    author = await make_token("fr-mgr", Role.PLANNER)
    stream = f"plan:{cycle}:FR"
    before = await store.stream_version(stream)
    headers: Any = {**author, "Idempotency-Key": "burst-1"}
    answers = await asyncio.gather(
        *(
            http.post(
                f"/cycles/{cycle}/plans/FR/commands/CancelPlan", json={"reason": "burst"}, headers=headers
            )
            for _ in range(5)
        )
    )
    statuses = sorted(a.status_code for a in answers)
    assert 200 in statuses and set(statuses) <= {200, 409}, [a.text for a in answers]
    assert all(a.json()["code"] == "idempotency_key_in_progress" for a in answers if a.status_code == 409)
    assert await store.stream_version(stream) == before + 1
    # Once answered, every repeat gets the answer.
    late = await http.post(
        f"/cycles/{cycle}/plans/FR/commands/CancelPlan", json={"reason": "burst"}, headers=headers
    )
    assert late.status_code == 200 and late.headers["idempotent-replayed"] == "true"


async def test_a_cycle_opened_with_a_key_is_opened_once(http: httpx.AsyncClient, admin: Any) -> None:
    from tests.api.conftest import cycle_definition, unique_cycle

    body = cycle_definition(unique_cycle())
    headers = {**admin, "Idempotency-Key": "open-fy"}
    first = await http.post("/cycles", json=body, headers=headers)
    again = await http.post("/cycles", json=body, headers=headers)
    assert first.status_code == again.status_code == 201 and first.json() == again.json()


async def test_every_write_takes_an_idempotency_key(app: FastAPI) -> None:
    # A question sent by POST (consistency of two checkpoints) changes nothing and needs no key.
    questions = {("post", "/audit/checkpoints/consistency")}
    spec = app.openapi()
    writes = [
        (method, path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in ("post", "put", "patch", "delete") and (method, path) not in questions
    ]
    keyless = [
        f"{method.upper()} {path}"
        for method, path in writes
        if not any(p["name"] == "Idempotency-Key" for p in spec["paths"][path][method].get("parameters", []))
    ]
    assert len(writes) > 40 and not keyless, keyless


async def test_a_key_replays_registrations_and_deletes_instead_of_acting_again(
    http: httpx.AsyncClient, admin: Any, make_token: MakeToken, store: EventStore
) -> None:
    # A source registered without a secret gets a generated one: a retry with the key gets the same secret
    # (without the key it would be replaced by another, which the caller never saw).
    register = {**admin, "Idempotency-Key": "register-crm"}
    first = await http.post("/inbound/sources", json={"source": "crm"}, headers=register)
    again = await http.post("/inbound/sources", json={"source": "crm"}, headers=register)
    assert first.status_code == again.status_code == 201, first.text
    assert again.json()["secret"] == first.json()["secret"] and again.headers["idempotent-replayed"] == "true"
    # Stored sealed, in the source and in the key's stored answer alike.
    stored = await store.pool.fetchval("SELECT secret FROM inbound_sources WHERE source = 'crm'")
    answer = await store.pool.fetchval(
        "SELECT response::text FROM idempotency_keys WHERE key = 'register-crm'"
    )
    assert stored.startswith("sealed:v1:") and first.json()["secret"] not in stored + answer
    other = await http.post("/inbound/sources", json={"source": "crm"}, headers=admin)
    assert other.json()["secret"] != first.json()["secret"]
    # Registered again, the first secret no longer works: its stored answer no longer holds it either.
    late = await http.post("/inbound/sources", json={"source": "crm"}, headers=register)
    assert late.status_code == 201 and late.json()["secret"] is None
    stored = await store.pool.fetchval(
        "SELECT response::text FROM idempotency_keys WHERE key = 'register-crm'"
    )
    assert first.json()["secret"] not in stored

    # A delete retried with its key answers 204 again; without a key the second delete finds nothing.
    revoke = {**admin, "Idempotency-Key": "revoke-crm"}
    gone = await http.delete("/inbound/sources/crm", headers=revoke)
    repeated = await http.delete("/inbound/sources/crm", headers=revoke)
    assert (gone.status_code, repeated.status_code, repeated.content) == (204, 204, b"")
    assert repeated.headers["idempotent-replayed"] == "true"
    assert (await http.delete("/inbound/sources/crm", headers=admin)).status_code == 404

    # Pausing a webhook subscription: the same key, the same answer; another request with it is refused.
    integration = await make_token("erp", Role.INTEGRATION)
    created = await http.post(
        "/webhooks/subscriptions", json={"url": "http://127.0.0.1:9/hook"}, headers=integration
    )
    assert created.status_code == 201, created.text
    path = f"/webhooks/subscriptions/{created.json()['id']}"
    pause = {**integration, "Idempotency-Key": "pause-1"}
    paused = await http.post(f"{path}/pause", headers=pause)
    assert paused.status_code == 200 and paused.json()["active"] is False
    assert (await http.post(f"{path}/resume", headers=integration)).json()["active"] is True
    replayed = await http.post(f"{path}/pause", headers=pause)
    assert replayed.json() == paused.json() and replayed.headers["idempotent-replayed"] == "true"
    reused = await http.post(f"{path}/resume", headers=pause)
    assert (reused.status_code, reused.json()["code"]) == (422, "idempotency_key_reused")
    assert (await http.get("/webhooks/subscriptions", headers=integration)).json()[0]["active"] is True
