"""The CLI's reads and cycle commands against a served API (uvicorn, a real worker, the dev server and
PostgreSQL): `plan list` with its filters, `plan revisions/revision/diff`, `inbox`, `tracking`,
`cycle show/progress/rollup/close`; tables for people, --json for scripts, an API refusal as one line on
stderr with exit code 1."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from click.testing import Result
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from eventstore import EventStore
from planloop.api.auth import Role, create_token
from planloop.cli import app
from tests.api import executing
from tests.api.conftest import cycle_definition, poll, unique_cycle, wait_for_plans
from tests.api.test_plans import draft
from tests.workflows import scenario

# Wide enough that rich does not fold the tables' cells.
WIDE = {"COLUMNS": "220"}


async def cli(*args: str, env: dict[str, str]) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env={**WIDE, **env})


def answer(result: Result) -> Any:
    """The --json answer: the last line of stdout (the worker of this process logs to the same stdout)."""
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def refused(result: Result, *words: str) -> str:
    """An error: exit code 1 and one line on stderr that reads ``error: code: message``."""
    assert result.exit_code == 1, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and all(w in line for w in words), line
    return line


async def tokens(store: EventStore, **principals: tuple[Role, ...]) -> dict[str, str]:
    made = {}
    for name, roles in principals.items():
        made[name], _ = await create_token(store.pool, name.replace("_", "-"), roles)
    return made


async def test_plan_reads_inbox_and_cycle_commands(live_api: str, store: EventStore) -> None:
    t = await tokens(
        store,
        office=(Role.ADMIN,),
        eu_cfo=(Role.APPROVER,),
        de_mgr=(Role.PLANNER,),
        coo=(Role.LEADERSHIP,),
    )
    admin = {"Authorization": f"Bearer {t['office']}"}
    as_office = {"PLANLOOP_API_URL": live_api, "PLANLOOP_TOKEN": t["office"]}
    as_cfo = {**as_office, "PLANLOOP_TOKEN": t["eu_cfo"]}
    as_author = {**as_office, "PLANLOOP_TOKEN": t["de_mgr"]}
    cycle = unique_cycle()
    async with httpx.AsyncClient(base_url=live_api, timeout=60) as http:
        assert (await http.post("/cycles", json=cycle_definition(cycle), headers=admin)).status_code == 201
        await wait_for_plans(http, admin, cycle, scenario.UNITS)
        author = {"Authorization": f"Bearer {t['de_mgr']}"}
        base = f"/cycles/{cycle}/plans/DE/commands"
        first = draft(cycle, "DE")
        assert (await http.post(f"{base}/ReviseStrategy", json=first, headers=author)).is_success
        second = json.loads(json.dumps(first))
        second["content"]["forecast"][0]["amount"]["amount"] = "123456.00"
        second["reason"] = "second draft: a bigger first month"
        assert (await http.post(f"{base}/ReviseStrategy", json=second, headers=author)).is_success
        assert (await http.post(f"{base}/SubmitForApproval", json={}, headers=author)).is_success
        cfo = {"Authorization": f"Bearer {t['eu_cfo']}"}
        await poll(http, "/inbox", cfo, lambda page: page["total"] == 1)

    # plan list: every plan, then each filter.
    listed = answer(await cli("plan", "list", cycle, "--json", env=as_office))
    assert {p["unit_id"]: p["phase"] for p in listed["plans"]} == {
        **{u: "drafting" for u in scenario.UNITS},
        "DE": "in_review",
    }
    americas = answer(await cli("plan", "list", cycle, "--unit", "AMERICAS", "--json", env=as_office))
    assert sorted(p["unit_id"] for p in americas["plans"]) == ["AMERICAS", "BR", "US"]
    in_review = answer(await cli("plan", "list", cycle, "--phase", "in_review", "--json", env=as_office))
    assert [p["unit_id"] for p in in_review["plans"]] == ["DE"]
    not_overdue = answer(await cli("plan", "list", cycle, "--not-overdue", "--json", env=as_office))
    assert not_overdue["total"] == len(scenario.UNITS)
    assert answer(await cli("plan", "list", cycle, "--overdue", "--json", env=as_office))["total"] == 0
    mine = answer(await cli("plan", "list", cycle, "--waiting-on-me", "--json", env=as_cfo))
    assert [(p["unit_id"], p["pending_approvers"]) for p in mine["plans"]] == [
        ("DE", ["eu-cfo", "eu-coo", "eu-cso"])
    ]
    table = await cli("plan", "list", cycle, "--waiting-on-me", env=as_cfo)
    assert (
        table.exit_code == 0 and "1 of 1 plan(s)" in table.stdout and "eu-cfo, eu-coo, eu-cso" in table.stdout
    )
    assert "waiting for" in table.stdout and "approval" in table.stdout
    refused(
        await cli("plan", "list", cycle, "--phase", "dreaming", env=as_office), "invalid_request", "phase"
    )
    refused(
        await cli("plan", "list", cycle, "--waiting-on", "eu-coo", env=as_cfo),
        "forbidden",
        "auditor or admin",
    )

    # Revisions, one revision, the diff between two.
    revisions = answer(await cli("plan", "revisions", cycle, "DE", "--json", env=as_author))
    assert [(r["number"], r["author"]) for r in revisions] == [(1, "de-mgr"), (2, "de-mgr")]
    shown = await cli("plan", "revisions", cycle, "DE", env=as_author)
    assert "2 revision(s)" in shown.stdout and "second draft: a bigger first month" in shown.stdout
    one = answer(await cli("plan", "revision", cycle, "DE", "2", "--json", env=as_author))
    assert one["number"] == 2 and one["content"]["forecast"][0]["amount"]["amount"] == "123456.00"
    refused(await cli("plan", "revision", cycle, "DE", "9", env=as_author), "not_found", "no revision 9")
    diff = answer(await cli("plan", "diff", cycle, "DE", "--from", "1", "--to", "2", "--json", env=as_author))
    assert (diff["from_revision"], diff["to_revision"]) == (1, 2)
    [change] = diff["diff"]["forecast_changes"]
    assert change["new"] == "123456.00"
    shown = await cli("plan", "diff", cycle, "DE", "--from", "1", "--to", "2", env=as_author)
    assert "revision 1 -> 2" in shown.stdout and "forecast" in shown.stdout and "123456.00" in shown.stdout

    # The inbox: mine, as a table and as JSON; a planner has none.
    inbox = answer(await cli("inbox", "--json", env=as_cfo))
    [item] = inbox["items"]
    assert (inbox["approver"], item["unit_id"], item["gate_id"]) == ("eu-cfo", "DE", "region:EU")
    shown = await cli("inbox", env=as_cfo)
    assert "1 approval(s) waiting on eu-cfo" in shown.stdout and item["content_hash"] in shown.stdout
    refused(await cli("inbox", env=as_author), "forbidden", "needs the role")

    # The cycles: listed newest first from the store and the plan list, open ones by --state.
    listed = answer(await cli("cycle", "list", "--state", "open", "--json", env=as_office))
    mine = next(c for c in listed if c["cycle_id"] == cycle)
    assert not mine["closed"] and mine["plans"] == len(scenario.UNITS) == sum(mine["phases"].values())
    assert mine["stream_version"] >= 1 and mine["opened_at"]
    shown = await cli("cycle", "list", env=as_author)
    assert cycle in shown.stdout and "open" in shown.stdout
    refused(await cli("cycle", "list", "--state", "shut", env=as_office), "", "use open or closed")

    # The cycle: show, progress, rollup (the company, a region), close.
    shown_cycle = answer(await cli("cycle", "show", cycle, "--json", env=as_office))
    assert shown_cycle["cycle_id"] == cycle and not shown_cycle["closed"]
    assert shown_cycle["progress"]["phases"] == {"drafting": len(scenario.UNITS) - 1, "in_review": 1}
    shown = await cli("cycle", "show", cycle, env=as_office)
    assert f"{cycle} (open)" in shown.stdout and "in_review" in shown.stdout
    progress = answer(await cli("cycle", "progress", cycle, "--json", env=as_office))
    assert progress["plans"] == progress["started"] == len(scenario.UNITS)
    rollup = answer(await cli("cycle", "rollup", cycle, "--unit", "EU", "--json", env=as_office))
    assert rollup["unit_id"] == "EU" and "DE" in rollup["plans"] and "US" not in rollup["plans"]
    assert rollup["forecast"]["EUR"] and rollup["phases"]["in_review"] == 1
    shown = await cli("cycle", "rollup", cycle, "--unit", "EU", env=as_office)
    assert "Forecast" in shown.stdout and rollup["forecast"]["EUR"] in shown.stdout
    refused(await cli("cycle", "rollup", cycle, "--unit", "MARS", env=as_office), "not_found", "no unit MARS")
    refused(await cli("cycle", "show", "FY-NOWHERE", env=as_office), "cycle_not_found")

    refused(await cli("cycle", "close", cycle, "--reason", "done", env=as_author), "forbidden", "leadership")
    as_coo = {**as_office, "PLANLOOP_TOKEN": t["coo"]}
    closed = answer(await cli("cycle", "close", cycle, "--reason", "year over", "--json", env=as_coo))
    assert closed["closed"] and closed["command"] == "CloseCycle"
    refused(await cli("cycle", "close", cycle, "--reason", "again", env=as_coo), "cycle_closed")
    # The progress comes from the store and the plan list: every plan closed, as the plans record it.
    async with httpx.AsyncClient(base_url=live_api, timeout=60) as http:
        after = await poll(
            http, f"/cycles/{cycle}", admin, lambda c: c["progress"]["close_sent"] == len(scenario.UNITS)
        )
    assert after["closed"] and after["progress"]["phases"] == {"closed": len(scenario.UNITS)}
    closed_cycles = answer(await cli("cycle", "list", "--state", "closed", "--json", env=as_office))
    assert [c["cycle_id"] for c in closed_cycles] == [cycle] and closed_cycles[0]["closed"]
    assert cycle not in [
        c["cycle_id"] for c in answer(await cli("cycle", "list", "--state", "open", "--json", env=as_office))
    ]


async def test_tracking_of_an_executing_plan(
    live_api: str, store: EventStore, dev_server_env: WorkflowEnvironment
) -> None:
    t = await tokens(store, office=(Role.ADMIN,), erp=(Role.INTEGRATION,))
    admin = {"Authorization": f"Bearer {t['office']}"}
    async with httpx.AsyncClient(base_url=live_api, timeout=60) as http:
        cycle, months = await executing.executing_cycle(http, admin, dev_server_env.client, ["C1"], 2)
        actual = {
            "measure": "revenue",
            "month": months[0],
            "value": "4242",
            "currency": "EUR",
            "source": "erp",
        }
        erp = {"Authorization": f"Bearer {t['erp']}"}
        recorded = await http.post(
            f"/cycles/{cycle}/plans/C1/commands/RecordActual", json=actual, headers=erp
        )
        assert recorded.status_code == 200, recorded.text
        await poll(
            http,
            f"/cycles/{cycle}/plans/C1/tracking",
            admin,
            lambda page: any(line["actual"] is not None for line in page["lines"]),
        )
    env = {"PLANLOOP_API_URL": live_api, "PLANLOOP_TOKEN": t["erp"]}
    found = answer(await cli("tracking", cycle, "C1", "--measure", "revenue", "--json", env=env))
    line = next(line for line in found["lines"] if line["month"] == months[0])
    assert (line["measure"], line["actual"], line["source"]) == ("revenue", "4242", "erp")
    assert {line["measure"] for line in found["lines"]} == {"revenue"}
    shown = await cli("tracking", cycle, "C1", env=env)
    assert f"tracking of plan C1 in {cycle}" in shown.stdout and "4242" in shown.stdout
    assert "K01" in shown.stdout  # the CSF's targets are tracked beside revenue
    refused(await cli("tracking", cycle, "NOPE", env=env), "plan_not_found")


async def test_a_missing_token_or_an_unreachable_api_is_one_line(live_api: str) -> None:
    refused(
        await cli("plan", "list", "FY", env={"PLANLOOP_API_URL": live_api, "PLANLOOP_TOKEN": ""}),
        "no API token",
    )
    refused(
        await cli("inbox", env={"PLANLOOP_API_URL": live_api, "PLANLOOP_TOKEN": "pl_nonsense"}),
        "unauthenticated",
        "unknown or revoked",
    )
    refused(
        await cli("inbox", env={"PLANLOOP_API_URL": "http://127.0.0.1:9", "PLANLOOP_TOKEN": "pl_x"}),
        "cannot reach the API",
    )
