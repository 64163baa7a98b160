"""Inbound webhooks: a registered ERP posts signed actuals. A good signature is accepted and takes the
import's path; a bad signature, an old timestamp or an unknown source is refused with 401 and records
nothing; the same signed request twice records once."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from temporalio.testing import WorkflowEnvironment

from eventstore import EventStore
from planloop.api.auth import Role
from planloop.integration.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests.api import executing
from tests.api.conftest import MakeToken


def signed(secret: str, body: bytes, at: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if at is None else at
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


async def test_signed_actuals_are_accepted_and_bad_or_old_signatures_refused(
    http: httpx.AsyncClient,
    admin: Any,
    make_token: MakeToken,
    dev_server_env: WorkflowEnvironment,
    store: EventStore,
) -> None:
    cycle_id, months = await executing.executing_cycle(http, admin, dev_server_env.client, ["C1"], 2)
    stream = f"plan:{cycle_id}:C1"

    # Only admins register sources; the secret is shown once.
    planner = await make_token("someone", Role.PLANNER, Role.INTEGRATION)
    assert (await http.post("/inbound/sources", json={"source": "erp"}, headers=planner)).status_code == 403
    registered = await http.post("/inbound/sources", json={"source": "erp"}, headers=admin)
    assert registered.status_code == 201, registered.text
    secret = registered.json()["secret"]
    assert [s["source"] for s in (await http.get("/inbound/sources", headers=admin)).json()] == ["erp"]
    assert "secret" not in (await http.get("/inbound/sources", headers=admin)).json()[0]

    rows = [
        {"unit": "C1", "measure": "revenue", "month": months[0], "value": "101000.10", "currency": "EUR"},
        {"unit": "C1", "measure": "K01", "month": months[0], "value": 9},
    ]
    body = json.dumps({"cycle_id": cycle_id, "rows": rows}).encode()
    before = await store.stream_version(stream)

    # Refused: a wrong secret, a tampered body, an old timestamp, no signature, an unknown source.
    refusals = [
        ("/inbound/erp/actuals", signed("not-the-secret-at-all", body), "does not match"),
        ("/inbound/erp/actuals", {**signed(secret, body), SIGNATURE_HEADER: sign(secret, 1, b"x")}, "match"),
        ("/inbound/erp/actuals", signed(secret, body, int(time.time()) - 3600), "old"),
        ("/inbound/erp/actuals", {"Content-Type": "application/json"}, "missing"),
        ("/inbound/crm/actuals", signed(secret, body), "no inbound source"),
    ]
    for path, headers, reason in refusals:
        answer = await http.post(path, content=body, headers=headers)
        assert answer.status_code == 401, (reason, answer.text)
        assert reason in answer.json()["message"], answer.json()
    tampered = body.replace(b"101000.10", b"999999.99")
    answer = await http.post("/inbound/erp/actuals", content=tampered, headers=signed(secret, body))
    assert (answer.status_code, answer.json()["code"]) == (401, "invalid_signature")
    assert await store.stream_version(stream) == before

    # Accepted: the rows are recorded as the source's actor and source, with every digit.
    headers = signed(secret, body)
    accepted = await http.post("/inbound/erp/actuals", content=body, headers=headers)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["applied"] == 2
    stored = [e for e in await store.read_stream(stream) if e.type == "ActualRecorded"]
    assert {e.metadata["actor"] for e in stored} == {"inbound:erp"}
    assert {e.data["source"] for e in stored} == {"inbound:erp"}
    assert str(next(e for e in stored if e.data["measure"] == "revenue").data["value"]) == "101000.10"

    # The same signed request again (a retry, or a replay within the five minutes): answered, not re-recorded.
    version = await store.stream_version(stream)
    again = await http.post("/inbound/erp/actuals", content=body, headers=headers)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert await store.stream_version(stream) == version

    # Revoked: refused from now on.
    assert (await http.delete("/inbound/sources/erp", headers=admin)).status_code == 204
    late = await http.post("/inbound/erp/actuals", content=body, headers=signed(secret, body))
    assert late.status_code == 401
