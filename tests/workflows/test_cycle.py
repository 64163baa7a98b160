"""CycleWorkflow: plans started in batches (and once only, across continue-as-new), the roll-up of their
figures, the close of a cycle closing its open plans, refusals that leave no trace, plans that outlive a
missing cycle."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain import GateMode, OrgHierarchy, OrgLevel, OrgUnit, Phase, PlanState, decode_event, replay
from domain import commands as cmd
from domain.cycle import CloseCycle, OpenCycle
from domain.rollup import consolidate_figures, rollup
from eventstore import EventStore
from planloop.readmodels import catch_up
from planloop.readmodels.figures import PlanFiguresProjection, cycle_figures
from tests.domain import factory as f
from tests.workflows.scenario import AUTHORS, UNITS, YearScenario, content
from workflows import CycleWorkflow, PlanWorkflow, cycle_workflow_id, plan_id
from workflows.contracts import (
    CommandResult,
    CycleCommand,
    CycleCommandResult,
    CycleProgress,
    CycleStart,
    PlanCommand,
    PlanStart,
)


def generated_hierarchy(regions: int, countries_per_region: int) -> OrgHierarchy:
    units = [
        OrgUnit(
            unit_id="HQ",
            name="Global",
            level=OrgLevel.GLOBAL,
            approvers=("ceo", "cfo"),
            approval_mode=GateMode.ALL,
            fallback_approver="board-chair",
        )
    ]
    for r in range(regions):
        region = f"R{r:02d}"
        units.append(
            OrgUnit(
                unit_id=region,
                name=f"Region {r}",
                level=OrgLevel.REGION,
                parent_id="HQ",
                head=f"{region}-head",
                approvers=(f"{region}-cfo",),
                fallback_approver=f"{region}-deputy",
            )
        )
        units += [
            OrgUnit(
                unit_id=f"{region}-C{c:03d}",
                name=f"Country {c} of region {r}",
                level=OrgLevel.COUNTRY,
                parent_id=region,
                head=f"{region}-C{c:03d}-mgr",
            )
            for c in range(countries_per_region)
        ]
    return OrgHierarchy(units=tuple(units))


def unique_cycle() -> str:
    # Workflow ids are unique per server, and the server lives for the whole test session.
    return f"FY-{uuid.uuid4().hex[:8].upper()}"


async def close(handle: WorkflowHandle, reason: str, request_id: str | None = None) -> CycleCommandResult:
    command = CloseCycle(actor="planning-office", at=f.T0, reason=reason)
    return await handle.execute_update(
        CycleWorkflow.close_cycle, CycleCommand(command=command, request_id=request_id)
    )


async def test_a_cycle_starts_hundreds_of_plans_in_batches_once_across_continue_as_new(
    dev_server_env: WorkflowEnvironment, dev_worker: Worker, task_queue: str, store: EventStore
) -> None:
    # On the dev server: the time-skipping test server keeps a parent's run that continued as new with
    # abandoned children as "pending" and then never skips time again for the rest of the session.
    env, cycle = dev_server_env, unique_cycle()
    org = generated_hierarchy(regions=4, countries_per_region=74)  # 300 plans below global
    calendar = f.calendar().model_copy(update={"cycle_id": cycle})
    handle = await env.client.start_workflow(
        CycleWorkflow.run,
        # A low history limit makes the cycle continue as new while it is still starting plans.
        CycleStart(
            open=OpenCycle(actor="system:crm", at=f.T0, calendar=calendar, hierarchy=org),
            batch_size=40,
            history_limit=150,
        ),
        id=cycle_workflow_id(cycle),
        task_queue=task_queue,
    )
    first_run = handle.result_run_id
    plans = [u.unit_id for u in org.units_below_global()]

    async def progress() -> CycleProgress:
        return await handle.query(CycleWorkflow.progress, result_type=CycleProgress)

    # Plans start in hierarchy order, so the last one running means every batch went out.
    for _ in range(600):
        with contextlib.suppress(RPCError):
            if (await env.client.get_workflow_handle(plan_id(cycle, plans[-1])).describe()).run_id:
                break
        await asyncio.sleep(0.05)
    # The cycle counts a batch once all its starts have answered, a workflow task after the last plan
    # runs: under load that can trail the plan itself, so wait for the count too (bounded).
    for _ in range(600):
        progress_now = await progress()
        if progress_now.started == len(plans):
            break
        await asyncio.sleep(0.05)
    assert progress_now.started == progress_now.plans == len(plans) == 300
    assert progress_now.phases == {"drafting": 300}
    assert (await handle.describe()).run_id != first_run  # continued as new on the way

    # Every plan runs, each opened exactly once; the cycle's own stream holds one opening.
    descriptions = await asyncio.gather(
        *(env.client.get_workflow_handle(plan_id(cycle, u)).describe() for u in plans)
    )
    assert {d.status.name for d in descriptions} == {"RUNNING"}
    for _ in range(600):  # each plan stores its opening in its first workflow task
        versions = await asyncio.gather(*(store.stream_version(plan_id(cycle, u)) for u in plans))
        if set(versions) == {1}:
            break
        await asyncio.sleep(0.05)
    assert set(versions) == {1}
    assert [e.type for e in await store.read_stream(cycle_workflow_id(cycle))] == ["CycleOpened"]

    # Some plans draft: the roll-up (the plan figures read model, as the API serves it) consolidates them
    # up their region and the company, exactly as the stored plan streams do.
    drafting = [u for u in plans if u.startswith(("R01-C00", "R02-C01"))] + ["R01"]
    for i, unit in enumerate(drafting):
        draft = cmd.ReviseStrategy(
            actor=org.unit(unit).head or "", at=f.T0, content=f.content(scale=(i + 1) * 100), reason="draft"
        )
        await env.client.get_workflow_handle(plan_id(cycle, unit)).execute_update(
            draft.type, PlanCommand(command=draft), result_type=CommandResult
        )
    stored = {}
    for unit in plans:
        events = await store.read_stream(plan_id(cycle, unit))
        stored[unit] = replay(decode_event(e.type, e.schema_version, e.data) for e in events)  # type: ignore[misc]
    # The feed holds back events while any transaction on the PostgreSQL server is older: catch up until in.
    for _ in range(400):
        await catch_up(store, PlanFiguresProjection())
        figures = await cycle_figures(store.pool, cycle)
        versions = {u: x.version for u, x in figures.items()}
        if versions == {u: s.version for u, s in stored.items()}:
            break
        await asyncio.sleep(0.05)
    assert len(figures) == 300 and versions == {u: s.version for u, s in stored.items()}
    expected = rollup(org, stored)
    for unit in ("HQ", "R01", "R02", "R03", drafting[0]):
        assert consolidate_figures(unit, org, figures) == expected[unit], unit
    # A draft changes the plan's figures, not its progress code (phase and flags): the cycle, which keeps
    # only the codes, is not signalled (it used to be, after every command).
    drafted = await env.client.get_workflow_handle(plan_id(cycle, drafting[0])).fetch_history()
    kinds = [EventType.Name(e.event_type) for e in drafted.events]
    assert "EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED" not in kinds
    assert "EVENT_TYPE_MARKER_RECORDED" in kinds  # the workflow.patched marker of the change
    region = expected["R01"]
    scales = {unit: (i + 1) * 100 for i, unit in enumerate(drafting)}
    in_r01 = ["R01", *(f"R01-C{c:03d}" for c in range(10))]
    assert region.phases == {"drafting": 75} and region.plans == tuple(in_r01)
    assert region.forecast == {"EUR": sum(f.content(scale=scales[u]).forecast_total() for u in in_r01)}

    # Closing the cycle closes every plan, in batches too; the cycle then completes.
    closed = await close(handle, "the fiscal year is over")
    assert closed.events == ["CycleClosed"] and closed.closed
    outcome = await handle.result()
    assert (outcome.plans, outcome.close_sent) == (300, 300)
    # Across all the cycle's runs, each plan was started exactly once, and no run's history grew long.
    starts: list[str] = []
    lengths: list[int] = []
    run_id: str | None = first_run
    while run_id:
        history = await env.client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        lengths.append(len(history.events))
        starts += [
            e.start_child_workflow_execution_initiated_event_attributes.workflow_id
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
        ]
        last = history.events[-1]
        run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id or None
    assert sorted(starts) == sorted(plan_id(cycle, u) for u in plans)
    assert len(lengths) > 2 and max(lengths) < 150 + 4 * 40, lengths  # the limit plus one batch's events
    # Wait for every plan to finish closing: a plan left with a pending task on this test's task queue
    # would hold the session's time-skipping server still for every later test.
    handles = [env.client.get_workflow_handle(plan_id(cycle, u)) for u in plans]
    for _ in range(600):
        statuses = {d.status.name for d in await asyncio.gather(*(h.describe() for h in handles))}
        if statuses == {"COMPLETED"}:
            break
        await asyncio.sleep(0.1)
    assert statuses == {"COMPLETED"}
    for plan in handles[:: len(handles) // 10]:
        stored = await store.read_stream(plan.id)
        assert [e.type for e in stored] == ["PlanOpened", "PlanClosed"]


async def test_closing_a_cycle_closes_its_open_plans_and_refusals_leave_no_trace(
    time_skipping_env: WorkflowEnvironment, skipping_worker: Worker, task_queue: str, store: EventStore
) -> None:
    year = YearScenario(time_skipping_env, task_queue, cycle_id=unique_cycle())
    handle = await year.open_cycle()
    await year.send(
        "BR",
        cmd.ReviseStrategy(actor=AUTHORS["BR"], at=f.T0, content=content("BR", year.months), reason="draft"),
    )
    await year.send("FR", cmd.CancelPlan(actor=AUTHORS["FR"], at=f.T0, reason="France is served from DE"))

    history_before = len((await handle.fetch_history()).events)
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await close(handle, "  ")
    assert isinstance(caught.value.cause, ApplicationError)
    assert caught.value.cause.type == "reason_required"
    # The validator refused it: no update accepted, nothing appended (plans' signals may have come in).
    added = (await handle.fetch_history()).events[history_before:]
    assert not {k for k in (EventType.Name(e.event_type) for e in added) if "UPDATE" in k or "ACTIVITY" in k}

    first = await close(handle, "FY closed by the planning office", request_id="close-1")
    assert first.events == ["CycleClosed"] and first.stream_version == 2
    outcome = await handle.result()
    assert outcome.stream_version == 2
    cycle_events = await store.read_stream(cycle_workflow_id(year.cycle_id))
    assert [e.type for e in cycle_events] == ["CycleOpened", "CycleClosed"]
    assert cycle_events[1].metadata["request_id"] == "close-1"
    for unit in UNITS:
        await year.plan(unit).result()
        state = await year.plan(unit).query(PlanWorkflow.state, result_type=PlanState)
        if unit == "FR":
            assert state.phase is Phase.CANCELLED
            continue
        assert state.phase is Phase.CLOSED
        assert state.end_reason == f"cycle {year.cycle_id} closed: FY closed by the planning office"
        last = (await store.read_stream(year.plan(unit).id))[-1]
        assert (last.type, last.metadata["actor"], last.metadata["source"]) == (
            "PlanClosed",
            "planning-office",
            "cycle",
        )


async def test_a_plan_whose_cycle_is_gone_carries_on(
    time_skipping_env: WorkflowEnvironment, skipping_worker: Worker, task_queue: str, store: EventStore
) -> None:
    unit = f"DE-{uuid.uuid4().hex[:8].upper()}"
    pid = plan_id("FY2027", unit)
    handle = await time_skipping_env.client.start_workflow(
        PlanWorkflow.run,
        PlanStart(plan_id=pid, open=f.open_plan(unit_id=unit), cycle_workflow_id="cycle:NO-SUCH-CYCLE"),
        id=pid,
        task_queue=task_queue,
    )
    for command in (
        cmd.ReviseStrategy(actor=f.AUTHOR, at=f.T0, content=f.content(), reason="draft"),
        cmd.SubmitForApproval(actor=f.AUTHOR, at=f.T0),
    ):
        await handle.execute_update(command.type, PlanCommand(command=command), result_type=CommandResult)
    await time_skipping_env.sleep(timedelta(seconds=1))
    state = await handle.query(PlanWorkflow.state, result_type=PlanState)
    assert state.phase is Phase.IN_REVIEW and await store.stream_version(pid) == 3
    # The failed signals are in the history as such; no workflow task failed over them.
    kinds = [EventType.Name(e.event_type) for e in (await handle.fetch_history()).events]
    assert "EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED" in kinds
    assert "EVENT_TYPE_WORKFLOW_TASK_FAILED" not in kinds
    # Ended, so that its gate deadlines do not wake it later on a task queue nobody polls.
    cancel = cmd.CancelPlan(actor=f.AUTHOR, at=f.T0, reason="test over")
    await handle.execute_update(cancel.type, PlanCommand(command=cancel), result_type=CommandResult)
    await handle.result()
