"""API tokens: every endpoint checks the token's roles and org-unit scopes, answers 401 without a valid
token and 403 naming what is missing; tokens are stored hashed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from eventstore import EventStore
from planloop.api.auth import Role, revoke_tokens
from tests.api.conftest import MakeToken, cycle_definition

C, U = "FY-NONE", "DE"  # a cycle that does not exist: an allowed request gets past the checks to a 404
PLAN = f"/cycles/{C}/plans/{U}"
HEADLESS = cycle_definition("FY-HEADLESS")
HEADLESS["hierarchy"]["units"][1]["head"] = None  # refused by the domain (422) once the checks pass

NO_SUBSCRIPTION = "/webhooks/subscriptions/00000000-0000-0000-0000-000000000000"

# (method, path, body, the roles that may call it); admin may call everything.
ENDPOINTS: list[tuple[str, str, Any, set[Role]]] = [
    ("GET", f"/cycles/{C}", None, set(Role)),
    ("GET", f"/cycles/{C}/plans", None, set(Role)),
    ("GET", f"/cycles/{C}/plans?waiting_on=me", None, set(Role)),
    ("GET", PLAN, None, set(Role)),
    ("GET", f"{PLAN}/revisions", None, set(Role)),
    ("GET", f"{PLAN}/tracking", None, set(Role)),
    ("GET", "/inbox", None, {Role.APPROVER, Role.LEADERSHIP, Role.AUDITOR}),
    ("GET", "/events", None, {Role.INTEGRATION, Role.AUDITOR, Role.LEADERSHIP}),
    ("GET", "/webhooks/subscriptions", None, {Role.INTEGRATION}),
    ("POST", "/webhooks/subscriptions", {"url": "ftp://not-http"}, {Role.INTEGRATION}),
    ("POST", f"{NO_SUBSCRIPTION}/pause", None, {Role.INTEGRATION}),
    ("POST", f"{NO_SUBSCRIPTION}/resume", None, {Role.INTEGRATION}),
    ("POST", "/cycles", "headless", {Role.LEADERSHIP, Role.INTEGRATION}),
    ("POST", f"/cycles/{C}/commands/CloseCycle", {"reason": "r"}, {Role.LEADERSHIP}),
    ("POST", f"{PLAN}/commands/SubmitForApproval", {}, {Role.PLANNER}),
    ("POST", f"{PLAN}/commands/ApprovePlan", {"content_hash": "0"}, {Role.APPROVER, Role.LEADERSHIP}),
    ("POST", f"{PLAN}/commands/ReopenPlan", {"reason": "r"}, {Role.LEADERSHIP}),
    (
        "POST",
        f"{PLAN}/commands/ExplainDeviation",
        {"deviation_id": "d", "explanation": "e"},
        {
            Role.PLANNER,
            Role.CSF_OWNER,
        },
    ),
    (
        "POST",
        f"{PLAN}/commands/RecordActual",
        {"measure": "revenue", "month": "2027-01", "value": "1", "currency": "EUR", "source": "erp"},
        {Role.PLANNER, Role.CSF_OWNER, Role.INTEGRATION},
    ),
]


async def call(http: httpx.AsyncClient, method: str, path: str, body: Any, headers: Any) -> httpx.Response:
    payload = HEADLESS if body == "headless" else body
    return await http.request(method, path, json=payload, headers=headers)


@pytest.mark.parametrize("role", [*Role, None], ids=[*(r.value for r in Role), "no-token"])
async def test_permission_matrix(http: httpx.AsyncClient, make_token: MakeToken, role: Role | None) -> None:
    headers = await make_token(f"matrix-{role}", role) if role is not None else {}
    wrong: list[str] = []
    for method, path, body, allowed in ENDPOINTS:
        answer = await call(http, method, path, body, headers)
        shown = answer.json()
        code = shown.get("code") if isinstance(shown, dict) else None
        if role is None:
            expected_ok = answer.status_code == 401 and code == "unauthenticated"
        elif role is Role.ADMIN or role in allowed:
            expected_ok = answer.status_code not in (401, 403) or code not in ("forbidden", "unauthenticated")
        else:
            expected_ok = (
                answer.status_code == 403
                and code == "forbidden"
                and "needs the role" in answer.json()["message"]
            )
        if not expected_ok:
            wrong.append(f"{method} {path}: {answer.status_code} {answer.text[:120]}")
    assert not wrong, "\n".join(wrong)


async def test_401_and_403_messages_say_what_to_do(
    http: httpx.AsyncClient, make_token: MakeToken, store: EventStore, cycle: str
) -> None:
    missing = await http.get(f"/cycles/{cycle}")
    assert missing.status_code == 401 and "Authorization: Bearer" in missing.json()["message"]
    assert missing.headers["www-authenticate"] == "Bearer"
    unknown = await http.get(f"/cycles/{cycle}", headers={"Authorization": "Bearer pl_nonsense"})
    assert unknown.status_code == 401 and "unknown or revoked" in unknown.json()["message"]
    basic = await http.get(f"/cycles/{cycle}", headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401

    # Scopes: a principal scoped to EU reads and acts on EU and the units below it, nothing else.
    eu = await make_token("eu-president", Role.PLANNER, scopes=("EU",))
    assert (await http.get(f"/cycles/{cycle}/plans/DE", headers=eu)).status_code == 200
    assert (await http.get(f"/cycles/{cycle}/plans/EU", headers=eu)).status_code == 200
    outside = await http.get(f"/cycles/{cycle}/plans/US", headers=eu)
    assert outside.status_code == 403 and "outside" in outside.json()["message"]
    write = await http.post(f"/cycles/{cycle}/plans/US/commands/SubmitForApproval", json={}, headers=eu)
    assert write.status_code == 403
    company = await http.post("/cycles", json=cycle_definition("FY-X"), headers=eu)
    assert company.status_code == 403

    # Auditors read everything and change nothing.
    auditor = await make_token("auditor-1", Role.AUDITOR)
    assert (await http.get(f"/cycles/{cycle}/plans/US/revisions", headers=auditor)).status_code == 200
    refused = await http.post(
        f"/cycles/{cycle}/plans/US/commands/SubmitForApproval", json={}, headers=auditor
    )
    assert refused.status_code == 403 and "auditor" in refused.json()["message"]

    # A revoked token is refused at once.
    assert await revoke_tokens(store.pool, "auditor-1") == 1
    assert (await http.get(f"/cycles/{cycle}", headers=auditor)).status_code == 401


async def test_tokens_are_stored_hashed(store: EventStore, make_token: MakeToken) -> None:
    headers = await make_token("ops", Role.ADMIN, scopes=("EU",))
    token = headers["Authorization"].removeprefix("Bearer ")
    assert token.startswith("pl_") and len(token) > 40
    rows = await store.pool.fetch("SELECT * FROM api_tokens")
    dumped = repr([dict(r) for r in rows])
    assert token not in dumped and token[3:] not in dumped
    assert rows[0]["principal"] == "ops" and rows[0]["roles"] == ["admin"] and rows[0]["scopes"] == ["EU"]
