"""Idempotency-Key: the same key returns the same answer and never acts twice; a key is single-use."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

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
