"""Planning cycles: open one from an org chart and a calendar, follow its progress, close it.

Opening starts the cycle's workflow, which records the opening and starts one plan per unit below global.
Progress comes from the cycle's stream and the plan list read model; the rollup from the plan figures read
model, and the list of a cycle's plans from the plan list read model (``readviews``).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile
from pydantic import BaseModel, ConfigDict, ValidationError
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError

from domain import CycleCalendar, DomainError, OrgHierarchy
from domain.cycle import CloseCycle, CycleState, OpenCycle, decide_cycle
from domain.money import CurrencyCode
from domain.rollup import Consolidated, consolidate_figures
from eventstore import EventStore
from planloop.readmodels.figures import cycle_figures
from workflows import CycleWorkflow, cycle_workflow_id
from workflows.contracts import CycleCommand, CycleCommandResult, CycleProgress, CycleStart, Pace

from .auth import Principal, Role, authenticated
from .errors import ERROR_RESPONSES, INVALID_REQUEST, PACED_CYCLES_OFF, ApiError
from .idempotency import IdempotencyKey, once
from .pace import CyclePace

router = APIRouter(tags=["cycles"], responses=ERROR_RESPONSES)

OPEN_ROLES = frozenset({Role.LEADERSHIP, Role.INTEGRATION})
CLOSE_ROLES = frozenset({Role.LEADERSHIP})

Authenticated = Annotated[Principal, Depends(authenticated)]


class CycleDefinition(BaseModel):
    """A cycle to open: its calendar and the org hierarchy (each unit's head authors its plan, the approvers
    of the units above decide at their gates)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    calendar: CycleCalendar
    hierarchy: OrgHierarchy
    currency: CurrencyCode = "EUR"
    # Demos and training only: a compressed calendar that runs faster than the wall clock.
    pace: CyclePace | None = None


class CycleOpenedView(BaseModel):
    cycle_id: str
    workflow_id: str
    plans: list[str]
    # A paced cycle's calendar: calendar time = calendar_origin + (now - real_origin) * speed.
    pace: Pace | None = None


class CycleView(BaseModel):
    cycle_id: str
    closed: bool
    calendar: CycleCalendar
    plans: int
    progress: CycleProgress


class CloseCycleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str


def _open_command(principal: Principal, definition: CycleDefinition) -> OpenCycle:
    command = OpenCycle(
        actor=principal.principal_id,
        at=datetime.now(UTC),
        calendar=definition.calendar,
        hierarchy=definition.hierarchy,
        currency=definition.currency,
    )
    try:
        # Decided here first so an invalid org chart is refused at once, with the domain's message.
        decide_cycle(CycleState(), command)
    except DomainError as err:
        raise ApiError.domain(err.code, err.message) from None
    return command


async def _open(
    request: Request, principal: Principal, definition: CycleDefinition, key: str | None
) -> Response:
    principal.require_role(OPEN_ROLES, "opening a cycle")
    principal.require_company_wide("opening a cycle")
    if definition.pace is not None and not request.app.state.settings.paced_cycles:
        # A pace sets the business time of every decision in the cycle: only an installation that is meant
        # for demos or training may run one.
        raise ApiError(
            403,
            PACED_CYCLES_OFF,
            "this installation does not run paced cycles (a compressed calendar stamps every decision with "
            "calendar time, not real time); open the cycle without a pace, or set PLANLOOP_PACED_CYCLES=true "
            "on an installation meant for demos or training",
        )
    command = _open_command(principal, definition)
    cycle_id = definition.calendar.cycle_id

    async def act(_: str) -> tuple[int, Any]:
        client: Client = request.app.state.client
        pace = definition.pace.starting(datetime.now(UTC)) if definition.pace is not None else None
        try:
            await client.start_workflow(
                CycleWorkflow.run,
                # The pace goes into the CycleOpened event too: the history says its times are calendar times.
                CycleStart(open=command.model_copy(update={"pace": pace}), pace=pace),
                id=cycle_workflow_id(cycle_id),
                task_queue=request.app.state.settings.task_queue,
                # A cycle id names one fiscal cycle forever, even once it has been closed.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            raise ApiError.domain(
                "cycle_already_opened", f"cycle {cycle_id} is already open; work on its plans"
            ) from None
        # Answer once the cycle's opening is stored, so a caller's next request (its progress, a schedule
        # for it, an actuals import) finds the cycle. Its plans keep starting in the background.
        await _opening_recorded(request.app.state.store, cycle_workflow_id(cycle_id))
        opened = CycleOpenedView(
            cycle_id=cycle_id,
            workflow_id=cycle_workflow_id(cycle_id),
            plans=[u.unit_id for u in definition.hierarchy.units_below_global()],
            pace=pace,
        )
        return 201, opened.model_dump(mode="json")

    # One write by two routes (JSON or a file): the same key and definition answer the same on either.
    return await once(request, principal, key, act, definition, path="/cycles")


# How long POST /cycles waits for the cycle workflow to store its opening (one workflow task and one append).
OPENING_WAIT = 30.0


async def _opening_recorded(store: EventStore, stream_id: str) -> None:
    """Wait (up to OPENING_WAIT) until the cycle's first event is stored. Past that, the answer goes out all
    the same: the workflow is started, and it stores the opening as soon as a worker runs it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + OPENING_WAIT
    delay = 0.01
    while not await store.stream_version(stream_id) and loop.time() < deadline:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)


@router.post("/cycles", status_code=201, response_model=CycleOpenedView)
async def open_cycle(
    definition: CycleDefinition,
    request: Request,
    principal: Authenticated,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Open a cycle from a JSON body; it starts one plan per unit below global. Roles: leadership,
    integration, admin (without org-unit scopes)."""
    return await _open(request, principal, definition, idempotency_key)


@router.post("/cycles/upload", status_code=201, response_model=CycleOpenedView)
async def open_cycle_from_file(
    request: Request,
    principal: Authenticated,
    file: Annotated[
        UploadFile, File(description="The cycle as YAML or JSON: calendar, hierarchy, currency.")
    ],
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Open a cycle from an uploaded YAML or JSON file with the same fields as POST /cycles."""
    principal.require_role(OPEN_ROLES, "opening a cycle")
    return await _open(
        request, principal, parse_cycle_file(await file.read(), file.filename), idempotency_key
    )


def parse_cycle_file(raw: bytes, filename: str | None = None) -> CycleDefinition:
    """A cycle definition from YAML or JSON text (JSON is YAML too); errors name the field at fault."""
    try:
        data = json.loads(raw) if (filename or "").endswith(".json") else yaml.safe_load(raw)
    except (ValueError, yaml.YAMLError) as err:
        raise ApiError(422, INVALID_REQUEST, f"the file is neither valid YAML nor JSON: {err}") from None
    if not isinstance(data, dict):
        raise ApiError(422, INVALID_REQUEST, "the file must hold a mapping with calendar and hierarchy")
    try:
        return CycleDefinition.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ApiError(
            422, INVALID_REQUEST, f"{where}: {first['msg']} ({err.error_count()} problem(s) in the file)"
        ) from None


# Where a cycle's plans stand, from the plan list read model: the counts the cycle's workflow keeps too, but
# read here without asking the workflow (it answers even while Temporal is down; it lags the plans by the
# projector's latency). "overdue" counts plans with actuals overdue, as the cycle's progress codes do.
_PROGRESS = """
SELECT phase, count(*) AS plans,
       count(*) FILTER (WHERE signed_off_revision IS NOT NULL) AS signed_off,
       count(*) FILTER (WHERE gate_escalated) AS escalated,
       count(*) FILTER (WHERE cardinality(actuals_overdue_months) > 0) AS overdue
  FROM plan_list
 WHERE cycle_id = $1
 GROUP BY phase
 ORDER BY phase
"""


async def cycle_progress(request: Request, state: CycleState) -> CycleProgress:
    """The cycle's progress from its stream and the plan list: plans opened (``started``), per phase,
    signed off, escalated, overdue; once closed, ``close_sent`` counts its plans closed so far."""
    rows = await request.app.state.store.pool.fetch(_PROGRESS, state.cycle_id)
    phases = {r["phase"]: r["plans"] for r in rows}
    return CycleProgress(
        cycle_id=state.cycle_id,
        plans=len(state.plans),
        started=sum(phases.values()),
        phases=phases,
        signed_off=sum(r["signed_off"] for r in rows),
        escalated=sum(r["escalated"] for r in rows),
        overdue=sum(r["overdue"] for r in rows),
        closed=state.closed,
        close_sent=phases.get("closed", 0) if state.closed else 0,
        stream_version=state.version,
    )


class CycleSummary(BaseModel):
    """A cycle in the list: when it was opened, whether it is closed, and where its plans stand."""

    cycle_id: str
    opened_at: datetime
    closed: bool
    stream_version: int
    plans: int  # plans in the plan list read model
    phases: dict[str, int]


# From the event store (the cycle streams, the opening's time, whether a CycleClosed was recorded) and the
# plan list read model (plans per phase): no cycle is folded and no workflow asked.
_CYCLES = """
SELECT s.stream_id, s.version,
       (SELECT e.recorded_at FROM events e WHERE e.stream_id = s.stream_id AND e.version = 1) AS opened_at,
       EXISTS (SELECT 1 FROM events e WHERE e.stream_id = s.stream_id AND e.type = 'CycleClosed') AS closed
FROM streams s
WHERE s.stream_id LIKE 'cycle:%'
ORDER BY opened_at DESC, s.stream_id
"""
_PHASES = "SELECT cycle_id, phase, count(*) AS plans FROM plan_list GROUP BY cycle_id, phase"


@router.get("/cycles", response_model=list[CycleSummary])
async def list_cycles(
    request: Request,
    principal: Authenticated,
    closed: Annotated[bool | None, Query(description="Only closed (true) or open (false) cycles.")] = None,
) -> list[CycleSummary]:
    """Every planning cycle, newest first: opened when, open or closed, its plans per phase."""
    pool = request.app.state.store.pool
    phases: dict[str, dict[str, int]] = {}
    for row in await pool.fetch(_PHASES):
        phases.setdefault(row["cycle_id"], {})[row["phase"]] = row["plans"]
    cycles = []
    for row in await pool.fetch(_CYCLES):
        if closed is not None and row["closed"] != closed:
            continue
        cycle_id = row["stream_id"].removeprefix("cycle:")
        counts = phases.get(cycle_id, {})
        cycles.append(
            CycleSummary(
                cycle_id=cycle_id,
                opened_at=row["opened_at"],
                closed=row["closed"],
                stream_version=row["version"],
                plans=sum(counts.values()),
                phases=counts,
            )
        )
    return cycles


@router.get("/cycles/{cycle_id}", response_model=CycleView)
async def read_cycle(cycle_id: str, request: Request, principal: Authenticated) -> CycleView:
    """The cycle: its calendar and progress (plans opened, phases, signed off, escalated, overdue), from
    the event store and the plan list read model."""
    state = await request.app.state.reader.cycle(cycle_id)
    progress = await cycle_progress(request, state)
    return CycleView(
        cycle_id=cycle_id,
        closed=state.closed,
        calendar=state.calendar,
        plans=len(state.plans),
        progress=progress,
    )


@router.get("/cycles/{cycle_id}/rollup", response_model=Consolidated)
async def read_rollup(
    cycle_id: str,
    request: Request,
    principal: Authenticated,
    unit: Annotated[
        str | None, Query(description="A unit: its plan and all below it. Default: the company.")
    ] = None,
) -> Consolidated:
    """Consolidated figures of a unit's subtree (forecast, budget, targets, phases), from the plan figures
    read model (current to within the projector's latency)."""
    reader = request.app.state.reader
    # The hierarchy never changes once a cycle is open: the reader keeps it, so a cycle of thousands of
    # units is not folded again on every request.
    hierarchy: OrgHierarchy | None = await reader.hierarchy(cycle_id)
    if hierarchy is None:
        await reader.cycle(cycle_id)  # answers 404, naming the cycle
    assert hierarchy is not None
    root = next(u.unit_id for u in hierarchy.units if u.parent_id is None)
    target = unit or root
    if target not in {u.unit_id for u in hierarchy.units}:
        raise ApiError(404, "not_found", f"cycle {cycle_id} has no unit {target}")
    await reader.require_scope(principal, cycle_id, target)
    # From the plan figures read model, not the cycle's workflow: a workflow cannot hold the figures of
    # thousands of plans within Temporal's payload limits. It lags the plans by the projector's latency.
    below = None if target == root else [target, *(u.unit_id for u in hierarchy.descendants(target))]
    figures = await cycle_figures(request.app.state.store.pool, cycle_id, below)
    return consolidate_figures(target, hierarchy, figures)


@router.post(
    "/cycles/{cycle_id}/commands/CloseCycle", response_model=CycleCommandResult, operation_id="CloseCycle"
)
async def close_cycle(
    cycle_id: str,
    body: CloseCycleRequest,
    request: Request,
    principal: Authenticated,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Close the cycle: every plan still open is closed with the cycle's reason. Roles: leadership, admin."""
    principal.require_role(CLOSE_ROLES, "closing a cycle")
    principal.require_company_wide("closing a cycle")
    await request.app.state.reader.cycle(cycle_id)
    command = CloseCycle(actor=principal.principal_id, at=datetime.now(UTC), reason=body.reason)

    async def act(request_id: str) -> tuple[int, Any]:
        handle = request.app.state.client.get_workflow_handle(cycle_workflow_id(cycle_id))
        try:
            result = await handle.execute_update(
                CycleWorkflow.close_cycle,
                CycleCommand(command=command, request_id=request_id, source="api"),
            )
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type:
                raise ApiError.domain(cause.type, cause.message) from None
            raise
        except RPCError as err:
            # The cycle's workflow has completed: it was closed already.
            raise ApiError.domain(
                "cycle_closed", f"cycle {cycle_id} is already closed ({err.message})"
            ) from None
        return 200, result.model_dump(mode="json")

    return await once(request, principal, idempotency_key, act, body)
