"""Workflow replay: does the current code reproduce every decision a plan's workflow recorded?

Temporal keeps each run's history: every command the workflow issued (activities, timers, signals,
continue-as-new) and every input it got (updates, timer firings, activity results). Replaying a history
with temporalio's ``Replayer`` runs the current workflow code against those inputs and checks that it
issues exactly the recorded commands; the first difference is a nondeterminism error naming the history
event where the code and the record part ways.

A plan continues as new at each iteration (and when its history grows long), so one plan is several
runs: every run is fetched and replayed, oldest first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from workflows import plan_id

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHistory
    from temporalio.worker import Replayer

_PLAN_ID = re.compile(r"^plan:[^:/\s]+:[^:/\s]+$")
# Core's failure text: 'Failure { failure: Some(Failure { message: "[TMPRL1100] Nondeterminism error: …", …'
_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')
_EVENT = re.compile(r"HistoryEvent\(id: (\d+), (\w+)\)")
_ENDINGS = {
    "WORKFLOW_EXECUTION_COMPLETED": "completed",
    "WORKFLOW_EXECUTION_FAILED": "failed",
    "WORKFLOW_EXECUTION_TIMED_OUT": "timed out",
    "WORKFLOW_EXECUTION_CANCELED": "cancelled",
    "WORKFLOW_EXECUTION_TERMINATED": "terminated",
    "WORKFLOW_EXECUTION_CONTINUED_AS_NEW": "continued as new",
}


class WorkflowNotFound(LookupError):
    """Temporal has no workflow of that id (in this namespace)."""


# The workflow id goes into a visibility query as a quoted string: a quote or a backslash would end or
# escape it (an RPCError, or a different query), a control character has no place in an id.
_UNQUOTABLE = re.compile(r"['\"\\\x00-\x1f\x7f]")


def check_workflow_id(workflow_id: str) -> str:
    """``workflow_id`` when a visibility query can name it; ValueError saying why not."""
    bad = _UNQUOTABLE.search(workflow_id)
    if bad is not None:
        raise ValueError(
            f"{workflow_id!r} holds {bad.group()!r}: the replay names the workflow in a Temporal query, "
            "which takes no quotes, backslashes or control characters in an id; a plan's id is made of its "
            "cycle's and unit's (e.g. plan:FY2027:DE-SALES), so check the cycle and the unit"
        )
    return workflow_id


def workflow_id_of(plan: str) -> str:
    """The plan's workflow id from ``FY2027/DE-SALES`` or from the id itself (``plan:FY2027:DE-SALES``)."""
    text = plan.strip()
    if _PLAN_ID.match(text):
        return check_workflow_id(text)
    cycle_id, slash, unit_id = text.partition("/")
    if slash and cycle_id and unit_id and "/" not in unit_id and ":" not in text:
        return check_workflow_id(plan_id(cycle_id, unit_id))
    raise ValueError(
        f"{plan!r} does not name a plan; write CYCLE/UNIT (e.g. FY2027/DE-SALES) "
        "or the workflow id (e.g. plan:FY2027:DE-SALES)"
    )


@dataclass(frozen=True)
class RunReplay:
    """The replay of one run of a plan's workflow."""

    run_id: str
    started_at: datetime
    ended: str  # how the run ended: completed, continued as new, ...; "running" while it runs
    history_events: int
    reproduced: bool  # the current code issued every recorded command, in order
    failure: str | None = None  # why not: the nondeterminism (or other replay failure) message
    failed_event_id: int | None = None  # the history event where the code and the record part ways
    failed_event_type: str | None = None


@dataclass(frozen=True)
class WorkflowReplay:
    """The replay of every run of one plan's workflow, oldest run first."""

    workflow_id: str
    runs: tuple[RunReplay, ...]
    unavailable_runs: tuple[str, ...] = ()  # runs a later run continued from that Temporal no longer keeps

    @property
    def reproduced(self) -> bool:
        return all(run.reproduced for run in self.runs)


async def replay_plan_workflow(
    client: Client, workflow_id: str, replayer: Replayer | None = None
) -> WorkflowReplay:
    """Fetch every run of the workflow and replay each against the current code (or ``replayer``'s).
    ValueError when the id cannot be a plan's (``check_workflow_id``)."""
    check_workflow_id(workflow_id)
    histories, unavailable = await run_histories(client, workflow_id)
    if replayer is None:
        from planloop.worker import make_replayer

        replayer = make_replayer()
    runs = [await replay_history(replayer, history) for history in histories]
    return WorkflowReplay(workflow_id=workflow_id, runs=tuple(runs), unavailable_runs=unavailable)


async def run_histories(client: Client, workflow_id: str) -> tuple[list[WorkflowHistory], tuple[str, ...]]:
    """Every run's history, oldest first, and the runs that are named but no longer kept.

    The runs of a plan are a chain: each run after the first records the run it continued from. The chain
    is walked back from the newest run (visibility, which lists runs, is only eventually consistent), and
    runs that visibility lists beside it (an id reused after a plan ended) are added."""
    from temporalio.service import RPCError, RPCStatusCode

    async def fetch(run_id: str | None) -> WorkflowHistory | None:
        try:
            return await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return None
            raise

    newest = await fetch(None)
    if newest is None:
        raise WorkflowNotFound(
            f"Temporal (namespace {client.namespace}) has no workflow {workflow_id}; check the plan's "
            "cycle and unit, and that this is the Temporal service the plans run on"
        )
    histories = {newest.run_id: newest}
    unavailable: list[str] = []
    previous = _continued_from(newest)
    while previous and previous not in histories:
        history = await fetch(previous)
        if history is None:  # past the namespace's retention
            unavailable.append(previous)
            break
        histories[previous] = history
        previous = _continued_from(history)
    async for execution in client.list_workflows(f"WorkflowId = '{check_workflow_id(workflow_id)}'"):
        if execution.run_id not in histories and execution.run_id not in unavailable:
            listed = await fetch(execution.run_id)
            if listed is not None:
                histories[execution.run_id] = listed
    ordered = sorted(histories.values(), key=lambda h: h.events[0].event_time.ToDatetime())
    return ordered, tuple(unavailable)


def _continued_from(history: WorkflowHistory) -> str:
    return history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id


async def replay_history(replayer: Replayer, history: WorkflowHistory) -> RunReplay:
    """Replay one run's history; a replay that fails says where and why instead of raising."""
    from temporalio.api.enums.v1 import EventType

    last = EventType.Name(history.events[-1].event_type).removeprefix("EVENT_TYPE_")
    run = RunReplay(
        run_id=history.run_id,
        started_at=history.events[0].event_time.ToDatetime(tzinfo=UTC),
        ended=_ENDINGS.get(last, "running"),
        history_events=len(history.events),
        reproduced=True,
    )
    if not any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED for e in history.events):
        # A run that has not finished its first workflow task (fetched just after it started, as the newest
        # run of a plan that has just continued as new can be) has recorded no decision to check. The
        # Replayer would also wait for ever on a history of the start event alone (temporalio 1.35).
        return run
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    if result.replay_failure is None:
        return run
    text = str(result.replay_failure)
    message = _MESSAGE.search(text)
    event = _EVENT.search(text)
    return replace(
        run,
        reproduced=False,
        failure=message.group(1) if message else f"{type(result.replay_failure).__name__}: {text}",
        failed_event_id=int(event.group(1)) if event else None,
        failed_event_type=event.group(2) if event else None,
    )
