"""The auditor's reads of one plan: its history, the plan as of a moment or a version, the diff between the
plan at two moments, and the replay of its Temporal workflow against the current code.

    GET /audit/cycles/{cycle}/plans/{unit}/history?type=&actor=&since=&until=&from_version=&to_version=
    GET /audit/cycles/{cycle}/plans/{unit}/as-of?at=TIME  or  ?version=N
    GET /audit/cycles/{cycle}/plans/{unit}/diff-at?from=TIME&to=TIME
    GET /audit/cycles/{cycle}/plans/{unit}/workflow-replay

Every role may read the first three within its org-unit scopes (auditors read everything); the workflow
replay, which replays every run in this process (about a second of CPU each), is for auditors and admins.
None of them changes anything. Times are ISO 8601 with a time zone; they are the event store's own times
(``recorded_at``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from domain import PlanState
from planloop.audit import history as audit_history
from planloop.audit import replay as audit_replay
from planloop.audit import timetravel
from planloop.audit.history import AuditError, HistoryEntry, HistoryFilter, parse_time
from workflows import plan_id

from .auth import Principal, Role, authenticated
from .errors import ERROR_RESPONSES, INVALID_REQUEST, PLAN_NOT_FOUND, ApiError
from .plans import PlanView, RevisionComparison, plan_view

router = APIRouter(prefix="/audit", tags=["audit"], responses=ERROR_RESPONSES)

Authenticated = Annotated[Principal, Depends(authenticated)]
PLAN = "/cycles/{cycle_id}/plans/{unit_id}"


class PlanAsOf(BaseModel):
    """The plan as it was, rebuilt from the stream's first ``version`` events (all those the store had
    written by ``as_of``, when asked by time): the view of ``GET /cycles/{cycle}/plans/{unit}`` and the whole
    state the plan's workflow held then (CSFs, actuals, deviations, gate decisions, reviews, score, ...)."""

    as_of: datetime | None
    version: int
    recorded_at: datetime  # when the store wrote event ``version``, the last one this view reflects
    plan: PlanView
    state: PlanState


class RevisionAtTime(BaseModel):
    """The revision that was the plan's latest at a moment."""

    as_of: datetime
    stream_version: int
    revision: int
    content_hash: str
    author: str
    recorded: datetime  # when that revision was made
    reason: str


class StateChangeView(BaseModel):
    """A part of the plan that changed between the two moments: a value, or entries of a list."""

    field: str
    before: Any = None
    after: Any = None
    added: list[Any] = []
    removed: list[Any] = []


class TimeComparison(RevisionComparison):
    """What changed in the plan from one moment to another: its content (``diff``, between the latest
    revision at each) and everything else (``changes``: phase, gate decisions, CSFs, actuals, ...)."""

    from_moment: RevisionAtTime
    to_moment: RevisionAtTime
    changes: list[StateChangeView]


class RunReplayView(BaseModel):
    run_id: str
    started_at: datetime
    ended: str
    history_events: int
    reproduced: bool
    failure: str | None
    failed_event_id: int | None
    failed_event_type: str | None


class WorkflowReplayView(BaseModel):
    """Whether the current workflow code reproduces every decision each run of the plan recorded."""

    workflow_id: str
    reproduced: bool
    runs: list[RunReplayView]
    unavailable_runs: list[str]


def _refused(err: AuditError) -> ApiError:
    return ApiError(404 if err.not_found else 422, err.code, err.message)


def _time(text: str | None, name: str) -> datetime | None:
    return None if text is None else parse_time(text, name)


async def _scoped(request: Request, principal: Principal, cycle_id: str, unit_id: str) -> None:
    await request.app.state.reader.require_scope(principal, cycle_id, unit_id)


TimeQuery = Query(description="ISO 8601 with a time zone, e.g. 2027-03-31T18:00:00Z (the store's time).")


@router.get(f"{PLAN}/history", response_model=list[HistoryEntry])
async def plan_history(
    cycle_id: str,
    unit_id: str,
    request: Request,
    principal: Authenticated,
    types: Annotated[
        list[str] | None,
        Query(
            alias="type", description="Event type(s), repeatable or comma-separated, e.g. ApprovalRecorded."
        ),
    ] = None,
    actor: Annotated[str | None, Query(description="Who acted, or on whose behalf.")] = None,
    since: Annotated[str | None, TimeQuery] = None,
    until: Annotated[str | None, TimeQuery] = None,
    from_version: Annotated[int | None, Query(description="First stream version (inclusive).")] = None,
    to_version: Annotated[int | None, Query(description="Last stream version (inclusive).")] = None,
) -> list[HistoryEntry]:
    """Every event of the plan, oldest first: who acted and on whose behalf, the store's and the business
    time, source, request id, reason, and for decisions the revision and content hash they were bound to."""
    await _scoped(request, principal, cycle_id, unit_id)
    try:
        filters = HistoryFilter(
            types=frozenset(t.strip() for value in types or () for t in value.split(",") if t.strip()),
            actor=actor or None,
            since=_time(since, "since"),
            until=_time(until, "until"),
            from_version=from_version,
            to_version=to_version,
        )
        return await audit_history.plan_history(request.app.state.store, cycle_id, unit_id, filters)
    except AuditError as err:
        raise _refused(err) from None


@router.get(f"{PLAN}/as-of", response_model=PlanAsOf)
async def plan_as_of(
    cycle_id: str,
    unit_id: str,
    request: Request,
    principal: Authenticated,
    at: Annotated[str | None, TimeQuery] = None,
    version: Annotated[
        int | None, Query(description="A version of the plan's stream (1 is the opening).")
    ] = None,
) -> PlanAsOf:
    """The plan as it was at a moment or after a stream version, folded from its stored events with the
    domain's own replay (the code the workflow runs)."""
    await _scoped(request, principal, cycle_id, unit_id)
    if (at is None) == (version is None):
        raise ApiError(
            422,
            INVALID_REQUEST,
            "pass either at=TIME (e.g. 2027-03-31T18:00:00Z) or version=N, not both or none",
        )
    store = request.app.state.store
    try:
        if version is not None:
            found = await timetravel.plan_at_version(store, cycle_id, unit_id, version)
        else:
            moment = parse_time(at or "", "at")
            found = await timetravel.plan_at_time(store, cycle_id, unit_id, moment)
    except AuditError as err:
        raise _refused(err) from None
    return PlanAsOf(
        as_of=found.as_of,
        version=found.version,
        recorded_at=found.recorded_at,
        plan=plan_view(found.state),
        state=found.state,
    )


@router.get(f"{PLAN}/diff-at", response_model=TimeComparison)
async def diff_at_times(
    cycle_id: str,
    unit_id: str,
    request: Request,
    principal: Authenticated,
    from_time: Annotated[str, Query(alias="from", description="The earlier moment, with a time zone.")],
    to_time: Annotated[str, Query(alias="to", description="The later moment, with a time zone.")],
) -> TimeComparison:
    """The diff between the plan at two moments: the latest revision at each (which ones those were, and
    their content diff), and every other part of the plan that changed in between."""
    await _scoped(request, principal, cycle_id, unit_id)
    try:
        found = await timetravel.diff_at_times(
            request.app.state.store,
            cycle_id,
            unit_id,
            parse_time(from_time, "from"),
            parse_time(to_time, "to"),
        )
    except AuditError as err:
        raise _refused(err) from None

    def moment(at: timetravel.RevisionAt) -> RevisionAtTime:
        r = at.revision
        return RevisionAtTime(
            as_of=at.as_of,
            stream_version=at.version,
            revision=r.number,
            content_hash=r.content_hash,
            author=r.author,
            recorded=r.at,
            reason=r.reason,
        )

    return TimeComparison(
        from_revision=found.old.revision.number,
        to_revision=found.new.revision.number,
        diff=found.diff,
        from_moment=moment(found.old),
        to_moment=moment(found.new),
        changes=[StateChangeView(**vars(change)) for change in found.changes],
    )


@router.get(f"{PLAN}/workflow-replay", response_model=WorkflowReplayView)
async def workflow_replay(
    cycle_id: str, unit_id: str, request: Request, principal: Authenticated
) -> WorkflowReplayView:
    """Fetch every run of the plan's Temporal workflow and replay it against the code this server runs:
    per run, whether the code reproduces every recorded decision, and where and why not (auditors, admins)."""
    principal.require_role({Role.AUDITOR}, "replaying a plan's workflow")
    await _scoped(request, principal, cycle_id, unit_id)
    try:
        workflow_id = audit_replay.check_workflow_id(plan_id(cycle_id, unit_id))
    except ValueError as err:
        raise ApiError(422, INVALID_REQUEST, str(err)) from None
    try:
        report = await audit_replay.replay_plan_workflow(request.app.state.client, workflow_id)
    except audit_replay.WorkflowNotFound as err:
        raise ApiError(404, PLAN_NOT_FOUND, str(err)) from None
    return WorkflowReplayView(
        workflow_id=report.workflow_id,
        reproduced=report.reproduced,
        runs=[RunReplayView(**run.__dict__) for run in report.runs],
        unavailable_runs=list(report.unavailable_runs),
    )
