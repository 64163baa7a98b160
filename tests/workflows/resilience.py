"""Shared tools of the resilience and continue-as-new tests: drive plans with retrying senders, follow a
plan's chain of runs, and check a plan's stored stream against its workflow.

The one check every test ends with, ``assert_consistent``: the stream's versions run 1..n without a gap,
no event id is stored twice, the hash chain verifies, every accepted command's events are stored exactly
once, and the state the workflow answers equals the fold of the stored events (what an auditor gets).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from domain import Csf, ForecastLine, MonthTarget, PlanContent, PlanState, Team, decode_event, replay
from domain import commands as cmd
from eventstore import EventStore, RecordedEvent
from tests.domain import factory as f
from workflows import PlanWorkflow, plan_id
from workflows.contracts import CommandResult, PlanCommand, PlanStart, PlanSummary

CYCLE = "FY2027"
PROFILE_SCALE = 1000


# -- sending commands --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    """A command the plan refused, with the domain error code."""

    command: str
    code: str


async def send(
    handle: WorkflowHandle,
    command: cmd.CommandBase,
    *,
    request_id: str | None = None,
    update_id: str | None = None,
    wait: float = 30,
    attempts: int = 4,
) -> CommandResult:
    """Send the command as its Update; one left unanswered for ``wait`` seconds (as can happen to an Update
    that reaches a run while it continues as new) is sent again with the same update and request ids, which
    the plan answers once."""
    update_id = update_id or f"upd-{uuid.uuid4()}"
    for attempt in range(attempts):
        try:
            return await asyncio.wait_for(
                handle.execute_update(
                    command.type,  # type: ignore[attr-defined]
                    PlanCommand(command=command, request_id=request_id or update_id),  # type: ignore[arg-type]
                    id=update_id,
                    result_type=CommandResult,
                ),
                wait,
            )
        except TimeoutError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


async def send_retrying(
    handle: WorkflowHandle,
    command: cmd.CommandBase,
    *,
    request_id: str | None = None,
    timeout: float = 120,
) -> CommandResult | Refused:
    """Send like a well-behaved client: on a transport failure resend with the same update and request
    ids until answered; a domain refusal is an answer (returned as Refused), not a failure."""
    request_id = request_id or f"req-{uuid.uuid4()}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await send(handle, command, request_id=request_id, update_id=request_id)
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            assert isinstance(cause, ApplicationError), repr(cause)
            return Refused(command.type, cause.type or "")  # type: ignore[attr-defined]
        except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def refusal_code(err: WorkflowUpdateFailedError) -> str:
    cause = err.cause
    assert isinstance(cause, ApplicationError), repr(cause)
    return cause.type or ""


# -- plans ---------------------------------------------------------------------------------------------


def new_unit() -> str:
    return f"DE-{uuid.uuid4().hex[:8].upper()}"


async def start_plan(
    client: Client, task_queue: str, unit: str | None = None, **open_overrides: Any
) -> WorkflowHandle:
    unit = unit or new_unit()
    pid = plan_id(CYCLE, unit)
    return await client.start_workflow(
        PlanWorkflow.run,
        PlanStart(plan_id=pid, open=f.open_plan(unit_id=unit, **open_overrides)),
        id=pid,
        task_queue=task_queue,
    )


async def state_of(handle: WorkflowHandle) -> PlanState:
    return await handle.query(PlanWorkflow.state, result_type=PlanState)


async def summary_of(handle: WorkflowHandle) -> PlanSummary:
    return await handle.query(PlanWorkflow.summary, result_type=PlanSummary)


def year_months(year: int) -> tuple[str, ...]:
    return tuple(f"{year}-{m:02d}" for m in range(1, 13))


def content_for(year: int, how_to_win: str | None = None) -> PlanContent:
    """The factory's plan content with goals and forecast moved to the given fiscal year."""
    base = f.content(PROFILE_SCALE)
    months = year_months(year)
    choices = base.choices
    if how_to_win is not None:
        choices = choices.model_copy(update={"how_to_win": how_to_win})
    return base.model_copy(
        update={
            "choices": choices,
            "goals": tuple(g.model_copy(update={"deadline": date(year, 12, 31)}) for g in base.goals),
            "forecast": tuple(
                ForecastLine(month=m, amount=f.eur(p * PROFILE_SCALE))
                for m, p in zip(months, f.PROFILE, strict=True)
            ),
        }
    )


def csf_for(year: int, csf_id: str, team: Team, owner: str, target: int = 10) -> Csf:
    base = f.csf(csf_id, team, owner, target)
    return base.model_copy(
        update={
            "monthly_targets": tuple(MonthTarget(month=m, target=Decimal(target)) for m in year_months(year))
        }
    )


async def approve_through(handle: WorkflowHandle) -> list[CommandResult]:
    """Submit the latest draft and walk it through every gate of the factory's chain."""
    results = [await send(handle, cmd.SubmitForApproval(actor=f.AUTHOR, at=f.T0))]
    state = await state_of(handle)
    assert state.submission is not None
    digest = state.submission.content_hash
    for approver in (f.COUNTRY, f.REGION[0], f.REGION[1], *f.GLOBAL):
        results.append(await send(handle, cmd.ApprovePlan(actor=approver, at=f.T0, content_hash=digest)))
    return results


async def start_execution(handle: WorkflowHandle, year: int) -> list[CommandResult]:
    """From a signed-off plan to an executing one with one sales and one marketing CSF."""
    at = f.T0
    results = [
        await send(
            handle,
            cmd.StartExecutionPlanning(
                actor=f.AUTHOR, at=at, sales_lead=f.SALES_LEAD, marketing_lead=f.MARKETING_LEAD
            ),
        )
    ]
    results += await asyncio.gather(
        send(handle, cmd.DefineCsf(actor=f.SALES_LEAD, at=at, csf=csf_for(year, "S1", Team.SALES, "anna"))),
        send(
            handle,
            cmd.DefineCsf(actor=f.MARKETING_LEAD, at=at, csf=csf_for(year, "M1", Team.MARKETING, "mark")),
        ),
    )
    results += await asyncio.gather(
        send(handle, cmd.ConfirmAlignment(actor=f.SALES_LEAD, at=at, team=Team.SALES)),
        send(handle, cmd.ConfirmAlignment(actor=f.MARKETING_LEAD, at=at, team=Team.MARKETING)),
    )
    results.append(await send(handle, cmd.StartExecution(actor=f.AUTHOR, at=at)))
    return results


async def executing_plan(client: Client, task_queue: str) -> tuple[WorkflowHandle, list[CommandResult]]:
    """A new FY2027 plan driven to execution (on a server whose clock is before 2027: no deadline due)."""
    handle = await start_plan(client, task_queue)
    results = [
        await send(
            handle, cmd.ReviseStrategy(actor=f.AUTHOR, at=f.T0, content=content_for(2027), reason="draft")
        )
    ]
    results += await approve_through(handle)
    results += await start_execution(handle, 2027)
    return handle, results


def actuals_for(year: int, months: Sequence[str] | None = None) -> list[cmd.RecordActual]:
    """On-target actuals (no deviation, so no extra timers) of revenue and both CSFs, month by month."""
    forecast = dict(zip(year_months(year), f.PROFILE, strict=True))
    out: list[cmd.RecordActual] = []
    for month in months or year_months(year):
        out.append(
            cmd.RecordActual(
                actor="system:erp",
                at=f.T0,
                measure="revenue",
                month=month,
                value=Decimal(forecast[month] * PROFILE_SCALE),
                currency="EUR",
                source="erp:sap",
            )
        )
        for csf_id in ("S1", "M1"):
            out.append(
                cmd.RecordActual(
                    actor="system:crm", at=f.T0, measure=csf_id, month=month, value=Decimal(10), source="crm"
                )
            )
    return out


def lesson_content(year: int, iteration: int) -> PlanContent:
    return content_for(year, how_to_win=f"Fast commissioning by certified partners (iteration {iteration}).")


# -- reading back ------------------------------------------------------------------------------------


def stored_state(events: Sequence[RecordedEvent]) -> PlanState:
    return replay(decode_event(e.type, e.schema_version, e.data) for e in events)


async def assert_consistent(
    handle: WorkflowHandle, store: EventStore, accepted: Sequence[CommandResult] = ()
) -> list[RecordedEvent]:
    """The plan's stream has no gap and no duplicate, every accepted command is stored exactly once, and
    the workflow's state equals the replay of the stream. Returns the stored events."""
    pid = handle.id
    events = await store.read_stream(pid)
    versions = [e.version for e in events]
    assert versions == list(range(1, len(events) + 1)), f"{pid}: versions are not 1..n: {versions}"
    ids = Counter(e.event_id for e in events)
    assert not [i for i, n in ids.items() if n > 1], f"{pid}: event ids stored twice"
    report = await store.verify(pid)
    assert not report.breaks, report.breaks

    by_request: dict[str, list[RecordedEvent]] = {}
    for e in events:
        request_id = e.metadata.get("request_id")
        if request_id:
            by_request.setdefault(request_id, []).append(e)
    for result in accepted:
        if result.duplicate:
            continue
        mine = by_request.get(result.request_id, [])
        assert [e.type for e in mine] == result.events, (
            f"{pid}: request {result.request_id} ({result.command}) answered {result.events} "
            f"but the store holds {[e.type for e in mine]}"
        )
        if mine:
            assert [e.version for e in mine] == list(
                range(result.stream_version - len(mine) + 1, result.stream_version + 1)
            ), f"{pid}: request {result.request_id} is not stored as one batch ending at its version"

    live = await state_of(handle)
    assert live == stored_state(events), f"{pid}: the workflow's state differs from the replayed stream"
    assert live.version == len(events)
    summary = await summary_of(handle)
    assert summary.stream_version == len(events)
    return events


# -- runs and histories ------------------------------------------------------------------------------


@dataclass
class Run:
    run_id: str
    history_length: int
    history_bytes: int
    continued_as_new: bool
    activity_attempts: list[int] = field(default_factory=list)


async def runs_of(client: Client, workflow_id: str, first_run_id: str) -> list[Run]:
    """Every run of a workflow from its first, following the continue-as-new chain."""
    runs: list[Run] = []
    run_id: str | None = first_run_id
    while run_id is not None:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        last = history.events[-1]
        attempts = [
            e.activity_task_started_event_attributes.attempt
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        ]
        continued = last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
        runs.append(
            Run(
                run_id=run_id,
                history_length=len(history.events),
                history_bytes=len(history.to_json()),
                continued_as_new=continued,
                activity_attempts=attempts,
            )
        )
        run_id = (
            last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            if continued
            else None
        )
    return runs


# -- a worker in a process of its own ------------------------------------------------------------------


class WorkerProcess:
    """`python -m planloop worker` against the given servers, its output in a log file."""

    def __init__(self, log_path: Path, database_url: str, temporal_address: str, task_queue: str) -> None:
        self.log_path = log_path
        self.env = {
            **os.environ,
            "PLANLOOP_DATABASE_URL": database_url,
            "PLANLOOP_TEMPORAL_ADDRESS": temporal_address,
            "PLANLOOP_TASK_QUEUE": task_queue,
            "PLANLOOP_LOG_FORMAT": "json",
            "PLANLOOP_LOG_LEVEL": "INFO",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "planloop", "worker"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=Path(__file__).resolve().parents[2],
            )

    async def wait_polling(self, timeout: float = 30) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the worker exited with {self.proc.returncode}: {self.tail()}")
            with self.log_path.open("rb") as log:
                log.seek(self._offset)
                if b"worker polling" in log.read():
                    return
            await asyncio.sleep(0.1)
        raise AssertionError(f"the worker did not poll within {timeout}s: {self.tail()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


def utc_now() -> datetime:
    return datetime.now(UTC)


def after(seconds: float) -> datetime:
    return utc_now() + timedelta(seconds=seconds)
