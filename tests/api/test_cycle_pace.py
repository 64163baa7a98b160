"""A cycle opened with a pace (demos, training): its calendar runs faster than the wall clock, and its
events carry calendar time. A pace that cannot work is refused and opens nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from domain import decode_event
from domain.calendar import Pace
from eventstore import EventStore
from planloop.api.pace import MONTH
from tests.api.conftest import cycle_definition, unique_cycle, wait_for_plans
from tests.workflows import scenario
from workflows import cycle_workflow_id, plan_id


@pytest.fixture(autouse=True)
def paced_cycles_allowed(app: FastAPI) -> None:
    """These tests run on an installation meant for demos and training."""
    app.state.settings = app.state.settings.model_copy(update={"paced_cycles": True})


async def opened_at(store: EventStore, stream_id: str) -> datetime:
    first = (await store.read_stream(stream_id))[0]
    return decode_event(first.type, first.schema_version, first.data).at  # type: ignore[union-attr]


async def test_a_paced_cycle_records_calendar_time_and_answers_its_pace(
    http: httpx.AsyncClient, admin: Any, store: EventStore
) -> None:
    cycle_id = unique_cycle()
    starts = datetime(2026, 10, 1, tzinfo=UTC)
    before = datetime.now(UTC)
    body = {
        **cycle_definition(cycle_id),
        "pace": {"month_seconds": 60, "calendar_starts_at": starts.isoformat()},
    }
    answer = await http.post("/cycles", json=body, headers=admin)
    assert answer.status_code == 201, answer.text
    pace = Pace.model_validate(answer.json()["pace"])
    assert pace.speed == pytest.approx(MONTH.total_seconds() / 60)
    assert pace.calendar_origin == starts and before <= pace.real_origin <= datetime.now(UTC)

    await wait_for_plans(http, admin, cycle_id, scenario.UNITS)
    # A calendar month per real minute: what took seconds here is hours on the cycle's calendar, and
    # nowhere near today's date.
    elapsed = datetime.now(UTC) - pace.real_origin
    for stream in (cycle_workflow_id(cycle_id), plan_id(cycle_id, "DE")):
        at = await opened_at(store, stream)
        assert starts <= at <= starts + elapsed * pace.speed, (stream, at)
    # The cycle's history says its times are calendar times.
    first = (await store.read_stream(cycle_workflow_id(cycle_id)))[0]
    assert first.type == "CycleOpened"
    assert decode_event(first.type, first.schema_version, first.data).pace == pace  # type: ignore[union-attr]


async def test_an_unpaced_cycle_runs_on_real_time(
    http: httpx.AsyncClient, admin: Any, store: EventStore
) -> None:
    cycle_id = unique_cycle()
    before = datetime.now(UTC)
    answer = await http.post("/cycles", json=cycle_definition(cycle_id), headers=admin)
    assert answer.status_code == 201, answer.text
    assert answer.json()["pace"] is None
    await wait_for_plans(http, admin, cycle_id, scenario.UNITS)
    at = await opened_at(store, cycle_workflow_id(cycle_id))
    assert before - timedelta(seconds=1) <= at <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("pace", "fragment"),
    [
        ({"month_seconds": 6, "speed": 1000}, "either month_seconds or speed"),
        ({}, "either month_seconds or speed"),
        ({"month_seconds": 0.01}, "choose a rate in that range"),
        ({"speed": 0.5}, "choose a rate in that range"),
        ({"month_seconds": 6, "weeks": 2}, "weeks"),
    ],
)
async def test_a_pace_that_cannot_work_is_refused_and_opens_nothing(
    http: httpx.AsyncClient, admin: Any, pace: dict[str, Any], fragment: str
) -> None:
    cycle_id = unique_cycle()
    answer = await http.post("/cycles", json={**cycle_definition(cycle_id), "pace": pace}, headers=admin)
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] == "invalid_request"
    assert "pace" in answer.json()["message"] and fragment in answer.json()["message"], answer.json()
    assert (await http.get(f"/cycles/{cycle_id}", headers=admin)).status_code == 404


async def test_a_pace_is_refused_where_paced_cycles_are_off_and_opens_nothing(
    app: FastAPI, http: httpx.AsyncClient, admin: Any, store: EventStore
) -> None:
    # A pace sets the business time of every decision in the cycle, back-dated if its calendar starts in
    # the past: an installation not meant for demos refuses it.
    app.state.settings = app.state.settings.model_copy(update={"paced_cycles": False})
    cycle_id = unique_cycle()
    body = {**cycle_definition(cycle_id), "pace": {"speed": 1, "calendar_starts_at": "2020-01-01T00:00:00Z"}}
    answer = await http.post("/cycles", json=body, headers=admin)
    assert answer.status_code == 403, answer.text
    assert answer.json()["code"] == "paced_cycles_off"
    assert "PLANLOOP_PACED_CYCLES" in answer.json()["message"]
    assert await store.read_stream(cycle_workflow_id(cycle_id)) == []
