"""Workflow replay: every run of a real plan's Temporal history replays against the current code; a workflow
changed without a patch guard is reported as not reproducing the record, naming the event and the reason."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from domain import commands as cmd
from eventstore import EventStore
from planloop.audit.replay import WorkflowNotFound, replay_history, replay_plan_workflow, workflow_id_of
from planloop.worker import make_replayer, make_worker, workflow_runner
from tests.audit.altered_workflow import UnguardedPlanWorkflow
from tests.audit.conftest import Recorded
from tests.domain import factory as f
from tests.workflows.resilience import (
    Run,
    approve_through,
    content_for,
    runs_of,
    send,
    start_execution,
    start_plan,
)
from tests.workflows.test_continue_as_new import suggesting_env  # noqa: F401  (a fixture)
from workflows import CycleWorkflow

FIXTURES = Path(__file__).resolve().parents[1] / "workflows" / "histories"


def altered_replayer() -> Replayer:
    """Today's workers, except that PlanWorkflow has an unguarded change."""
    return Replayer(
        workflows=[UnguardedPlanWorkflow, CycleWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )


async def settled_runs(client: Client, workflow_id: str, first_run_id: str) -> list[Run]:
    """The runs once the newest has finished its first workflow task: a plan that has just continued as new
    has a run whose history may still grow by its first decisions."""
    for _ in range(100):
        newest = await client.get_workflow_handle(workflow_id).fetch_history()
        types = [e.event_type for e in newest.events]
        if EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED in types and types[-1] not in (
            EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
            EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
        ):
            return await runs_of(client, workflow_id, first_run_id)
        await asyncio.sleep(0.1)
    raise AssertionError(f"the newest run of {workflow_id} did not finish its first workflow task in 10 s")


def fixture(name: str) -> WorkflowHistory:
    recorded = json.loads((FIXTURES / f"{name}.json").read_text())
    return WorkflowHistory.from_json(recorded["workflow_id"], recorded["history"])


async def test_every_run_of_a_plan_that_continued_as_new_replays_and_a_changed_workflow_does_not(
    suggesting_env: WorkflowEnvironment,  # noqa: F811
    store: EventStore,
) -> None:
    client, task_queue = suggesting_env.client, f"audit-replay-{uuid.uuid4().hex[:8]}"
    async with make_worker(client, store, task_queue):
        handle = await start_plan(client, task_queue)
        await send(handle, cmd.ReviseStrategy(actor=f.AUTHOR, at=f.T0, content=content_for(2027), reason="d"))
        await approve_through(handle)
        await start_execution(handle, 2027)
        assert handle.first_execution_run_id is not None
        chain = await settled_runs(client, handle.id, handle.first_execution_run_id)
        assert len(chain) >= 3, "the plan should have continued as new at least twice"

        report = await replay_plan_workflow(client, handle.id)
        assert report.reproduced and report.workflow_id == handle.id and not report.unavailable_runs
        assert [r.run_id for r in report.runs] == [r.run_id for r in chain]
        assert [r.history_events for r in report.runs] == [r.history_length for r in chain]
        assert {r.ended for r in report.runs[:-1]} == {"continued as new"} and report.runs[
            -1
        ].ended == "running"
        assert all(r.failure is None and r.failed_event_id is None for r in report.runs)

        altered = await replay_plan_workflow(client, handle.id, altered_replayer())
        assert not altered.reproduced and len(altered.runs) == len(chain)
        first = altered.runs[0]
        assert not first.reproduced and first.run_id == chain[0].run_id
        # The opening append, the run's first scheduled activity, is where the unguarded timer parts ways.
        history = await client.get_workflow_handle(handle.id, run_id=first.run_id).fetch_history()
        opening = next(
            e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        )
        assert (first.failed_event_id, first.failed_event_type) == (opening.event_id, "ActivityTaskScheduled")
        assert first.failure is not None and "Nondeterminism" in first.failure
        # Every run that took a command parts ways at the added timer. The newest run may not have: a run
        # whose only decision so far is a timer matches the added one (replay compares commands, not the
        # durations of timers).
        assert all(not r.reproduced for r in altered.runs[:-1])


async def test_recorded_fixtures_replay_with_the_current_code_and_not_with_a_changed_one() -> None:
    for name in ("plan-DE-run1", "plan-DE-run2"):
        history = fixture(name)
        current = await replay_history(make_replayer(), history)
        assert current.reproduced and current.failure is None, name
        assert current.run_id == history.run_id and current.history_events == len(history.events)
        changed = await replay_history(altered_replayer(), history)
        assert not changed.reproduced and changed.failed_event_id == 5, name
        assert changed.failure is not None and changed.failure.startswith("[TMPRL1100] Nondeterminism error")
    assert (await replay_history(make_replayer(), fixture("plan-DE-run1"))).ended == "continued as new"


async def test_a_run_fetched_before_its_first_decision_replays_as_running() -> None:
    # The newest run of a plan that has just continued as new can be fetched holding only its start event;
    # temporalio's Replayer waited for ever on such a history (a suite run hung on it; a hang now fails this
    # test through pytest-timeout: the Replayer does not give up when cancelled, so no wait_for here).
    recorded = fixture("plan-DE-run2")
    for length in (1, 2, 3):
        started = WorkflowHistory(recorded.workflow_id, recorded.events[:length])
        run = await replay_history(make_replayer(), started)
        assert (run.reproduced, run.ended, run.history_events, run.failure) == (True, "running", length, None)


async def test_the_api_replays_a_real_plans_workflow(
    recorded: Recorded, http: httpx.AsyncClient, auditor: Any, app: Any
) -> None:
    base = f"/audit/cycles/{recorded.cycle_id}/plans"
    answer = await http.get(f"{base}/{recorded.unit_id}/workflow-replay", headers=auditor)
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    assert shown["workflow_id"] == recorded.stream_id and shown["reproduced"] is True
    (run,) = shown["runs"]
    assert run["reproduced"] and run["ended"] == "running" and run["failure"] is None
    described = await app.state.client.get_workflow_handle(recorded.stream_id).describe()
    assert run["run_id"] == described.run_id and run["history_events"] == described.history_length
    missing = await http.get(f"{base}/XX/workflow-replay", headers=auditor)
    assert (missing.status_code, missing.json()["code"]) == (404, "plan_not_found")
    quoted = await http.get(f"{base}/D'E/workflow-replay", headers=auditor)
    assert (quoted.status_code, quoted.json()["code"]) == (422, "invalid_request")
    assert "plan:" in quoted.json()["message"] and "quotes" in quoted.json()["message"]


async def test_an_id_that_would_break_the_visibility_query_is_refused_before_any_query(
    dev_server_env: WorkflowEnvironment,
) -> None:
    # A workflow whose id holds a quote (no worker needed: it only has to exist). Its id in the visibility
    # query ended the quoted string: an RPCError, which the API answered with a 500.
    client = dev_server_env.client
    workflow_id = f"plan:FY-{uuid.uuid4().hex[:6]}:D'E"
    handle = await client.start_workflow("NoSuchWorkflow", id=workflow_id, task_queue=f"none-{uuid.uuid4()}")
    try:
        with pytest.raises(ValueError, match='holds "\'": the replay names the workflow in a Temporal query'):
            await replay_plan_workflow(client, workflow_id)
    finally:
        await handle.terminate()


async def test_an_unknown_workflow_is_named(dev_server_env: WorkflowEnvironment) -> None:
    with pytest.raises(WorkflowNotFound, match="has no workflow plan:FY-NONE:XX"):
        await replay_plan_workflow(dev_server_env.client, "plan:FY-NONE:XX")


def test_a_plan_is_named_by_cycle_and_unit_or_by_its_workflow_id() -> None:
    assert workflow_id_of("FY2027/DE-SALES") == "plan:FY2027:DE-SALES"
    assert workflow_id_of(" plan:FY2027:DE-SALES ") == "plan:FY2027:DE-SALES"
    for wrong in ("FY2027", "FY2027/", "FY2027/DE/SALES", "cycle:FY2027", "plan:FY2027"):
        with pytest.raises(ValueError, match="CYCLE/UNIT"):
            workflow_id_of(wrong)
    for unquotable in ("FY2027/DE'SALES", "plan:FY2027:DE\\SALES", 'FY2027/DE"'):
        with pytest.raises(ValueError, match="check the cycle and the unit"):
            workflow_id_of(unquotable)
