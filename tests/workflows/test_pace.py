"""A compressed calendar (a cycle's pace, for demos and training): the workflows' calendar runs faster than
the wall clock, their durable timers sleep the compressed durations, and every event carries calendar time.

On the time-skipping server, whose clock stands still while the workflows work and jumps to the next timer
when they wait, so the moments a paced plan acts at can be pinned exactly.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain import Event, Phase, decode_event
from domain import commands as cmd
from domain.calendar import CycleCalendar
from domain.cycle import OpenCycle
from eventstore import EventStore
from tests.domain import factory as f
from tests.workflows import scenario
from tests.workflows.resilience import (
    approve_through,
    content_for,
    send,
    start_execution,
    state_of,
)
from workflows import CycleWorkflow, PlanWorkflow, cycle_workflow_id, plan_id
from workflows.contracts import CycleProgress, CycleStart, Pace, PlanStart

DAY = timedelta(days=1)


# -- the mapping itself --------------------------------------------------------------------------------------


def test_a_pace_maps_real_time_to_calendar_time_and_back() -> None:
    real = datetime(2030, 5, 1, 12, tzinfo=UTC)
    pace = Pace(speed=86_400, calendar_origin=datetime(2026, 10, 1, tzinfo=UTC), real_origin=real)
    # A calendar day passes every real second.
    assert pace.calendar_at(real) == datetime(2026, 10, 1, tzinfo=UTC)
    assert pace.calendar_at(real + timedelta(seconds=31)) == datetime(2026, 11, 1, tzinfo=UTC)
    assert pace.real_at(datetime(2026, 11, 1, tzinfo=UTC)) == real + timedelta(seconds=31)
    # Timers are rounded up to the millisecond, so they never wake before the calendar moment.
    assert pace.real_duration(timedelta(days=2)) == timedelta(seconds=2)
    assert pace.real_duration(timedelta(seconds=1)) == timedelta(milliseconds=1)
    assert pace.calendar_at(real + pace.real_duration(timedelta(hours=7))) >= pace.calendar_at(
        real
    ) + timedelta(hours=7)


def test_a_fast_calendar_stops_at_the_end_of_year_9999_instead_of_failing_its_workflows() -> None:
    real = datetime(2030, 5, 1, 12, tzinfo=UTC)
    pace = Pace(speed=10_000_000, calendar_origin=datetime(2026, 10, 1, tzinfo=UTC), real_origin=real)
    end = datetime.max.replace(tzinfo=UTC)
    # A year every three seconds: some 8,000 years are left after an hour, none after a day.
    assert pace.calendar_at(real + timedelta(hours=1)) < end
    assert pace.calendar_at(real + timedelta(days=1)) == end
    assert pace.calendar_at(real + timedelta(days=365_000)) == end


@pytest.mark.parametrize("speed", [0, 0.5, 1e9])
def test_a_pace_outside_its_range_is_refused(speed: float) -> None:
    with pytest.raises(ValueError, match="speed"):
        Pace(speed=speed, calendar_origin=datetime(2026, 10, 1, tzinfo=UTC), real_origin=datetime.now(UTC))


# -- helpers -------------------------------------------------------------------------------------------------


async def server_now(env: WorkflowEnvironment) -> datetime:
    return (await env.get_current_time()).astimezone(UTC)


async def until(env: WorkflowEnvironment, moment: datetime) -> None:
    """Let the server's time pass until the real moment ``moment``: the paced timers fire on the way."""
    left = moment - await server_now(env)
    if left > timedelta(0):
        await env.sleep(left)


async def settled(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30.0) -> None:
    """Wait (in real time) until the workflow has recorded what its timer started."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def events_of(store: EventStore, stream_id: str, *types: str) -> list[Event]:
    stored = await store.read_stream(stream_id)
    decoded = [decode_event(e.type, e.schema_version, e.data) for e in stored]
    return [e for e in decoded if not types or e.type in types]  # type: ignore[union-attr]


async def timers(
    env: WorkflowEnvironment, handle: WorkflowHandle, run_id: str | None = None
) -> list[timedelta]:
    """The durations of the durable timers a run started, in order."""
    history = await env.client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
    return [
        e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
    ]


async def start_paced_plan(
    env: WorkflowEnvironment, task_queue: str, pace: Pace, **open_overrides: object
) -> WorkflowHandle:
    unit = f"DE-{uuid.uuid4().hex[:8].upper()}"
    pid = plan_id(f.calendar().cycle_id, unit)
    return await env.client.start_workflow(
        PlanWorkflow.run,
        PlanStart(plan_id=pid, open=f.open_plan(unit_id=unit, **open_overrides), pace=pace),
        id=pid,
        task_queue=task_queue,
    )


def within(moment: datetime, start: datetime, slack: timedelta) -> bool:
    return start <= moment <= start + slack


# -- gate deadlines ------------------------------------------------------------------------------------------


async def test_a_paced_plans_gate_reminder_and_escalation_fire_at_the_compressed_moments(
    time_skipping_env: WorkflowEnvironment, skipping_worker: Worker, task_queue: str, store: EventStore
) -> None:
    env = time_skipping_env
    # A calendar day every real minute, from 1 October 2026 (the factory's country gate is due on 15 October).
    pace = Pace(
        speed=1440, calendar_origin=datetime(2026, 10, 1, tzinfo=UTC), real_origin=await server_now(env)
    )
    handle = await start_paced_plan(env, task_queue, pace)
    await send(handle, cmd.ReviseStrategy(actor=f.AUTHOR, at=f.T0, content=f.content(), reason="draft"))
    await send(handle, cmd.SubmitForApproval(actor=f.AUTHOR, at=f.T0))

    # Every event carries calendar time, not the server's.
    (opened,) = await events_of(store, handle.id, "PlanOpened")
    (submitted,) = await events_of(store, handle.id, "PlanSubmitted")
    assert within(opened.at, pace.calendar_origin, timedelta(hours=1)), opened.at
    assert within(submitted.at, opened.at, timedelta(hours=1)), submitted.at

    # The reminder is due two days before the gate's deadline: 12 calendar days = 12 real minutes, and
    # that is how long the plan's durable timer sleeps (real time would be 12 days).
    deadline = datetime(2026, 10, 15, tzinfo=UTC)
    reminder_at = deadline - 2 * DAY
    assert (await state_of(handle)).gate.due_at == deadline  # type: ignore[union-attr]
    slept = (await timers(env, handle))[-1]
    assert timedelta(minutes=11, seconds=50) < slept <= timedelta(minutes=12), slept

    await until(env, pace.real_at(reminder_at) - timedelta(seconds=10))
    assert await events_of(store, handle.id, "GateReminderSent") == []

    async def reminded() -> bool:
        return bool(await events_of(store, handle.id, "GateReminderSent"))

    await until(env, pace.real_at(reminder_at) + timedelta(seconds=10))
    await settled(reminded, "the gate reminder")
    (reminder,) = await events_of(store, handle.id, "GateReminderSent")
    assert within(reminder.at, reminder_at, timedelta(hours=1)), reminder.at

    async def escalated() -> bool:
        return bool(await events_of(store, handle.id, "GateEscalated"))

    await until(env, pace.real_at(deadline) - timedelta(seconds=10))
    assert not await escalated()
    await until(env, pace.real_at(deadline) + timedelta(seconds=10))
    await settled(escalated, "the gate escalation")
    (escalation,) = await events_of(store, handle.id, "GateEscalated")
    assert within(escalation.at, deadline, timedelta(hours=1)), escalation.at


# -- a year of execution and the next iteration --------------------------------------------------------------


async def test_a_paced_plan_closes_its_months_on_the_compressed_calendar_and_keeps_its_pace_as_new(
    time_skipping_env: WorkflowEnvironment, skipping_worker: Worker, task_queue: str, store: EventStore
) -> None:
    env = time_skipping_env
    calendar: CycleCalendar = f.calendar()
    # The year (20 December 2026 to the last close, 5 January 2028) passes in about an hour of real time.
    speed = 381 * 86_400 / 3600
    pace = Pace(
        speed=speed, calendar_origin=datetime(2026, 12, 20, tzinfo=UTC), real_origin=await server_now(env)
    )
    handle = await start_paced_plan(env, task_queue, pace)
    first_run = (await handle.describe()).run_id
    await send(handle, cmd.ReviseStrategy(actor=f.AUTHOR, at=f.T0, content=content_for(2027), reason="draft"))
    await approve_through(handle)
    await start_execution(handle, 2027)
    assert (await state_of(handle)).phase is Phase.EXECUTING

    # The first deadline is January's close on 5 February, about 47 calendar days on: some 445 real seconds.
    first_close = calendar.close_at("2027-01")
    slept = (await timers(env, handle))[-1]
    expected = pace.real_duration(first_close - pace.calendar_origin)
    assert expected - timedelta(seconds=10) < slept <= expected, (slept, expected)

    await until(env, pace.real_at(first_close) - timedelta(seconds=5))
    assert await events_of(store, handle.id, "MonthlyReportIssued") == []

    async def reported() -> bool:
        return bool(await events_of(store, handle.id, "MonthlyReportIssued"))

    await until(env, pace.real_at(first_close) + timedelta(seconds=5))
    await settled(reported, "January's close")
    (overdue,) = await events_of(store, handle.id, "ActualsOverdue")
    assert overdue.month == "2027-01" and within(overdue.at, first_close, timedelta(hours=1)), overdue  # type: ignore[union-attr]

    # The rest of the year: every close, every quarter's review falling due, and the period's end, each at
    # its calendar moment.
    last_close = calendar.close_at(calendar.months()[-1])

    async def learning() -> bool:
        return bool(await events_of(store, handle.id, "ExecutionPeriodClosed"))

    await until(env, pace.real_at(last_close) + timedelta(seconds=5))
    await settled(learning, "the end of the execution period")
    reports = await events_of(store, handle.id, "MonthlyReportIssued")
    assert [r.report.month for r in reports] == list(calendar.months())  # type: ignore[union-attr]
    for report in reports:
        close = calendar.close_at(report.report.month)  # type: ignore[union-attr]
        assert within(report.at, close, timedelta(hours=1)), (report.report.month, report.at)  # type: ignore[union-attr]
    reviews_due = await events_of(store, handle.id, "QuarterlyReviewDue")
    assert [(r.quarter, r.due_at) for r in reviews_due] == [  # type: ignore[union-attr]
        (q, calendar.quarter_review_due(q)) for q in range(1, 5)
    ]
    for due in reviews_due:
        assert within(due.at, due.due_at, timedelta(hours=1))  # type: ignore[union-attr]
    (period_end,) = await events_of(store, handle.id, "PeriodEndReached")
    assert within(period_end.at, last_close, timedelta(hours=1)), period_end.at
    assert (await state_of(handle)).phase is Phase.LEARNING

    # Learn and refine: the next iteration is a new run, which keeps the cycle's pace.
    await send(
        handle,
        cmd.ScorePlan(actor=f.GLOBAL[0], at=f.T0, plan_quality=7, execution_effectiveness=6, rationale="ok"),
    )
    await send(handle, cmd.RecordLesson(actor=f.AUTHOR, at=f.T0, text="Flag missing actuals earlier."))
    await send(
        handle,
        cmd.RefineStrategy(
            actor=f.AUTHOR, at=f.T0, content=content_for(2028), reason="FY2028", lesson_links=()
        ),
    )

    async def continued() -> bool:
        return (await handle.describe()).run_id != first_run

    await settled(continued, "the next iteration's run")
    second_run = (await handle.describe()).run_id
    history = await env.client.get_workflow_handle(handle.id, run_id=second_run).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    (carried,) = await env.client.data_converter.decode(started.input.payloads, [PlanStart])
    assert carried.pace == pace and carried.state.iteration == 2

    # In the new run, a submission's gate (its calendar deadline long past, so five days' grace) reminds
    # after three calendar days: about 28 real seconds, not three days.
    await send(handle, cmd.SubmitForApproval(actor=f.AUTHOR, at=f.T0))
    slept = (await timers(env, handle, second_run))[-1]
    assert timedelta(seconds=25) < slept <= pace.real_duration(3 * DAY), slept


# -- the cycle hands its pace to its plans -------------------------------------------------------------------


async def test_a_paced_cycle_opens_on_calendar_time_and_hands_its_pace_to_every_plan(
    time_skipping_env: WorkflowEnvironment, skipping_worker: Worker, task_queue: str, store: EventStore
) -> None:
    env = time_skipping_env
    cycle_id = f"FYP{uuid.uuid4().hex[:6].upper()}"
    origin = datetime(2026, 10, 1, tzinfo=UTC)
    pace = Pace(speed=1440, calendar_origin=origin, real_origin=await server_now(env))
    opening = OpenCycle(
        actor=scenario.PLANNING_OFFICE,
        at=await server_now(env),
        calendar=scenario.calendar(cycle_id, origin),
        hierarchy=scenario.hierarchy(),
    )
    handle = await env.client.start_workflow(
        CycleWorkflow.run,
        CycleStart(open=opening, pace=pace),
        id=cycle_workflow_id(cycle_id),
        task_queue=task_queue,
    )

    async def all_started() -> bool:
        progress = await handle.query(CycleWorkflow.progress, result_type=CycleProgress)
        return progress.started == len(scenario.UNITS)

    await settled(all_started, "the cycle to start its plans")
    (cycle_opened,) = await events_of(store, cycle_workflow_id(cycle_id))
    assert within(cycle_opened.at, origin, timedelta(hours=1)), cycle_opened.at  # type: ignore[union-attr]
    for unit in scenario.UNITS:
        pid = plan_id(cycle_id, unit)

        async def opened(pid: str = pid) -> bool:
            return bool(await events_of(store, pid, "PlanOpened"))

        await settled(opened, f"the plan of {unit} to open")
        (plan_opened,) = await events_of(store, pid, "PlanOpened")
        assert within(plan_opened.at, origin, timedelta(hours=1)), (unit, plan_opened.at)
        history = await env.client.get_workflow_handle(pid).fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        (plan_start,) = await env.client.data_converter.decode(started.input.payloads, [PlanStart])
        assert plan_start.pace == pace
