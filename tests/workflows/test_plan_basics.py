"""PlanWorkflow: commands as Updates, refused commands leave no trace, events reach the store."""

from __future__ import annotations

import uuid

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain import Phase, PlanState, decode_event, replay
from domain import commands as cmd
from eventstore import EventStore
from tests.domain import factory as f
from workflows import PlanWorkflow, plan_id
from workflows.contracts import CommandResult, PlanCommand, PlanStart, PlanSummary


async def start_plan(env: WorkflowEnvironment, task_queue: str, unit: str | None = None) -> WorkflowHandle:
    # Workflow ids are unique per server, and the server lives for the whole test session.
    unit = unit or f"DE-{uuid.uuid4().hex[:8].upper()}"
    pid = plan_id("FY2027", unit)
    return await env.client.start_workflow(
        PlanWorkflow.run,
        PlanStart(plan_id=pid, open=f.open_plan(unit_id=unit)),
        id=pid,
        task_queue=task_queue,
    )


async def send(
    handle: WorkflowHandle, command: cmd.CommandBase, request_id: str | None = None
) -> CommandResult:
    return await handle.execute_update(
        command.type,  # type: ignore[attr-defined]
        PlanCommand(command=command, request_id=request_id),  # type: ignore[arg-type]
        result_type=CommandResult,
    )


async def stored_state(store: EventStore, pid: str) -> PlanState:
    return replay(decode_event(e.type, e.schema_version, e.data) for e in await store.read_stream(pid))


async def test_a_plan_is_drafted_submitted_and_refusals_leave_no_trace(
    time_skipping_env: WorkflowEnvironment, skipping_worker: Worker, task_queue: str, store: EventStore
) -> None:
    handle = await start_plan(time_skipping_env, task_queue)
    now = f.T0
    revised = await send(
        handle, cmd.ReviseStrategy(actor=f.AUTHOR, at=now, content=f.content(), reason="draft")
    )
    assert (revised.revision, revised.phase, revised.events) == (1, Phase.DRAFTING, ["RevisionRecorded"])

    history_before = len((await handle.fetch_history()).events)
    stored_before = await store.stream_version(handle.id)
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await send(handle, cmd.ApprovePlan(actor=f.COUNTRY, at=now, content_hash="0" * 64))
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "not_in_review"
    assert cause.message
    # The validator refused it: no update was accepted, no activity ran, nothing was stored.
    added = (await handle.fetch_history()).events[history_before:]
    kinds = {EventType.Name(e.event_type) for e in added}
    assert not {k for k in kinds if "UPDATE" in k or "ACTIVITY" in k}, kinds
    assert await store.stream_version(handle.id) == stored_before

    submitted = await send(handle, cmd.SubmitForApproval(actor=f.AUTHOR, at=now))
    assert submitted.phase == Phase.IN_REVIEW
    summary = await handle.query(PlanWorkflow.summary, result_type=PlanSummary)
    assert summary.stream_version == submitted.stream_version == await store.stream_version(handle.id)
    live = await handle.query(PlanWorkflow.state, result_type=PlanState)
    assert live == await stored_state(store, handle.id)
    stored = await store.read_stream(handle.id)
    assert stored[-1].metadata["actor"] == f.AUTHOR
    assert stored[-1].metadata["workflow_id"] == handle.id


async def test_a_request_answered_once_is_answered_again_without_acting(
    time_skipping_env: WorkflowEnvironment, skipping_worker: Worker, task_queue: str, store: EventStore
) -> None:
    handle = await start_plan(time_skipping_env, task_queue)
    revise = cmd.ReviseStrategy(actor=f.AUTHOR, at=f.T0, content=f.content(), reason="draft")
    key = str(uuid.uuid4())
    first = await send(handle, revise, request_id=key)
    again = await send(handle, revise, request_id=key)
    assert not first.duplicate and again.duplicate
    assert again.stream_version == first.stream_version
    assert len(await store.read_stream(handle.id)) == first.stream_version


async def test_a_request_id_reused_for_another_command_is_refused(
    time_skipping_env: WorkflowEnvironment, skipping_worker: Worker, task_queue: str, store: EventStore
) -> None:
    handle = await start_plan(time_skipping_env, task_queue)
    key = str(uuid.uuid4())
    await send(handle, cmd.ReviseStrategy(actor=f.AUTHOR, at=f.T0, content=f.content(), reason="draft"), key)
    version = await store.stream_version(handle.id)
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await send(handle, cmd.SubmitForApproval(actor=f.AUTHOR, at=f.T0), request_id=key)
    assert isinstance(caught.value.cause, ApplicationError)
    assert caught.value.cause.type == "request_id_reused"
    assert "ReviseStrategy" in caught.value.cause.message
    assert await store.stream_version(handle.id) == version


async def test_opening_and_closing_are_not_for_callers(
    time_skipping_env: WorkflowEnvironment, skipping_worker: Worker, task_queue: str
) -> None:
    handle = await start_plan(time_skipping_env, task_queue)
    for command in (cmd.ClosePlan(actor=f.AUTHOR, at=f.T0, reason="done"), f.open_plan()):
        with pytest.raises(WorkflowUpdateFailedError):
            await send(handle, command)
    summary = await handle.query(PlanWorkflow.summary, result_type=PlanSummary)
    assert summary.phase == Phase.DRAFTING


async def test_regression_a_plan_that_cannot_open_fails_with_the_reason_instead_of_hanging(
    time_skipping_env: WorkflowEnvironment, skipping_worker: Worker, task_queue: str, store: EventStore
) -> None:
    # Its opening was decided in the workflow's constructor, where a refusal failed every workflow task
    # for ever; now the run fails with the domain's reason.
    pid = plan_id("FY2027", f"DE-{uuid.uuid4().hex[:8].upper()}")
    own_gate = f.chain()[0].model_copy(update={"approvers": (f.AUTHOR,), "fallback_approver": f.AUTHOR})
    handle = await time_skipping_env.client.start_workflow(
        PlanWorkflow.run,
        PlanStart(plan_id=pid, open=f.open_plan(approval_chain=(own_gate,))),
        id=pid,
        task_queue=task_queue,
    )
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    assert isinstance(caught.value.cause, ApplicationError) and caught.value.cause.type == "invalid_chain"
    assert await store.stream_version(pid) == 0
