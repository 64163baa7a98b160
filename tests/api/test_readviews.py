"""The read models through the API: a submitted plan lands in its approvers' inboxes and in "waiting on me",
and leaves the inbox of whoever decided; the tracking of a plan; scopes and roles of each."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from temporalio.testing import WorkflowEnvironment

from domain.base import month_add
from planloop.api.auth import Role
from tests.api import executing
from tests.api.conftest import MakeToken, poll
from tests.api.test_cli_reads import cli
from tests.api.test_plans import draft
from tests.workflows import scenario


async def test_a_submitted_plan_waits_in_its_approvers_inboxes_until_they_decide(
    http: httpx.AsyncClient, cycle: str, make_token: MakeToken, admin: Any
) -> None:
    author = await make_token("de-mgr", Role.PLANNER, scopes=("DE",))
    cfo = await make_token("eu-cfo", Role.APPROVER)
    coo = await make_token("eu-coo", Role.APPROVER)
    base = f"/cycles/{cycle}/plans/DE"
    # Before it is submitted, the plan waits on its author: a draft to submit.
    drafting = await poll(
        http, f"/cycles/{cycle}/plans", author, lambda page: page["total"] == 1, params={"waiting_on": "me"}
    )
    assert [(p["unit_id"], p["waiting_for"]) for p in drafting["plans"]] == [("DE", ["draft"])]
    assert (
        await http.post(f"{base}/commands/ReviseStrategy", json=draft(cycle, "DE"), headers=author)
    ).is_success
    submitted = await http.post(f"{base}/commands/SubmitForApproval", json={}, headers=author)
    assert submitted.status_code == 200, submitted.text
    version = submitted.json()["stream_version"]

    # The projector catches up within moments: the plan waits on each seat of the EU gate (a quorum of 2).
    inbox = await poll(http, "/inbox", cfo, lambda page: page["total"] == 1)
    [item] = inbox["items"]
    assert inbox["approver"] == "eu-cfo"
    assert (item["unit_id"], item["gate_id"], item["via"], item["revision"]) == ("DE", "region:EU", "seat", 1)
    plan = (await http.get(base, headers=cfo)).json()
    assert item["content_hash"] == plan["submission"]["content_hash"]

    # Each read model keeps its own checkpoint: the plan list may trail the inbox by a moment.
    waiting = await poll(
        http,
        f"/cycles/{cycle}/plans",
        cfo,
        lambda page: [p["version"] for p in page["plans"]] == [version],
        params={"waiting_on": "me"},
    )
    [listed] = waiting["plans"]
    assert (listed["unit_id"], listed["phase"], listed["version"]) == ("DE", "in_review", version)
    assert listed["waiting_for"] == ["approval"]
    assert listed["pending_approvers"] == ["eu-cfo", "eu-coo", "eu-cso"]
    mine = (await http.get(f"/cycles/{cycle}/plans", params={"waiting_on": "me"}, headers=author)).json()
    assert mine["total"] == 0  # submitted: nothing waits on the author now

    # Auditors and admins may look into someone's inbox; others only into their own.
    auditor = await make_token("auditor-1", Role.AUDITOR)
    seen = (await http.get("/inbox", params={"approver": "eu-coo"}, headers=auditor)).json()
    assert [i["unit_id"] for i in seen["items"]] == ["DE"]
    nosy = await http.get("/inbox", params={"approver": "eu-coo"}, headers=cfo)
    assert nosy.status_code == 403 and "auditor or admin" in nosy.json()["message"]
    other = (await http.get(f"/cycles/{cycle}/plans", params={"waiting_on": "eu-coo"}, headers=admin)).json()
    assert [p["unit_id"] for p in other["plans"]] == ["DE"]
    # Scopes hold in the inbox too: an approver scoped to AMERICAS does not see the EU plan.
    elsewhere = await make_token("eu-cso", Role.APPROVER, scopes=("AMERICAS",))
    assert (await http.get("/inbox", headers=elsewhere)).json()["total"] == 0

    approved = await http.post(
        f"{base}/commands/ApprovePlan", json={"content_hash": item["content_hash"]}, headers=cfo
    )
    assert approved.status_code == 200, approved.text
    await poll(http, "/inbox", cfo, lambda page: page["total"] == 0)
    assert (await http.get("/inbox", headers=coo)).json()["total"] == 1  # the quorum still needs one more
    gone = (await http.get(f"/cycles/{cycle}/plans", params={"waiting_on": "me"}, headers=cfo)).json()
    assert gone["total"] == 0
    still = (await http.get(f"/cycles/{cycle}/plans", params={"unit": "DE"}, headers=admin)).json()
    assert still["plans"][0]["pending_approvers"] == ["eu-coo", "eu-cso"]


async def test_a_plans_tracking_within_scopes(
    http: httpx.AsyncClient, cycle: str, make_token: MakeToken
) -> None:
    eu = await make_token("eu-president", Role.PLANNER, scopes=("EU",))
    tracking = await http.get(f"/cycles/{cycle}/plans/DE/tracking", headers=eu)
    assert tracking.status_code == 200, tracking.text
    assert tracking.json() == {"plan_id": f"plan:{cycle}:DE", "cycle_id": cycle, "unit_id": "DE", "lines": []}
    outside = await http.get(f"/cycles/{cycle}/plans/US/tracking", headers=eu)
    assert outside.status_code == 403 and "outside" in outside.json()["message"]
    missing = await http.get(f"/cycles/{cycle}/plans/XX/tracking", headers=await make_token("a", Role.ADMIN))
    assert (missing.status_code, missing.json()["code"]) == (404, "plan_not_found")
    # Only approvers, leadership, auditors and admins have an inbox.
    planner = await http.get("/inbox", headers=eu)
    assert planner.status_code == 403 and "needs the role" in planner.json()["message"]


async def test_a_deviation_waits_on_its_owner_until_explained(
    http: httpx.AsyncClient, admin: Any, make_token: MakeToken, dev_server_env: WorkflowEnvironment
) -> None:
    cycle, months = await executing.executing_cycle(http, admin, dev_server_env.client, ["C1"], 2)
    base = f"/cycles/{cycle}/plans/C1"
    owner = (await http.get(base, headers=admin)).json()["authors"][0]  # revenue deviations are the author's
    erp = await make_token("erp", Role.INTEGRATION)
    off_track = {"measure": "revenue", "month": months[0], "value": "1", "currency": "EUR", "source": "erp"}
    assert (await http.post(f"{base}/commands/RecordActual", json=off_track, headers=erp)).is_success
    waiting = await poll(
        http, f"/cycles/{cycle}/plans", admin, lambda page: page["total"] == 1, params={"waiting_on": owner}
    )
    assert waiting["plans"][0]["waiting_for"] == ["explanation"]
    as_owner = await make_token(owner, Role.PLANNER)
    explained = await http.post(
        f"{base}/commands/ExplainDeviation",
        json={"deviation_id": "D1", "explanation": "the ERP posted a partial month"},
        headers=as_owner,
    )
    assert explained.status_code == 200, explained.text
    await poll(
        http, f"/cycles/{cycle}/plans", as_owner, lambda page: page["total"] == 0, params={"waiting_on": "me"}
    )
    nosy = await http.get(f"/cycles/{cycle}/plans", params={"waiting_on": owner}, headers=erp)
    assert nosy.status_code == 403 and "for another person" in nosy.json()["message"]


async def test_plans_with_actuals_overdue_are_listed_by_the_overdue_filter(
    live_api: str, make_token: MakeToken, dev_server_env: WorkflowEnvironment
) -> None:
    # Execution began two months ago: once the plans execute, the closes of the two months before this
    # one have passed with no actuals in, so both plans are flagged overdue at once.
    now = datetime.now(UTC)
    start = month_add(f"{now.year:04d}-{now.month:02d}", -2)
    admin = await make_token("planning-office", Role.ADMIN)
    async with httpx.AsyncClient(base_url=live_api, timeout=60) as http:
        cycle, months = await executing.executing_cycle(
            http, admin, dev_server_env.client, ["C1", "C2"], 2, execution_start=start
        )
        plans = f"/cycles/{cycle}/plans"
        # Overdue: each month whose close (the 5th of the next month) has passed; the month before last's
        # always has, last month's from the 5th of this one.
        calendar = scenario.calendar(cycle, now).model_copy(update={"execution_start": start})
        closed = [m for m in months if calendar.close_at(m) <= now]
        assert closed and closed == list(months[: len(closed)])
        both = await poll(http, plans, admin, lambda page: page["total"] == 2, params={"overdue": "true"})
        assert {p["unit_id"]: p["actuals_overdue_months"] for p in both["plans"]} == {
            "C1": closed,
            "C2": closed,
        }
        # C2 posts everything it owes: it leaves the overdue list, C1 stays.
        erp = await make_token("erp", Role.INTEGRATION)
        for row in executing.rows(["C2"], tuple(closed), 2):
            body = {k: v for k, v in row.items() if k != "unit" and v}
            answer = await http.post(f"{plans}/C2/commands/RecordActual", json=body, headers=erp)
            assert answer.status_code == 200, answer.text
        overdue = await poll(http, plans, admin, lambda page: page["total"] == 1, params={"overdue": "true"})
        assert [(p["unit_id"], p["overdue"]) for p in overdue["plans"]] == [("C1", True)]
        on_time = await http.get(plans, params={"overdue": "false"}, headers=admin)
        assert [(p["unit_id"], p["actuals_overdue_months"]) for p in on_time.json()["plans"]] == [("C2", [])]
        progress = (await http.get(f"/cycles/{cycle}", headers=admin)).json()["progress"]
        assert progress["overdue"] == 1

    # The CLI's table names the months.
    env = {"PLANLOOP_API_URL": live_api, "PLANLOOP_TOKEN": admin["Authorization"].removeprefix("Bearer ")}
    table = await cli("plan", "list", cycle, "--overdue", env=env)
    assert table.exit_code == 0, table.output
    assert f"actuals of {', '.join(closed)}" in table.stdout and "1 of 1 plan(s)" in table.stdout
