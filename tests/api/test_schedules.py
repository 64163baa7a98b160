"""Temporal Schedules through the API, on the dev server (the time-skipping server has none): create an
open_cycle and an actuals_reminder schedule, list them, pause and resume one, trigger each now (once per
Idempotency-Key) and see its effect (a cycle opened from the template; a reminder recorded in the event
store), delete them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from domain.base import month_add
from eventstore import EventStore
from planloop.api.auth import Role
from planloop.api.schedules import fire_now
from tests.api.conftest import MakeToken, cycle_definition, unique_cycle, wait_for_plans
from tests.workflows import scenario


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_schedules_are_created_listed_triggered_and_deleted(
    http: httpx.AsyncClient,
    admin: Any,
    make_token: MakeToken,
    dev_server_env: WorkflowEnvironment,
    store: EventStore,
) -> None:
    leadership = await make_token("coo", Role.LEADERSHIP)
    tag = uuid.uuid4().hex[:6].upper()
    template = {
        "hierarchy": scenario.hierarchy().model_dump(mode="json"),
        "cycle_id_pattern": f"T{tag}-FY{{year}}",
        "gate_deadline_days": {"region": 30, "global": 45},
    }
    open_id = f"open-fy-{tag.lower()}"
    created = await http.post(
        "/schedules",
        json={"schedule_id": open_id, "kind": "open_cycle", "template": template},
        headers=leadership,
    )
    assert created.status_code == 201, created.text
    view = created.json()
    # Each October 1st at 06:00 UTC by default.
    assert all((t[5:7], t[8:10], t[11:16]) == ("10", "01", "06:00") for t in view["next_firings"]), view

    # A reminder of a cycle whose execution period holds last month, on the 1st of every month.
    reminded = unique_cycle()
    definition = cycle_definition(reminded)
    now = datetime.now(UTC)
    definition["calendar"]["execution_start"] = month_add(f"{now.year:04d}-{now.month:02d}", -2)
    assert (await http.post("/cycles", json=definition, headers=admin)).status_code == 201
    await wait_for_plans(http, admin, reminded, ("DE",))
    remind_id = f"remind-{tag.lower()}"
    body = {"schedule_id": remind_id, "kind": "actuals_reminder", "cycle_id": reminded}
    assert (await http.post("/schedules", json=body, headers=leadership)).status_code == 201
    twice = await http.post("/schedules", json=body, headers=leadership)
    assert (twice.status_code, twice.json()["code"]) == (409, "schedule_exists")

    # Refused: a template that opens no valid cycle, a cycle that does not exist, a planner.
    broken = {**template, "gate_deadline_days": {}}  # no deadlines for the gates: no valid approval chain
    answer = await http.post(
        "/schedules",
        json={"schedule_id": f"x-{tag}", "kind": "open_cycle", "template": broken},
        headers=admin,
    )
    assert (answer.status_code, answer.json()["code"]) == (422, "invalid_org"), answer.text
    answer = await http.post(
        "/schedules",
        json={"schedule_id": f"y-{tag}", "kind": "actuals_reminder", "cycle_id": "NOPE"},
        headers=admin,
    )
    assert answer.status_code == 404
    planner = await make_token("de-mgr", Role.PLANNER)
    assert (await http.get("/schedules", headers=planner)).status_code == 403

    listed = (await http.get("/schedules", headers=leadership)).json()
    assert {s["schedule_id"]: s["kind"] for s in listed} == {
        open_id: "open_cycle",
        remind_id: "actuals_reminder",
    }

    # Paused, with a reason: Temporal holds the pause and the note; pausing again answers the same.
    reason = {"reason": "the cycle's calendar is under review"}
    for _ in range(2):
        paused = await http.post(f"/schedules/{remind_id}/pause", json=reason, headers=leadership)
        assert paused.status_code == 200, paused.text
        assert (paused.json()["paused"], paused.json()["note"]) == (
            True,
            "paused by coo: the cycle's calendar is under review",
        )
    held = (await dev_server_env.client.get_schedule_handle(remind_id).describe()).schedule.state
    assert (held.paused, held.note) == (True, "paused by coo: the cycle's calendar is under review")
    listed = (await http.get("/schedules", headers=leadership)).json()
    assert {s["schedule_id"]: s["paused"] for s in listed} == {open_id: False, remind_id: True}
    # Refused, changing nothing: a reason with a control character (shown to people), a schedule not there.
    answer = await http.post(f"/schedules/{open_id}/pause", json={"reason": "a\x1b[2Jb"}, headers=leadership)
    assert (answer.status_code, answer.json()["code"]) == (422, "invalid_request"), answer.text
    assert (await http.get(f"/schedules/{open_id}", headers=leadership)).json()["paused"] is False
    answer = await http.post("/schedules/no-such/resume", headers=leadership)
    assert (answer.status_code, answer.json()["code"]) == (404, "not_found"), answer.text

    # Trigger both now and see what they did (the paused reminder too: a trigger is not its calendar).
    assert (await http.post(f"/schedules/{open_id}/trigger", headers=leadership)).status_code == 202
    once = {**leadership, "Idempotency-Key": f"trigger-{tag}"}
    first = await http.post(f"/schedules/{remind_id}/trigger", headers=once)
    again = await http.post(f"/schedules/{remind_id}/trigger", headers=once)
    assert (first.status_code, again.status_code) == (202, 202), again.text
    assert "Idempotent-Replayed" not in first.headers and again.headers["Idempotent-Replayed"] == "true"
    opened = f"T{tag}-FY{now.year + 1}"

    async def cycle_open() -> bool:
        return (await http.get(f"/cycles/{opened}", headers=admin)).status_code == 200

    await eventually(cycle_open, f"the schedule to open {opened}")
    shown = (await http.get(f"/cycles/{opened}", headers=admin)).json()
    assert shown["calendar"]["execution_start"] == f"{now.year + 1}-01" and shown["plans"] == len(
        scenario.UNITS
    )
    cycle_events = await store.read_stream(f"cycle:{opened}")
    assert cycle_events[0].metadata["actor"] == f"schedule:{open_id}"
    assert cycle_events[0].metadata["on_behalf_of"] == "coo"

    async def reminder_recorded() -> bool:
        return bool(await store.read_stream(f"reminder:{reminded}"))

    await eventually(reminder_recorded, "the reminder to be recorded")
    reminder = (await store.read_stream(f"reminder:{reminded}"))[0]
    assert reminder.type == "ActualsReminderIssued"
    assert reminder.data["month"] == month_add(f"{now.year:04d}-{now.month:02d}", -1)

    async def fired() -> bool:
        view = (await http.get(f"/schedules/{open_id}", headers=leadership)).json()
        return view["firings"] == 1 and len(view["recent_firings"]) == 1

    await eventually(fired, "the firing to show")

    async def reminded_once() -> bool:
        return (await http.get(f"/schedules/{remind_id}", headers=leadership)).json()["firings"] == 1

    await eventually(reminded_once, "the reminder's firing to show")
    assert len(await store.read_stream(f"reminder:{reminded}")) == 1
    # An API that died after firing and before storing its answer: the retry that takes the key over fires
    # with the same request id (the principal's and the key's), and Temporal does not fire again.
    await fire_now(dev_server_env.client, remind_id, f"coo:trigger-{tag}")

    # Resumed without a reason: on its calendar again. (Temporal applies a schedule's patches in order, so
    # the repeated firing above has been dealt with when the resume shows.)
    resumed = await http.post(f"/schedules/{remind_id}/resume", headers=leadership)
    assert resumed.status_code == 200, resumed.text
    assert (resumed.json()["paused"], resumed.json()["note"]) == (False, "resumed by coo")
    assert resumed.json()["firings"] == 1, resumed.json()
    assert resumed.json()["next_firings"], resumed.json()
    held = (await dev_server_env.client.get_schedule_handle(remind_id).describe()).schedule.state
    assert held.paused is False

    # Deleted: gone from planloop and from Temporal; the cycle it opened stays. A delete retried with its
    # Idempotency-Key answers 204 again; without a key, a second delete finds nothing.
    for schedule_id in (open_id, remind_id):
        keyed = {**leadership, "Idempotency-Key": f"delete-{schedule_id}"}
        assert (await http.delete(f"/schedules/{schedule_id}", headers=keyed)).status_code == 204
        again = await http.delete(f"/schedules/{schedule_id}", headers=keyed)
        assert again.status_code == 204 and again.headers["idempotent-replayed"] == "true"
        assert (await http.delete(f"/schedules/{schedule_id}", headers=leadership)).status_code == 404
        assert (await http.get(f"/schedules/{schedule_id}", headers=leadership)).status_code == 404
        try:
            await dev_server_env.client.get_schedule_handle(schedule_id).describe()
        except RPCError:
            pass
        else:
            raise AssertionError(f"Temporal still has schedule {schedule_id}")
    assert (await http.get("/schedules", headers=leadership)).json() == []
    assert await cycle_open()
    assert len(await store.read_stream(f"reminder:{reminded}")) == 1  # still one: the retry fired nothing
