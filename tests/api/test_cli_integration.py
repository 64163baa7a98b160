"""The CLI's integration commands against a served API: `events` (pages by cursor, and --follow that wakes
on a new event), `webhook ...` (subscribe a real receiver, see its deliveries, pause, resume, delete),
`inbound ...` (register, list, revoke) and `schedule ...` (create, list, show, pause, resume, trigger,
delete)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from click.testing import Result
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from eventstore import EventStore
from planloop.api.auth import Role
from planloop.integration import verify_signature
from tests.api.conftest import cycle_definition, unique_cycle, wait_for_plans
from tests.api.test_cli_reads import answer, cli, refused, tokens
from tests.api.test_plans import draft
from tests.conftest import free_port
from tests.workflows import scenario

SECRET = "cli-test-secret-0123456789"


def json_lines(result: Result) -> list[dict[str, Any]]:
    """The --json lines of a streaming command (feed events, then the cursor), without the worker's logs."""
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return [line for line in lines if "position" in line or "next_cursor" in line]


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[list[bytes], str]]:
    """A webhook receiver on loopback that checks each signature; what it received, and its URL."""
    received: list[bytes] = []

    async def hook(request: Request) -> Response:
        body = await request.body()
        verify_signature(
            SECRET, request.headers["x-planloop-timestamp"], body, request.headers["x-planloop-signature"]
        )
        received.append(body)
        return Response(status_code=204)

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=[Route("/hook", hook, methods=["POST"])]),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield received, f"http://127.0.0.1:{port}/hook"
    finally:
        server.should_exit = True
        await serving


async def eventually(check: Any, what: str, timeout: float = 30) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await check()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_events_and_webhooks_from_the_command_line(
    live_api: str, store: EventStore, receiver: tuple[list[bytes], str]
) -> None:
    received, url = receiver
    t = await tokens(store, office=(Role.ADMIN,), crm=(Role.INTEGRATION,), de_mgr=(Role.PLANNER,))
    as_crm = {"PLANLOOP_API_URL": live_api, "PLANLOOP_TOKEN": t["crm"]}
    cycle = unique_cycle()
    admin = {"Authorization": f"Bearer {t['office']}"}
    author = {"Authorization": f"Bearer {t['de_mgr']}"}
    async with httpx.AsyncClient(base_url=live_api, timeout=60) as http:
        assert (await http.post("/cycles", json=cycle_definition(cycle), headers=admin)).status_code == 201
        await wait_for_plans(http, admin, cycle, scenario.UNITS)

    # One page, then the next from its cursor: later positions, nothing twice.
    first = json_lines(await cli("events", "--limit", "3", "--json", env=as_crm))
    assert [len(first), "next_cursor" in first[-1]] == [4, True]
    second = json_lines(
        await cli("events", "--after", first[-1]["next_cursor"], "--limit", "2", "--json", env=as_crm)
    )
    assert len(second) == 3
    assert min(e["position"] for e in second[:-1]) > max(e["position"] for e in first[:-1])
    table = await cli("events", "--limit", "2", env=as_crm)
    assert "2 event(s)" in table.stdout and "CycleOpened" in table.stdout
    assert "resume with: planloop events --after" in table.stderr
    cursor = first[-1]["next_cursor"]
    while True:  # to the end of the feed
        page = json_lines(await cli("events", "--after", cursor, "--limit", "1000", "--json", env=as_crm))
        cursor = page[-1]["next_cursor"]
        if len(page) == 1:
            break

    # A webhook for revisions, then --follow from the end: the next revision wakes both.
    created = answer(
        await cli(
            "webhook",
            "subscribe",
            url,
            "--event-type",
            "RevisionRecorded",
            "--secret",
            SECRET,
            "--json",
            env=as_crm,
        )
    )
    subscription = created["id"]
    assert created["secret"] == SECRET and created["event_types"] == ["RevisionRecorded"]
    following = asyncio.create_task(
        cli("events", "--follow", "--after", cursor, "--count", "1", "--wait", "5", "--json", env=as_crm)
    )
    async with httpx.AsyncClient(base_url=live_api, timeout=60) as http:
        revised = await http.post(
            f"/cycles/{cycle}/plans/DE/commands/ReviseStrategy", json=draft(cycle, "DE"), headers=author
        )
        assert revised.status_code == 200, revised.text
    followed = json_lines(await following)
    assert [(e["type"], e["stream_id"]) for e in followed[:-1]] == [("RevisionRecorded", f"plan:{cycle}:DE")]
    assert followed[-1]["next_cursor"] != cursor

    async def delivered() -> Any:
        found = answer(await cli("webhook", "deliveries", subscription, "--json", env=as_crm))
        return found if found["counts"].get("delivered") == 1 else None

    deliveries = await eventually(delivered, "the webhook delivery")
    [delivery] = deliveries["deliveries"]
    assert (delivery["event_type"], delivery["status"], delivery["attempts"]) == (
        "RevisionRecorded",
        "delivered",
        1,
    )
    assert json.loads(received[0])["event_id"] == delivery["event_id"] == followed[0]["event_id"]
    shown = await cli("webhook", "deliveries", subscription, env=as_crm)
    assert "1 delivered" in shown.stdout and "RevisionRecorded" in shown.stdout
    assert (
        answer(await cli("webhook", "deliveries", subscription, "--status", "failed", "--json", env=as_crm))[
            "deliveries"
        ]
        == []
    )

    # Pause, resume, list, delete.
    assert not answer(await cli("webhook", "pause", subscription, "--json", env=as_crm))["active"]
    shown = await cli("webhook", "list", env=as_crm)
    assert subscription in shown.stdout and "paused" in shown.stdout and url in shown.stdout
    assert "paused (its deliveries wait" in (await cli("webhook", "pause", subscription, env=as_crm)).stdout
    assert answer(await cli("webhook", "resume", subscription, "--json", env=as_crm))["active"]
    listed = answer(await cli("webhook", "list", "--json", env=as_crm))
    assert [(s["id"], s["active"]) for s in listed] == [(subscription, True)]
    assert answer(await cli("webhook", "delete", subscription, "--json", env=as_crm)) == {
        "deleted": subscription
    }
    assert answer(await cli("webhook", "list", "--json", env=as_crm)) == []
    refused(await cli("webhook", "delete", subscription, env=as_crm), "not_found", "webhook subscription")
    refused(await cli("webhook", "deliveries", subscription, env=as_crm), "not_found")
    refused(await cli("webhook", "subscribe", "ftp://x", env=as_crm), "invalid_request")
    as_author = {**as_crm, "PLANLOOP_TOKEN": t["de_mgr"]}
    refused(await cli("webhook", "list", env=as_author), "forbidden", "integration")
    refused(await cli("events", env=as_author), "forbidden", "reading the event feed")


async def test_inbound_sources_and_schedules_from_the_command_line(
    live_api: str, store: EventStore, tmp_path: Path
) -> None:
    t = await tokens(store, office=(Role.ADMIN,), coo=(Role.LEADERSHIP,))
    as_office = {"PLANLOOP_API_URL": live_api, "PLANLOOP_TOKEN": t["office"]}
    as_coo = {**as_office, "PLANLOOP_TOKEN": t["coo"]}

    # Inbound sources: registered with a secret shown once, listed without it, revoked.
    registered = answer(await cli("inbound", "register", "erp-cli", "--scope", "DE", "--json", env=as_office))
    assert registered["url"] == "/inbound/erp-cli/actuals" and len(registered["secret"]) >= 32
    listed = answer(await cli("inbound", "list", "--json", env=as_office))
    assert [(s["source"], s["actor"], s["scopes"]) for s in listed] == [
        ("erp-cli", "inbound:erp-cli", ["DE"])
    ]
    assert "secret" not in listed[0]
    shown = await cli("inbound", "list", env=as_office)
    assert "erp-cli" in shown.stdout and registered["secret"] not in shown.stdout
    refused(await cli("inbound", "register", "erp-2", env=as_coo), "forbidden", "admin")
    assert answer(await cli("inbound", "revoke", "erp-cli", "--json", env=as_office)) == {
        "revoked": "erp-cli"
    }
    assert answer(await cli("inbound", "list", "--json", env=as_office)) == []
    refused(await cli("inbound", "revoke", "erp-cli", env=as_office), "not_found")

    # Schedules: a monthly actuals reminder of an open cycle, and a yearly cycle from a template file.
    cycle = unique_cycle()
    admin = {"Authorization": f"Bearer {t['office']}"}
    async with httpx.AsyncClient(base_url=live_api, timeout=60) as http:
        assert (await http.post("/cycles", json=cycle_definition(cycle), headers=admin)).status_code == 201
    remind = f"remind-{cycle.lower()}"
    created = answer(
        await cli(
            "schedule", "create", remind, "--kind", "actuals_reminder", "--cycle", cycle,
            "--day", "3", "--hour", "7", "--json", env=as_coo,
        )
    )  # fmt: skip
    assert created["kind"] == "actuals_reminder" and created["created_by"] == "coo" and not created["paused"]
    assert all((f[8:10], f[11:16]) == ("03", "07:00") for f in created["next_firings"]), created[
        "next_firings"
    ]
    template = tmp_path / "template.yaml"
    template.write_text(
        yaml.safe_dump(
            {
                "hierarchy": scenario.hierarchy().model_dump(mode="json"),
                "cycle_id_pattern": "CLI{year}",
                "gate_deadline_days": {"region": 30, "global": 45},
            }
        )
    )
    yearly = f"open-{cycle.lower()}"
    made = await cli(
        "schedule", "create", yearly, "--kind", "open_cycle", "--template", str(template),
        "--cron", "0 6 1 10 *", "--paused", env=as_coo,
    )  # fmt: skip
    assert made.exit_code == 0 and f"created schedule {yearly} (open_cycle)" in made.stdout, made.output
    listed = answer(await cli("schedule", "list", "--json", env=as_coo))
    assert {(s["schedule_id"], s["paused"]) for s in listed} == {(remind, False), (yearly, True)}
    shown = await cli("schedule", "list", env=as_coo)
    assert "2 schedule(s)" in shown.stdout and remind in shown.stdout and cycle in shown.stdout
    paused = answer(
        await cli("schedule", "pause", remind, "--reason", "calendar review", "--json", env=as_coo)
    )
    assert (paused["paused"], paused["note"]) == (True, "paused by coo: calendar review")
    assert (
        "note: paused by coo: calendar review" in (await cli("schedule", "show", remind, env=as_coo)).stdout
    )
    resumed = await cli("schedule", "resume", yearly, env=as_coo)
    assert resumed.exit_code == 0 and f"resumed schedule {yearly}; next firing" in resumed.stdout, (
        resumed.output
    )
    listed = answer(await cli("schedule", "list", "--json", env=as_coo))
    assert {(s["schedule_id"], s["paused"]) for s in listed} == {(remind, True), (yearly, False)}
    refused(await cli("schedule", "resume", "no-such", env=as_coo), "not_found")
    key = f"trigger-{cycle}"
    triggered = answer(
        await cli("schedule", "trigger", remind, "--idempotency-key", key, "--json", env=as_coo)
    )
    retried = answer(await cli("schedule", "trigger", remind, "--idempotency-key", key, "--json", env=as_coo))
    assert retried == triggered
    assert triggered["schedule_id"] == remind

    async def fired() -> bool:
        return bool(answer(await cli("schedule", "show", remind, "--json", env=as_coo))["firings"] >= 1)

    await eventually(fired, "the triggered firing")
    assert "fired" in (await cli("schedule", "show", remind, env=as_coo)).stdout
    refused(
        await cli("schedule", "create", remind, "--kind", "actuals_reminder", "--cycle", cycle, env=as_coo),
        "schedule_exists",
    )
    refused(
        await cli(
            "schedule", "create", "x", "--kind", "actuals_reminder", "--cycle", cycle,
            "--cron", "* * * * *", "--day", "2", env=as_coo,
        ),
        "not both",
    )  # fmt: skip
    refused(await cli("schedule", "create", "y", "--kind", "open_cycle", env=as_coo), "invalid_request")
    for schedule_id in (remind, yearly):
        assert answer(await cli("schedule", "delete", schedule_id, "--json", env=as_coo)) == {
            "deleted": schedule_id
        }
    refused(await cli("schedule", "show", remind, env=as_coo), "not_found")
    assert answer(await cli("schedule", "list", "--json", env=as_coo)) == []
