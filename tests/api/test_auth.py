"""API tokens: every endpoint checks the token's roles and org-unit scopes, answers 401 without a valid
token and 403 naming what is missing; tokens are stored hashed.

``MATRIX`` is the permission matrix: one row per route of the app (method and path template), with the roles
that may call it. ``test_every_route_has_a_row`` fails when the app has a route without a row (or a row
names a route the app no longer has), so a new endpoint cannot ship without its permissions checked here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from domain.execution import Team
from eventstore import EventStore
from planloop.api.auth import Role, revoke_tokens
from planloop.integration.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests.api.conftest import MakeToken, cycle_definition
from tests.workflows import scenario

C, U = "FY-NONE", "DE"  # a cycle that does not exist: an allowed request gets past the checks to a 404
PLAN = f"/cycles/{C}/plans/{U}"
PLAN_T = "/cycles/{cycle_id}/plans/{unit_id}"
HEADLESS = cycle_definition("FY-HEADLESS")
HEADLESS["hierarchy"]["units"][1]["head"] = None  # refused by the domain (422) once the checks pass
NO_SUBSCRIPTION = "/webhooks/subscriptions/00000000-0000-0000-0000-000000000000"
SOURCE = "matrix-erp"  # registered by the matrix test, so a request without a signature is a bad signature
MONTHS = tuple(f"2027-{m:02d}" for m in range(1, 13))

EVERY_ROLE = frozenset(Role)
ADMIN_ONLY: frozenset[Role] = frozenset()  # admins may call every route; these only admins
PUBLIC = "public"  # no token needed
SIGNED = "signed"  # authenticated by the source's HMAC signature; a token neither grants nor is needed


@dataclass(frozen=True)
class Row:
    method: str
    route: str  # the path template as the app declares it
    allowed: frozenset[Role] | str
    path: str = ""  # the concrete path called (the template when empty)
    body: Any = None
    files: Any = None
    company_wide: bool = False  # refused to tokens scoped to org units, whatever their roles
    params: dict[str, Any] = field(default_factory=dict)


R = Role
PLANNER, APPROVAL, LEAD = (
    frozenset({R.PLANNER}),
    frozenset({R.APPROVER, R.LEADERSHIP}),
    frozenset({R.LEADERSHIP}),
)
PLANNER_LEAD = frozenset({R.PLANNER, R.LEADERSHIP})
ACTUALS = frozenset({R.PLANNER, R.CSF_OWNER, R.INTEGRATION})
CSF = scenario.csf("C1", Team.SALES, "owner", MONTHS).model_dump(mode="json")
CONTENT = scenario.content("DE", MONTHS).model_dump(mode="json")
ACTUAL = {"measure": "revenue", "month": "2027-01", "value": "1", "currency": "EUR", "source": "erp"}

# Plan commands: (name, body, roles). The body is valid, so the role check is what answers.
COMMANDS: list[tuple[str, dict[str, Any], frozenset[Role]]] = [
    ("ReviseStrategy", {"content": CONTENT, "reason": "r"}, PLANNER),
    ("SubmitForApproval", {}, PLANNER),
    ("AcceptCounterProposal", {}, PLANNER),
    ("ApprovePlan", {"content_hash": "0"}, APPROVAL),
    ("RequestChanges", {"content_hash": "0", "comment": "c"}, APPROVAL),
    ("RejectPlan", {"content_hash": "0", "reason": "r"}, APPROVAL),
    (
        "DelegateApproval",
        {"delegate": "d", "starts": "2027-01-01T00:00:00Z", "ends": "2027-01-08T00:00:00Z"},
        APPROVAL,
    ),
    ("ReopenPlan", {"reason": "r"}, LEAD),
    ("CancelPlan", {"reason": "r"}, PLANNER_LEAD),
    ("StartExecutionPlanning", {"sales_lead": "s", "marketing_lead": "m"}, PLANNER),
    ("DefineCsf", {"csf": CSF}, PLANNER),
    ("RemoveCsf", {"csf_id": "C1"}, PLANNER),
    ("AssignCsfOwner", {"csf_id": "C1", "owner": "o"}, PLANNER),
    ("ConfirmAlignment", {"team": "sales"}, frozenset({R.PLANNER, R.CSF_OWNER})),
    ("StartExecution", {}, PLANNER),
    ("RecordActual", ACTUAL, ACTUALS),
    ("CorrectActual", {**ACTUAL, "reason": "r"}, ACTUALS),
    ("RecordActuals", {"actuals": [ACTUAL]}, ACTUALS),
    ("ExplainDeviation", {"deviation_id": "d", "explanation": "e"}, frozenset({R.PLANNER, R.CSF_OWNER})),
    ("IssueMonthlyReport", {"month": "2027-01"}, PLANNER_LEAD),
    ("HoldQuarterlyReview", {"quarter": 1, "attendees": ["a"]}, PLANNER_LEAD),
    ("CloseExecutionPeriod", {}, LEAD),
    ("ScorePlan", {"plan_quality": 3, "execution_effectiveness": 3}, LEAD),
    ("RecordLesson", {"text": "t"}, PLANNER_LEAD),
    ("RefineStrategy", {"content": CONTENT, "reason": "r", "lesson_links": []}, PLANNER),
]

SCHEDULERS = frozenset({R.LEADERSHIP, R.INTEGRATION})
REMINDER = {"schedule_id": "matrix-reminder", "kind": "actuals_reminder", "cycle_id": C}

MATRIX: list[Row] = [
    Row("GET", "/health", PUBLIC),
    # Cycles.
    Row("POST", "/cycles", frozenset({R.LEADERSHIP, R.INTEGRATION}), body=HEADLESS, company_wide=True),
    Row(
        "POST",
        "/cycles/upload",
        frozenset({R.LEADERSHIP, R.INTEGRATION}),
        files={"file": ("cycle.json", json.dumps(HEADLESS), "application/json")},
        company_wide=True,
    ),
    Row("GET", "/cycles", EVERY_ROLE),
    Row("GET", "/cycles/{cycle_id}", EVERY_ROLE, f"/cycles/{C}"),
    Row("GET", "/cycles/{cycle_id}/rollup", EVERY_ROLE, f"/cycles/{C}/rollup"),
    Row(
        "POST",
        "/cycles/{cycle_id}/commands/CloseCycle",
        LEAD,
        f"/cycles/{C}/commands/CloseCycle",
        {"reason": "r"},
        company_wide=True,
    ),
    Row(
        "POST",
        "/cycles/{cycle_id}/actuals/import",
        frozenset({R.INTEGRATION, R.PLANNER, R.CSF_OWNER}),
        f"/cycles/{C}/actuals/import",
        {"rows": [{**ACTUAL, "unit": U}]},
    ),
    # Plans and the read models.
    Row("GET", "/cycles/{cycle_id}/plans", EVERY_ROLE, f"/cycles/{C}/plans"),
    Row("GET", PLAN_T, EVERY_ROLE, PLAN),
    Row("GET", f"{PLAN_T}/revisions", EVERY_ROLE, f"{PLAN}/revisions"),
    Row("GET", f"{PLAN_T}/revisions/{{number}}", EVERY_ROLE, f"{PLAN}/revisions/1"),
    Row("GET", f"{PLAN_T}/diff", EVERY_ROLE, f"{PLAN}/diff", params={"from": 1, "to": 2}),
    Row("GET", f"{PLAN_T}/tracking", EVERY_ROLE, f"{PLAN}/tracking"),
    Row("GET", "/inbox", frozenset({R.APPROVER, R.LEADERSHIP, R.AUDITOR})),
    # The auditor's reads of a plan: every role, within its scopes; the workflow replay, auditors.
    Row("GET", f"/audit{PLAN_T}/history", EVERY_ROLE, f"/audit{PLAN}/history"),
    Row("GET", f"/audit{PLAN_T}/as-of", EVERY_ROLE, f"/audit{PLAN}/as-of", params={"version": 1}),
    Row(
        "GET",
        f"/audit{PLAN_T}/diff-at",
        EVERY_ROLE,
        f"/audit{PLAN}/diff-at",
        params={"from": "2027-01-01T00:00:00Z", "to": "2027-02-01T00:00:00Z"},
    ),
    # The replay runs every run of the workflow in the API's process: auditors (and admins) only.
    Row("GET", f"/audit{PLAN_T}/workflow-replay", frozenset({R.AUDITOR}), f"/audit{PLAN}/workflow-replay"),
    # Integrity: plans are verified and exported within scopes; the whole store is the auditors'; only admins
    # publish a checkpoint (the key file is the test's own, see signing_key_of_the_test).
    Row("GET", f"/audit{PLAN_T}/verify", EVERY_ROLE, f"/audit{PLAN}/verify"),
    Row("GET", f"/audit{PLAN_T}/bundle", EVERY_ROLE, f"/audit{PLAN}/bundle"),
    Row("GET", "/audit/verify", frozenset({R.AUDITOR}), company_wide=True),
    Row("GET", "/audit/checkpoints", EVERY_ROLE),
    Row("GET", "/audit/checkpoints/latest", EVERY_ROLE),
    Row("GET", "/audit/checkpoints/{sequence}", EVERY_ROLE, "/audit/checkpoints/999999"),
    Row(
        "GET",
        "/audit/checkpoints/{sequence}/extension",
        frozenset({R.AUDITOR}),
        "/audit/checkpoints/999999/extension",
        company_wide=True,
    ),
    Row("GET", "/audit/public-key", EVERY_ROLE),
    Row("POST", "/audit/checkpoints", ADMIN_ONLY),
    Row(
        "POST",
        "/audit/checkpoints/consistency",
        frozenset({R.AUDITOR}),
        body={"checkpoint": {}, "signature": ""},
        company_wide=True,
    ),
    *(
        Row("POST", f"{PLAN_T}/commands/{name}", roles, f"{PLAN}/commands/{name}", body)
        for name, body, roles in COMMANDS
    ),
    # Outbound: the feed and webhook subscriptions.
    Row("GET", "/events", frozenset({R.INTEGRATION, R.AUDITOR, R.LEADERSHIP}), company_wide=True),
    Row("GET", "/webhooks/subscriptions", frozenset({R.INTEGRATION, R.AUDITOR}), company_wide=True),
    Row(
        "POST",
        "/webhooks/subscriptions",
        frozenset({R.INTEGRATION}),
        body={"url": "ftp://not-http"},
        company_wide=True,
    ),
    Row(
        "POST",
        "/webhooks/subscriptions/{subscription_id}/pause",
        frozenset({R.INTEGRATION}),
        f"{NO_SUBSCRIPTION}/pause",
        company_wide=True,
    ),
    Row(
        "POST",
        "/webhooks/subscriptions/{subscription_id}/resume",
        frozenset({R.INTEGRATION}),
        f"{NO_SUBSCRIPTION}/resume",
        company_wide=True,
    ),
    Row(
        "DELETE",
        "/webhooks/subscriptions/{subscription_id}",
        frozenset({R.INTEGRATION}),
        NO_SUBSCRIPTION,
        company_wide=True,
    ),
    Row(
        "GET",
        "/webhooks/subscriptions/{subscription_id}/deliveries",
        frozenset({R.INTEGRATION, R.AUDITOR}),
        f"{NO_SUBSCRIPTION}/deliveries",
        company_wide=True,
    ),
    # Inbound: sources are admins' business; their webhooks are signed, not token-bearing.
    Row("POST", "/inbound/sources", ADMIN_ONLY, body={"source": "matrix-other"}),
    Row("GET", "/inbound/sources", frozenset({R.AUDITOR}), company_wide=True),
    Row("DELETE", "/inbound/sources/{source}", ADMIN_ONLY, "/inbound/sources/no-such-source"),
    Row(
        "POST", "/inbound/{source}/actuals", SIGNED, f"/inbound/{SOURCE}/actuals", {"cycle_id": C, "rows": []}
    ),
    # Schedules.
    Row("POST", "/schedules", SCHEDULERS, body=REMINDER, company_wide=True),
    Row("GET", "/schedules", SCHEDULERS | {R.AUDITOR}, company_wide=True),
    Row("GET", "/schedules/{schedule_id}", SCHEDULERS | {R.AUDITOR}, "/schedules/no-such", company_wide=True),
    Row(
        "POST",
        "/schedules/{schedule_id}/trigger",
        SCHEDULERS,
        "/schedules/no-such/trigger",
        company_wide=True,
    ),
    Row("POST", "/schedules/{schedule_id}/pause", SCHEDULERS, "/schedules/no-such/pause", company_wide=True),
    Row(
        "POST", "/schedules/{schedule_id}/resume", SCHEDULERS, "/schedules/no-such/resume", company_wide=True
    ),
    Row("DELETE", "/schedules/{schedule_id}", SCHEDULERS, "/schedules/no-such", company_wide=True),
]

# Served by FastAPI itself, not by planloop: the OpenAPI document and the interactive docs.
FRAMEWORK_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path template) the app serves: its routes, those of included routers, and the
    OpenAPI document's operations. A route of a kind this does not know is listed as ("ANY", path), so it
    needs a row too."""
    found: set[tuple[str, str]] = set()

    def add(methods: set[str] | None, path: str) -> None:
        for method in (methods or {"ANY"}) - {"HEAD", "OPTIONS"}:
            found.add((method, path))

    for route in app.routes:
        if isinstance(route, APIRoute):
            add(route.methods, route.path)
        elif hasattr(route, "effective_route_contexts"):  # a router included into the app
            contexts = route.effective_route_contexts
            for context in contexts() if callable(contexts) else contexts:
                add(context.methods, context.path)
        elif getattr(route, "path", None) not in FRAMEWORK_ROUTES:
            add(getattr(route, "methods", None), getattr(route, "path", repr(route)))
    for path, operations in app.openapi()["paths"].items():
        for method in operations:
            add({method.upper()}, path)
    return found


async def test_every_route_has_a_row(app: FastAPI) -> None:
    rows = [(row.method, row.route) for row in MATRIX]
    assert len(rows) == len(set(rows)), "a route has two rows in the permission matrix"
    served = app_routes(app)
    missing = sorted(served - set(rows))
    stale = sorted(set(rows) - served)
    assert not missing, (
        "routes without a row in the permission matrix (tests/api/test_auth.py MATRIX): "
        + ", ".join(f"{m} {p}" for m, p in missing)
    )
    assert not stale, "rows for routes the app does not serve: " + ", ".join(f"{m} {p}" for m, p in stale)


def test_auditors_read_every_route_and_write_none() -> None:
    # What the matrix grants, checked as a whole: the auditor's role reads everything, changes nothing.
    reads = [r for r in MATRIX if r.method == "GET" and r.allowed not in (PUBLIC, SIGNED)]
    unread = [r.route for r in reads if R.AUDITOR not in r.allowed]
    assert not unread, f"routes an auditor cannot read: {unread}"
    consistency = ("POST", "/audit/checkpoints/consistency")  # a question about checkpoints, not a write
    writes = [r for r in MATRIX if r.method != "GET" and (r.method, r.route) != consistency]
    written = [f"{r.method} {r.route}" for r in writes if r.allowed != SIGNED and R.AUDITOR in r.allowed]
    assert len(writes) > 40 and not written, f"routes an auditor can write to: {written}"


async def call(http: httpx.AsyncClient, row: Row, headers: Any) -> httpx.Response:
    return await http.request(
        row.method,
        row.path or row.route,
        json=row.body if row.files is None else None,
        files=row.files,
        params=row.params,
        headers=headers,
    )


def _code(answer: httpx.Response) -> str | None:
    try:
        shown = answer.json()
    except ValueError:
        return None
    return shown.get("code") if isinstance(shown, dict) else None


def judged(row: Row, role: Role | None, answer: httpx.Response) -> bool:
    """Whether ``answer`` is what ``role`` (None: no token) should get from ``row``."""
    code = _code(answer)
    if row.allowed == PUBLIC:
        return answer.status_code == 200
    if row.allowed == SIGNED:  # no signature: refused, whatever the token
        return answer.status_code == 401 and code == "invalid_signature"
    if role is None:
        return answer.status_code == 401 and code == "unauthenticated"
    if role is Role.ADMIN or role in row.allowed:
        return answer.status_code not in (401, 403) and answer.status_code < 500
    return answer.status_code == 403 and code == "forbidden" and "needs the role" in answer.json()["message"]


@pytest.fixture(autouse=True)
def signing_key_of_the_test(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The checkpoint signing key in the test's folder, not the user's data folder (the app's settings read
    the environment)."""
    monkeypatch.setenv("PLANLOOP_AUDIT_KEY_FILE", str(tmp_path / "audit-key.pem"))


@pytest.fixture
async def registered_source(http: httpx.AsyncClient, admin: Any) -> str:
    """An inbound source, so a webhook without a signature is refused for its signature."""
    answer = await http.post("/inbound/sources", json={"source": SOURCE}, headers=admin)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["secret"])


@pytest.mark.parametrize("role", [*Role, None], ids=[*(r.value for r in Role), "no-token"])
async def test_permission_matrix(
    http: httpx.AsyncClient, make_token: MakeToken, registered_source: str, role: Role | None
) -> None:
    headers = await make_token(f"matrix-{role}", role) if role is not None else {}
    wrong = []
    for row in MATRIX:
        answer = await call(http, row, headers)
        if not judged(row, role, answer):
            wrong.append(f"{row.method} {row.path or row.route}: {answer.status_code} {answer.text[:160]}")
    assert not wrong, "\n".join(wrong)


async def test_company_wide_routes_refuse_scoped_tokens(
    http: httpx.AsyncClient, make_token: MakeToken, registered_source: str
) -> None:
    """A token scoped to DE with every role but admin: refused where the route concerns the whole company,
    let through (to the missing cycle's 404) elsewhere."""
    scoped = await make_token("de-everything", *(r for r in Role if r is not Role.ADMIN), scopes=(U,))
    wrong = []
    for row in MATRIX:
        if row.allowed in (PUBLIC, SIGNED, ADMIN_ONLY):
            continue
        answer = await call(http, row, scoped)
        if row.company_wide:
            ok = answer.status_code == 403 and "whole company" in answer.json()["message"]
        else:
            ok = answer.status_code not in (401, 403) and answer.status_code < 500
        if not ok:
            wrong.append(f"{row.method} {row.path or row.route}: {answer.status_code} {answer.text[:160]}")
    assert not wrong, "\n".join(wrong)


async def test_a_signed_route_needs_the_signature_not_a_token(
    http: httpx.AsyncClient, registered_source: str
) -> None:
    body = json.dumps({"cycle_id": C, "rows": [{**ACTUAL, "unit": U}]}).encode()
    now = int(time.time())
    headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: str(now)}
    signed = await http.post(
        f"/inbound/{SOURCE}/actuals",
        content=body,
        headers={**headers, SIGNATURE_HEADER: sign(registered_source, now, body)},
    )
    assert signed.status_code not in (401, 403) and signed.status_code < 500, signed.text
    forged = await http.post(
        f"/inbound/{SOURCE}/actuals",
        content=body,
        headers={**headers, SIGNATURE_HEADER: sign("x" * 32, now, body)},
    )
    assert forged.status_code == 401 and forged.json()["code"] == "invalid_signature"


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
