"""Recurring triggers as Temporal Schedules, managed through the API:

    POST   /schedules                  create (open_cycle: a cycle from a template each year;
                                        actuals_reminder: a monthly reminder to post actuals)
    GET    /schedules                  list, with the next and the recent firings
    GET    /schedules/{id}             one
    POST   /schedules/{id}/trigger     fire it now (e.g. to open a cycle early, or to test it)
    POST   /schedules/{id}/pause       stop its firings until resumed, saying why (e.g. a reorganisation)
    POST   /schedules/{id}/resume      fire on its calendar again
    DELETE /schedules/{id}             delete it (what it started keeps running)

Each firing starts the ``ScheduledTrigger`` workflow (``workflows.reminders``) with the schedule's fixed
argument; the workflow reads the firing's time and acts. Temporal holds the schedule (when, paused, recent
firings); a row in ``schedules`` says which of the namespace's schedules are planloop's and what was asked.
Roles: admin, leadership, integration (without org-unit scopes).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from temporalio.api.enums.v1 import ScheduleOverlapPolicy as OverlapPolicy
from temporalio.api.schedule.v1 import SchedulePatch, TriggerImmediatelyRequest
from temporalio.api.workflowservice.v1 import PatchScheduleRequest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleDescription,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.service import RPCError, RPCStatusCode

from domain import DomainError
from domain.cycle import CycleState, decide_cycle
from workflows.reminders import CycleTemplate, ScheduledTrigger, ScheduledTriggerWorkflow

from .actuals import storable
from .auth import Principal, Role, authenticated
from .errors import ERROR_RESPONSES, INVALID_REQUEST, NOT_FOUND, UNAVAILABLE, ApiError
from .idempotency import Answer, IdempotencyKey, once
from .inbound import Text

router = APIRouter(tags=["schedules"], responses=ERROR_RESPONSES)

SCHEDULE_ROLES = frozenset({Role.LEADERSHIP, Role.INTEGRATION})

_INSERT = "INSERT INTO schedules (schedule_id, kind, request, created_by) VALUES ($1, $2, $3, $4)"
_DELETE = "DELETE FROM schedules WHERE schedule_id = $1"
_ONE = "SELECT schedule_id, kind, request, created_by, created_at FROM schedules WHERE schedule_id = $1"
_ALL = "SELECT schedule_id, kind, request, created_by, created_at FROM schedules ORDER BY schedule_id"


class When(BaseModel):
    """When a schedule fires: a cron expression, or a day (of a month, or of every month) and time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cron: str | None = Field(default=None, examples=["0 6 1 10 *"])
    month: int | None = Field(default=None, ge=1, le=12, description="None: every month.")
    day_of_month: int = Field(default=1, ge=1, le=31)
    hour: int = Field(default=6, ge=0, le=23)
    minute: int = Field(default=0, ge=0, le=59)
    time_zone: str = "UTC"

    def spec(self) -> ScheduleSpec:
        if self.cron:
            return ScheduleSpec(cron_expressions=[self.cron], time_zone_name=self.time_zone)
        calendar = ScheduleCalendarSpec(
            month=[ScheduleRange(self.month)] if self.month else [ScheduleRange(1, 12)],
            day_of_month=[ScheduleRange(self.day_of_month)],
            hour=[ScheduleRange(self.hour)],
            minute=[ScheduleRange(self.minute)],
        )
        return ScheduleSpec(calendars=[calendar], time_zone_name=self.time_zone)


class ScheduleRequest(BaseModel):
    """A recurring trigger. ``open_cycle`` needs a ``template`` (fires each October 1st by default);
    ``actuals_reminder`` needs a ``cycle_id`` (fires on the 1st of every month by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schedule_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", examples=["open-fy"])
    kind: Literal["open_cycle", "actuals_reminder"]
    when: When | None = None
    template: CycleTemplate | None = None
    cycle_id: str | None = None
    note: str = ""
    paused: bool = False

    @model_validator(mode="after")
    def _kind_fits(self) -> ScheduleRequest:
        if self.kind == "open_cycle" and (self.template is None or self.cycle_id is not None):
            raise ValueError("an open_cycle schedule takes a template (and no cycle_id)")
        if self.kind == "actuals_reminder" and (self.cycle_id is None or self.template is not None):
            raise ValueError("an actuals_reminder schedule takes a cycle_id (and no template)")
        return self

    def timing(self) -> When:
        if self.when is not None:
            return self.when
        return When(month=10) if self.kind == "open_cycle" else When(hour=8)


class Firing(BaseModel):
    workflow_id: str
    scheduled_at: datetime
    started_at: datetime


class ScheduleView(BaseModel):
    schedule_id: str
    kind: str
    created_by: str
    created_at: datetime
    request: dict[str, Any]
    paused: bool | None
    note: str | None
    next_firings: list[datetime]
    recent_firings: list[Firing]
    firings: int


class PauseRequest(BaseModel):
    """Why a schedule is paused or resumed: kept as the schedule's note, with who did it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: Text = Field(default="", max_length=500, examples=["the org chart changes in September"])


Authenticated = Annotated[Principal, Depends(authenticated)]


def _allowed(principal: Principal, action: str, roles: frozenset[Role] = SCHEDULE_ROLES) -> None:
    principal.require_role(roles, action)
    principal.require_company_wide(action)


# Auditors read everything and change nothing.
READ_ROLES = SCHEDULE_ROLES | {Role.AUDITOR}


async def _check(request: Request, body: ScheduleRequest) -> ScheduledTrigger:
    """The trigger the schedule will fire, checked now: a template that opens a valid cycle, a known cycle."""
    schedule_id = body.schedule_id
    actor = f"schedule:{schedule_id}"
    if body.kind == "open_cycle":
        assert body.template is not None
        try:
            decide_cycle(CycleState(), body.template.open_command(datetime.now(UTC), actor))
        except DomainError as err:
            raise ApiError(
                422, str(err.code), f"the template does not open a valid cycle: {err.message}"
            ) from None
        return ScheduledTrigger(schedule_id=schedule_id, kind=body.kind, actor=actor, template=body.template)
    assert body.cycle_id is not None
    if not storable(body.cycle_id):
        raise ApiError(422, INVALID_REQUEST, "the cycle id holds a NUL or an unpaired surrogate")
    cycle: CycleState = await request.app.state.reader.cycle(body.cycle_id)
    return ScheduledTrigger(
        schedule_id=schedule_id, kind=body.kind, actor=actor, cycle_id=body.cycle_id, calendar=cycle.calendar
    )


async def fire_now(client: Client, schedule_id: str, request_id: str) -> None:
    """Fire now, with our request id: the SDK's ``ScheduleHandle.trigger`` sends a fresh one on every call,
    and the request id is what lets Temporal answer a repeated trigger without firing again."""
    await client.workflow_service.patch_schedule(
        PatchScheduleRequest(
            namespace=client.namespace,
            schedule_id=schedule_id,
            patch=SchedulePatch(
                trigger_immediately=TriggerImmediatelyRequest(
                    overlap_policy=OverlapPolicy.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL
                )
            ),
            identity=client.identity,
            request_id=request_id,
        ),
        retry=True,
    )


def _workflow_error(err: RPCError) -> ApiError:
    return ApiError(503, UNAVAILABLE, f"the workflow service did not answer ({err.message}); retry shortly")


def _schedule_error(err: RPCError, schedule_id: str) -> ApiError:
    """Temporal's refusal of a call on one of planloop's schedules, as the caller should read it."""
    if err.status == RPCStatusCode.NOT_FOUND:  # planloop has its row, Temporal lost the schedule
        return ApiError(409, "schedule_missing", f"Temporal has no schedule {schedule_id}; recreate it")
    return _workflow_error(err)


@router.post("/schedules", status_code=201, response_model=ScheduleView)
async def create_schedule(
    body: ScheduleRequest,
    request: Request,
    principal: Authenticated,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Create a recurring trigger as a Temporal Schedule. Roles: admin, leadership, integration."""
    _allowed(principal, "managing schedules")
    trigger = await _check(request, body)
    trigger = trigger.model_copy(update={"on_behalf_of": principal.principal_id})
    client: Client = request.app.state.client
    pool = request.app.state.store.pool

    async def act(_: str) -> tuple[int, Any]:
        schedule = Schedule(
            action=ScheduleActionStartWorkflow(
                ScheduledTriggerWorkflow.run,
                trigger,
                id=f"schedule:{body.schedule_id}",
                task_queue=request.app.state.settings.task_queue,
            ),
            spec=body.timing().spec(),
            # A firing that finds the last one still running waits for nothing: it is skipped.
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            state=ScheduleState(note=body.note or f"planloop {body.kind}", paused=body.paused),
        )
        try:
            stored = body.model_dump_json()
            stored.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(
                422, INVALID_REQUEST, "the request holds an unpaired surrogate; send valid text"
            ) from None
        if "\\u0000" in stored:
            raise ApiError(422, INVALID_REQUEST, "the request holds a NUL character; send text without it")
        async with pool.acquire() as conn, conn.transaction():
            exists = await conn.fetchval("SELECT 1 FROM schedules WHERE schedule_id = $1", body.schedule_id)
            if exists:
                raise ApiError(409, "schedule_exists", f"schedule {body.schedule_id} exists; delete it first")
            await conn.execute(_INSERT, body.schedule_id, body.kind, stored, principal.principal_id)
            try:
                await client.create_schedule(body.schedule_id, schedule, memo={"planloop_kind": body.kind})
            except ScheduleAlreadyRunningError:
                raise ApiError(
                    409,
                    "schedule_exists",
                    f"Temporal already has a schedule {body.schedule_id} (not planloop's); choose another id",
                ) from None
            except RPCError as err:
                if err.status == RPCStatusCode.INVALID_ARGUMENT:  # e.g. a cron or time zone Temporal refuses
                    raise ApiError(
                        422, INVALID_REQUEST, f"Temporal refused the schedule: {err.message}"
                    ) from None
                raise _workflow_error(err) from None
        return 201, (await _view(request, body.schedule_id)).model_dump(mode="json")

    return await once(request, principal, idempotency_key, act, body)


async def _view(request: Request, schedule_id: str, row: Any = None) -> ScheduleView:
    row = row or await request.app.state.store.pool.fetchrow(_ONE, schedule_id)
    if row is None:
        raise ApiError(404, NOT_FOUND, f"there is no schedule {schedule_id}; GET /schedules lists them")
    described: ScheduleDescription | None = None
    try:
        described = await request.app.state.client.get_schedule_handle(schedule_id).describe()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise _workflow_error(err) from None
    info = described.info if described else None
    state = described.schedule.state if described else None
    recent = [
        Firing(
            workflow_id=getattr(r.action, "workflow_id", ""),
            scheduled_at=r.scheduled_at,
            started_at=r.started_at,
        )
        for r in (info.recent_actions if info else [])
    ]
    stored = row["request"]
    return ScheduleView(
        schedule_id=row["schedule_id"],
        kind=row["kind"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        request=json.loads(stored) if isinstance(stored, str) else stored,
        paused=state.paused if state else None,
        note=state.note if state else None,
        next_firings=list(info.next_action_times[:5]) if info else [],
        recent_firings=recent,
        firings=info.num_actions if info else 0,
    )


@router.get("/schedules", response_model=list[ScheduleView])
async def list_schedules(request: Request, principal: Authenticated) -> list[ScheduleView]:
    """planloop's schedules with their next and recent firings. Roles: admin, leadership, integration,
    auditor."""
    _allowed(principal, "reading schedules", READ_ROLES)
    rows = await request.app.state.store.pool.fetch(_ALL)
    return [await _view(request, r["schedule_id"], r) for r in rows]


@router.get("/schedules/{schedule_id}", response_model=ScheduleView)
async def read_schedule(schedule_id: str, request: Request, principal: Authenticated) -> ScheduleView:
    """One schedule. Roles: admin, leadership, integration, auditor."""
    _allowed(principal, "reading schedules", READ_ROLES)
    return await _view(request, schedule_id)


@router.post("/schedules/{schedule_id}/trigger", status_code=202, response_model=ScheduleView)
async def trigger_schedule(
    schedule_id: str,
    request: Request,
    principal: Authenticated,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Fire the schedule now, besides its calendar (also when paused). Roles: admin, leadership,
    integration."""
    _allowed(principal, "triggering schedules")

    async def act(request_id: str) -> tuple[int, Any]:
        view = await _view(request, schedule_id)
        try:
            await fire_now(request.app.state.client, schedule_id, request_id)
        except RPCError as err:
            raise _schedule_error(err, schedule_id) from None
        return 202, view.model_dump(mode="json")

    # The key stops a retried trigger from firing twice (an opening is once per cycle anyway; a reminder
    # would be recorded again); should the API die between firing and storing its answer, the retry that
    # takes the claim over sends the same request id, which Temporal deduplicates.
    return await once(request, principal, idempotency_key, act)


async def _set_paused(
    request: Request, principal: Principal, schedule_id: str, body: PauseRequest | None, paused: bool
) -> Answer:
    """Pause or resume. Setting a state, not toggling it: sent twice, it answers the same (the note is the
    latest), so a plain retry is harmless; with an Idempotency-Key a retry gets the first answer."""
    verb = "paused" if paused else "resumed"
    reason = body.reason if body else ""
    row = await request.app.state.store.pool.fetchrow(_ONE, schedule_id)
    if row is None:
        raise ApiError(404, NOT_FOUND, f"there is no schedule {schedule_id}; GET /schedules lists them")
    note = f"{verb} by {principal.principal_id}" + (f": {reason}" if reason else "")
    handle = request.app.state.client.get_schedule_handle(schedule_id)
    try:
        await (handle.pause(note=note) if paused else handle.unpause(note=note))
    except RPCError as err:
        raise _schedule_error(err, schedule_id) from None
    return 200, (await _view(request, schedule_id, row)).model_dump(mode="json")


@router.post("/schedules/{schedule_id}/pause", response_model=ScheduleView)
async def pause_schedule(
    schedule_id: str,
    request: Request,
    principal: Authenticated,
    body: PauseRequest | None = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Stop the schedule's firings until it is resumed; the reason is kept as its note. A trigger still
    fires it. Roles: admin, leadership, integration."""
    return await _pause_or_resume(request, principal, schedule_id, body, idempotency_key, paused=True)


@router.post("/schedules/{schedule_id}/resume", response_model=ScheduleView)
async def resume_schedule(
    schedule_id: str,
    request: Request,
    principal: Authenticated,
    body: PauseRequest | None = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Fire on the schedule's calendar again (firings missed while paused are not made up). Roles: admin,
    leadership, integration."""
    return await _pause_or_resume(request, principal, schedule_id, body, idempotency_key, paused=False)


async def _pause_or_resume(
    request: Request,
    principal: Principal,
    schedule_id: str,
    body: PauseRequest | None,
    idempotency_key: str | None,
    *,
    paused: bool,
) -> Response:
    _allowed(principal, "pausing schedules" if paused else "resuming schedules")
    return await once(
        request,
        principal,
        idempotency_key,
        lambda _: _set_paused(request, principal, schedule_id, body, paused=paused),
        body,
    )


@router.delete("/schedules/{schedule_id}", status_code=204)
async def delete_schedule(
    schedule_id: str, request: Request, principal: Authenticated, idempotency_key: IdempotencyKey = None
) -> Response:
    """Delete the schedule; workflows it started (a cycle it opened) keep running. With an
    Idempotency-Key, a retry of a delete that went through answers 204 again. Roles: admin, leadership,
    integration."""
    _allowed(principal, "deleting schedules")

    async def act(_: str) -> Answer:
        pool = request.app.state.store.pool
        if await pool.fetchrow(_ONE, schedule_id) is None:
            raise ApiError(404, NOT_FOUND, f"there is no schedule {schedule_id}; GET /schedules lists them")
        try:
            await request.app.state.client.get_schedule_handle(schedule_id).delete()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise _workflow_error(err) from None
        await pool.execute(_DELETE, schedule_id)
        return 204, None

    return await once(request, principal, idempotency_key, act)


__all__ = ["PauseRequest", "ScheduleRequest", "ScheduleView", "When", "fire_now", "router"]
