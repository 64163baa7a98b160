"""Audit tests go through the real HTTP stack of tests/api (the app with a real worker, a Temporal dev server
and PostgreSQL), and drive a recorded scenario: one plan pushed back, revised, approved (partly by a
delegate), signed off, executing with an off-track month explained. At every step the scenario records what
the plan's workflow reported (its queried state), the stream version and the wall time, so the auditor's
reconstructions can be checked against what the system held at that moment."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from domain import PlanState, Team
from eventstore import EventStore
from planloop.api.auth import Role
from tests.api import conftest as api
from tests.api.conftest import MakeToken
from tests.workflows import scenario
from workflows import PlanWorkflow, plan_id

UNIT = "DE"
AUTHOR = scenario.AUTHORS[UNIT]  # de-mgr
DELEGATE = "eu-controller"  # decides for eu-cfo while eu-cfo is out of office
SALES, MARKETING = "de-sales-lead", "de-marketing-lead"

# The API tests' fixtures (the app with its worker, an HTTP client, tokens, a cycle, the served API).
task_queue, app, http, make_token = api.task_queue, api.app, api.http, api.make_token
admin, cycle, live_api = api.admin, api.cycle, api.live_api


@dataclass(frozen=True)
class Moment:
    """What the plan's workflow reported after one step, with the stream version and the wall time then."""

    step: str
    state: PlanState
    version: int
    wall_time: datetime


@dataclass
class Recorded:
    cycle_id: str
    unit_id: str
    moments: list[Moment] = field(default_factory=list)
    headers: dict[str, Any] = field(default_factory=dict)  # principal -> Authorization headers
    hashes: dict[int, str] = field(default_factory=dict)  # revision -> content hash

    @property
    def stream_id(self) -> str:
        return plan_id(self.cycle_id, self.unit_id)

    def moment(self, step: str) -> Moment:
        return next(m for m in self.moments if m.step == step)


async def record_scenario(
    http: httpx.AsyncClient, make_token: MakeToken, client: Client, store: EventStore, cycle_id: str
) -> Recorded:
    """Drive DE's plan through the API: draft, submit, a pushback with a counter-proposal (accepted), the
    author's own revision, submit, a delegated approval, the quorum, global sign-off, execution planning,
    an off-track month and its explanation."""
    recorded = Recorded(cycle_id, UNIT)
    roles = {
        AUTHOR: Role.PLANNER,
        SALES: Role.PLANNER,
        MARKETING: Role.PLANNER,
        "eu-cfo": Role.APPROVER,
        "eu-coo": Role.APPROVER,
        DELEGATE: Role.APPROVER,
        "ceo": Role.LEADERSHIP,
        "cfo": Role.LEADERSHIP,
    }
    for principal, role in roles.items():
        recorded.headers[principal] = await make_token(principal, role)
    handle = client.get_workflow_handle(recorded.stream_id)
    base = f"/cycles/{cycle_id}/plans/{UNIT}/commands"
    months = scenario.calendar(cycle_id, datetime.now(UTC)).months()

    async def remember(step: str) -> None:
        state = await handle.query(PlanWorkflow.state, result_type=PlanState)
        version = await store.stream_version(recorded.stream_id)
        recorded.moments.append(Moment(step, state, version, datetime.now(UTC)))
        # The next step's events are recorded strictly after this wall time.
        await asyncio.sleep(0.02)

    async def send(principal: str, command: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = await http.post(f"{base}/{command}", json=body, headers=recorded.headers[principal])
        assert answer.status_code == 200, f"{command} by {principal}: {answer.text}"
        return dict(answer.json())

    async def submission_hash() -> str:
        state = await handle.query(PlanWorkflow.state, result_type=PlanState)
        assert state.submission is not None
        recorded.hashes[state.submission.revision] = state.submission.content_hash
        return state.submission.content_hash

    await remember("opened")
    draft = scenario.content(UNIT, months).model_dump(mode="json")
    await send(AUTHOR, "ReviseStrategy", {"content": draft, "reason": "first draft"})
    await remember("drafted")
    await send(AUTHOR, "SubmitForApproval", {})
    pushback = {
        "content_hash": await submission_hash(),
        "comment": "Stretch the revenue, spend less on travel, drop the webinars.",
        "counter_proposal": {
            "target_changes": [{"goal_id": "G-REV", "percent": "10"}],
            "budget_cuts": [{"line_id": "B-TRAVEL", "percent": "20"}],
            "programs_to_drop": ["P-WEBINAR"],
        },
    }
    await send("eu-cfo", "RequestChanges", pushback)
    await remember("pushed back")
    await send(AUTHOR, "AcceptCounterProposal", {"reason": "agreed in the regional call"})
    await remember("counter-proposal accepted")
    state = await handle.query(PlanWorkflow.state, result_type=PlanState)
    assert state.latest_revision is not None
    own = state.latest_revision.content.model_dump(mode="json")
    own["choices"]["how_to_win"] = "Commissioned in three weeks at a fixed price, by certified partners."
    await send(AUTHOR, "ReviseStrategy", {"content": own, "reason": "faster commissioning"})
    await remember("revised")
    await send(AUTHOR, "SubmitForApproval", {})
    approved = {"content_hash": await submission_hash()}
    now = datetime.now(UTC)
    delegation = {
        "delegate": DELEGATE,
        "starts": (now - timedelta(hours=1)).isoformat(),
        "ends": (now + timedelta(days=7)).isoformat(),
    }
    await send("eu-cfo", "DelegateApproval", delegation)
    await send(DELEGATE, "ApprovePlan", approved)  # names no seat: the delegation decides it is eu-cfo's
    await remember("delegate approved")
    await send("eu-coo", "ApprovePlan", approved)
    await send("ceo", "ApprovePlan", approved)
    await send("cfo", "ApprovePlan", approved)
    await remember("signed off")
    await send(AUTHOR, "StartExecutionPlanning", {"sales_lead": SALES, "marketing_lead": MARKETING})
    for csf_id, team, lead in (("S1", Team.SALES, SALES), ("M1", Team.MARKETING, MARKETING)):
        csf = scenario.csf(csf_id, team, lead, months).model_dump(mode="json")
        await send(lead, "DefineCsf", {"csf": csf})
    await send(SALES, "ConfirmAlignment", {"team": "sales"})
    await send(MARKETING, "ConfirmAlignment", {"team": "marketing"})
    await send(AUTHOR, "StartExecution", {})
    await remember("executing")
    actual = {"measure": "revenue", "month": months[0], "value": "1000", "currency": "EUR", "source": "erp"}
    await send(AUTHOR, "RecordActual", actual)
    await remember("off track")
    state = await handle.query(PlanWorkflow.state, result_type=PlanState)
    deviation = state.deviations[-1].deviation_id
    explanation = "A key account postponed its order to February."
    await send(AUTHOR, "ExplainDeviation", {"deviation_id": deviation, "explanation": explanation})
    await remember("explained")
    return recorded


@pytest.fixture
async def recorded(
    http: httpx.AsyncClient, make_token: MakeToken, app: Any, store: EventStore, cycle: str
) -> Recorded:
    """The scenario, driven once for the test, on a fresh cycle of its own."""
    return await record_scenario(http, make_token, app.state.client, store, cycle)


@pytest.fixture
async def auditor(make_token: MakeToken) -> dict[str, str]:
    headers: dict[str, str] = await make_token("auditor-1", Role.AUDITOR)
    return headers
