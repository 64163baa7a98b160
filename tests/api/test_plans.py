"""Cycles and plans through the HTTP API: open a cycle (JSON or a YAML file), list its plans, send domain
commands, read the plan, its revisions and diffs; refusals come back as 4xx with the domain's code."""

from __future__ import annotations

from typing import Any

import httpx
import yaml

from domain import decode_event
from eventstore import EventStore
from planloop.api.auth import Role
from tests.api.conftest import MakeToken, cycle_definition, poll, unique_cycle, wait_for_plans
from tests.workflows import scenario


def draft(cycle_id: str, unit: str, **changes: Any) -> dict[str, Any]:
    months = scenario.calendar(cycle_id, scenario_now()).months()
    content = scenario.content(unit, months).model_copy(update=changes)
    return {"content": content.model_dump(mode="json"), "reason": "first draft"}


def scenario_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


async def test_a_plan_is_drafted_revised_and_read_with_its_diffs(
    http: httpx.AsyncClient, cycle: str, make_token: MakeToken, store: EventStore
) -> None:
    author = await make_token("de-mgr", Role.PLANNER, scopes=("DE",))
    base = f"/cycles/{cycle}/plans/DE"

    first = await http.post(f"{base}/commands/ReviseStrategy", json=draft(cycle, "DE"), headers=author)
    assert first.status_code == 200, first.text
    assert first.json()["revision"] == 1 and first.json()["events"] == ["RevisionRecorded"]
    bigger = draft(cycle, "DE")
    bigger["content"]["goals"][0]["target"] = str(int(float(bigger["content"]["goals"][0]["target"])) * 2)
    bigger["reason"] = "stretch"
    second = await http.post(f"{base}/commands/ReviseStrategy", json=bigger, headers=author)
    assert second.status_code == 200, second.text
    submitted = await http.post(f"{base}/commands/SubmitForApproval", json={}, headers=author)
    assert submitted.json()["phase"] == "in_review"

    plan = (await http.get(base, headers=author)).json()
    assert (plan["phase"], plan["revision"]["number"], plan["current_gate"]["gate"]["gate_id"]) == (
        "in_review",
        2,
        "region:EU",
    )
    revisions = (await http.get(f"{base}/revisions", headers=author)).json()
    assert [(r["number"], r["author"], r["reason"]) for r in revisions] == [
        (1, "de-mgr", "first draft"),
        (2, "de-mgr", "stretch"),
    ]
    assert (await http.get(f"{base}/revisions/2", headers=author)).json()["content"]["goals"][0]["goal_id"]
    diff = (await http.get(f"{base}/diff", params={"from": 1, "to": 2}, headers=author)).json()
    assert diff["diff"]["changed_fields"] == ["goals"]
    assert float(diff["diff"]["target_changes"][0]["change_pct"]) == 100
    missing = await http.get(f"{base}/revisions/9", headers=author)
    assert missing.status_code == 404 and "revisions 1 to 2" in missing.json()["message"]

    # The actor on every stored event is the authenticated principal, and the source is the API.
    stored = await store.read_stream(f"plan:{cycle}:DE")
    assert {e.metadata["actor"] for e in stored[-3:]} == {"de-mgr"}
    assert {e.metadata["source"] for e in stored[-3:]} == {"api"}
    assert decode_event(stored[-1].type, stored[-1].schema_version, stored[-1].data).type == "PlanSubmitted"


async def test_a_domain_refusal_is_a_4xx_with_its_code_and_message(
    http: httpx.AsyncClient, cycle: str, make_token: MakeToken, store: EventStore
) -> None:
    approver = await make_token("eu-cfo", Role.APPROVER)
    before = await store.stream_version(f"plan:{cycle}:DE")
    refused = await http.post(
        f"/cycles/{cycle}/plans/DE/commands/ApprovePlan", json={"content_hash": "0" * 64}, headers=approver
    )
    assert refused.status_code == 409
    assert refused.json()["code"] == "not_in_review" and refused.json()["message"]
    assert await store.stream_version(f"plan:{cycle}:DE") == before

    # Someone else than the author or leadership: the domain's own 403.
    other = await make_token("fr-mgr", Role.PLANNER)
    answer = await http.post(
        f"/cycles/{cycle}/plans/DE/commands/CancelPlan", json={"reason": "not mine"}, headers=other
    )
    assert (answer.status_code, answer.json()["code"]) == (403, "not_plan_author")

    # Invalid content the domain refuses (a strategy of more than a page a question): 422.
    long = draft(cycle, "DE")
    long["content"]["choices"]["how_to_win"] = "word " * 600
    author = await make_token("de-mgr", Role.PLANNER)
    answer = await http.post(f"/cycles/{cycle}/plans/DE/commands/ReviseStrategy", json=long, headers=author)
    assert (answer.status_code, answer.json()["code"]) == (422, "page_limit_exceeded")

    # A body that is not a command at all: 422 naming the field.
    answer = await http.post(
        f"/cycles/{cycle}/plans/DE/commands/RecordActual", json={"month": "13"}, headers=author
    )
    assert answer.status_code == 422 and answer.json()["code"] == "invalid_request"
    assert "body.measure" in answer.json()["message"]

    # No such plan.
    answer = await http.post(f"/cycles/{cycle}/plans/XX/commands/SubmitForApproval", json={}, headers=author)
    assert (answer.status_code, answer.json()["code"]) == (404, "plan_not_found")
    answer = await http.get(f"/cycles/{cycle}/plans/XX", headers=author)
    assert (answer.status_code, answer.json()["code"]) == (404, "plan_not_found")


async def test_a_cycle_lists_its_plans_with_filters_and_shows_its_progress(
    http: httpx.AsyncClient, cycle: str, admin: Any, make_token: MakeToken
) -> None:
    # The list is the plan list read model: wait until the projector has seen every plan open.
    listed = await poll(http, f"/cycles/{cycle}/plans", admin, lambda page: page["total"] == 6)
    assert [p["unit_id"] for p in listed["plans"]] == ["AMERICAS", "EU", "BR", "DE", "FR", "US"]
    assert {p["phase"] for p in listed["plans"]} == {"drafting"}
    eu = (await http.get(f"/cycles/{cycle}/plans", params={"unit": "EU"}, headers=admin)).json()
    assert sorted(p["unit_id"] for p in eu["plans"]) == ["DE", "EU", "FR"]
    none = (await http.get(f"/cycles/{cycle}/plans", params={"phase": "approved"}, headers=admin)).json()
    assert none["total"] == 0
    americas = await make_token("am-head", Role.PLANNER, scopes=("AMERICAS",))
    scoped = (await http.get(f"/cycles/{cycle}/plans", headers=americas)).json()
    assert sorted(p["unit_id"] for p in scoped["plans"]) == ["AMERICAS", "BR", "US"]

    shown = (await http.get(f"/cycles/{cycle}", headers=admin)).json()
    assert shown["plans"] == 6 and shown["progress"]["started"] == 6 and not shown["closed"]
    rollup = await http.get(f"/cycles/{cycle}/rollup", params={"unit": "EU"}, headers=admin)
    assert rollup.status_code == 200 and rollup.json()["unit_id"] == "EU"

    closed = await http.post(
        f"/cycles/{cycle}/commands/CloseCycle", json={"reason": "test over"}, headers=admin
    )
    assert closed.status_code == 200 and closed.json()["closed"], closed.text
    again = await http.post(f"/cycles/{cycle}/commands/CloseCycle", json={"reason": "again"}, headers=admin)
    assert (again.status_code, again.json()["code"]) == (409, "cycle_closed")


async def test_a_cycle_opens_from_an_uploaded_yaml_file_and_only_once(
    http: httpx.AsyncClient, admin: Any
) -> None:
    cycle_id = unique_cycle()
    text = yaml.safe_dump(cycle_definition(cycle_id))
    opened = await http.post(
        "/cycles/upload", files={"file": ("fy.yaml", text.encode(), "application/yaml")}, headers=admin
    )
    assert opened.status_code == 201, opened.text
    assert sorted(opened.json()["plans"]) == sorted(scenario.UNITS)
    await wait_for_plans(http, admin, cycle_id, ("DE",))
    twice = await http.post("/cycles", json=cycle_definition(cycle_id), headers=admin)
    assert (twice.status_code, twice.json()["code"]) == (409, "cycle_already_opened")

    broken = await http.post(
        "/cycles/upload", files={"file": ("fy.yaml", b"calendar: [1", "application/yaml")}, headers=admin
    )
    assert broken.status_code == 422 and "YAML" in broken.json()["message"]
    headless = cycle_definition(unique_cycle())
    headless["hierarchy"]["units"][1]["head"] = None
    refused = await http.post("/cycles", json=headless, headers=admin)
    assert (refused.status_code, refused.json()["code"]) == (422, "invalid_org")


async def test_regression_a_cycle_is_found_right_after_post_cycles_answers(
    http: httpx.AsyncClient, admin: Any
) -> None:
    # POST /cycles used to answer as soon as the cycle's workflow was started, before it stored its
    # opening: a caller's next request (the cycle's progress, a schedule for it) found no cycle (404).
    cycle_id = unique_cycle()
    assert (await http.post("/cycles", json=cycle_definition(cycle_id), headers=admin)).status_code == 201
    answer = await http.get(f"/cycles/{cycle_id}", headers=admin)
    assert answer.status_code == 200, answer.text
