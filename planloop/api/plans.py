"""Reading one plan: its current state and revision, every revision, and the diff between any two.

Built by folding the plan's stored events with ``domain.replay`` (see ``reads.Reader``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from domain import Deadline, Gate, Phase, PlanState, RevisionDiff, diff_content, next_deadlines
from domain.state import GateProgress, Revision, Submission
from domain.strategy import RevisionSource
from workflows import plan_id

from .auth import Principal, authenticated
from .errors import ERROR_RESPONSES, NOT_FOUND, ApiError

router = APIRouter(tags=["plans"], responses=ERROR_RESPONSES)


class CurrentGate(BaseModel):
    index: int
    gate: Gate
    progress: GateProgress


class PlanView(BaseModel):
    """A plan now: where it is in the loop, its current revision and what it waits for next."""

    plan_id: str
    cycle_id: str
    unit_id: str
    phase: Phase | None
    iteration: int
    authors: list[str]
    currency: str
    stream_version: int
    revision: Revision | None
    signed_off_revision: int | None
    submission: Submission | None
    current_gate: CurrentGate | None
    approval_chain: list[Gate]
    next_deadlines: list[Deadline]
    end_reason: str | None


class RevisionSummary(BaseModel):
    number: int
    iteration: int
    author: str
    at: datetime
    reason: str
    source: RevisionSource
    content_hash: str
    counter_proposal_by: str | None
    changed_fields: list[str]


class RevisionComparison(BaseModel):
    """What changed from revision ``from_revision`` to ``to_revision``."""

    from_revision: int
    to_revision: int
    diff: RevisionDiff


def plan_view(state: PlanState) -> PlanView:
    """The view of a plan in any state: now (``read_plan``) or as it was (the auditor's as-of)."""
    gate = None
    if state.gate is not None and state.gate.index < len(state.approval_chain):
        gate = CurrentGate(
            index=state.gate.index, gate=state.approval_chain[state.gate.index], progress=state.gate
        )
    return PlanView(
        plan_id=plan_id(state.cycle_id, state.unit_id),
        cycle_id=state.cycle_id,
        unit_id=state.unit_id,
        phase=state.phase,
        iteration=state.iteration,
        authors=list(state.authors),
        currency=state.currency,
        stream_version=state.version,
        revision=state.latest_revision,
        signed_off_revision=state.signed_off_revision,
        submission=state.submission,
        current_gate=gate,
        approval_chain=list(state.approval_chain),
        next_deadlines=next_deadlines(state),
        end_reason=state.end_reason,
    )


async def _readable_plan(request: Request, principal: Principal, cycle_id: str, unit_id: str) -> PlanState:
    await request.app.state.reader.require_scope(principal, cycle_id, unit_id)
    state: PlanState = await request.app.state.reader.plan(cycle_id, unit_id)
    return state


def _revision(state: PlanState, number: int) -> Revision:
    revision = state.revision(number)
    if revision is None:
        latest = state.latest_revision
        known = f"revisions 1 to {latest.number}" if latest else "no revisions yet"
        raise ApiError(404, NOT_FOUND, f"the plan has no revision {number}; it has {known}")
    return revision


Authenticated = Annotated[Principal, Depends(authenticated)]


@router.get("/cycles/{cycle_id}/plans/{unit_id}", response_model=PlanView)
async def read_plan(cycle_id: str, unit_id: str, request: Request, principal: Authenticated) -> PlanView:
    """The plan now, with its current revision. Every role may read (within its org-unit scopes)."""
    return plan_view(await _readable_plan(request, principal, cycle_id, unit_id))


@router.get("/cycles/{cycle_id}/plans/{unit_id}/revisions", response_model=list[RevisionSummary])
async def list_revisions(
    cycle_id: str, unit_id: str, request: Request, principal: Authenticated
) -> list[RevisionSummary]:
    """Every revision of the plan, across iterations, oldest first."""
    state = await _readable_plan(request, principal, cycle_id, unit_id)
    return [
        RevisionSummary(
            number=r.number,
            iteration=r.iteration,
            author=r.author,
            at=r.at,
            reason=r.reason,
            source=r.source,
            content_hash=r.content_hash,
            counter_proposal_by=r.counter_proposal_by,
            changed_fields=list(r.diff.changed_fields),
        )
        for r in state.revisions
    ]


@router.get("/cycles/{cycle_id}/plans/{unit_id}/revisions/{number}", response_model=Revision)
async def read_revision(
    cycle_id: str, unit_id: str, number: int, request: Request, principal: Authenticated
) -> Revision:
    """One revision: its author, time, reason, full content and the diff against the one before."""
    return _revision(await _readable_plan(request, principal, cycle_id, unit_id), number)


@router.get("/cycles/{cycle_id}/plans/{unit_id}/diff", response_model=RevisionComparison)
async def diff_revisions(
    cycle_id: str,
    unit_id: str,
    request: Request,
    principal: Authenticated,
    from_revision: Annotated[int, Query(alias="from", description="The older revision's number.")],
    to_revision: Annotated[int, Query(alias="to", description="The newer revision's number.")],
) -> RevisionComparison:
    """The diff between any two revisions: targets, forecast, budget, programs added and dropped."""
    state = await _readable_plan(request, principal, cycle_id, unit_id)
    old, new = _revision(state, from_revision), _revision(state, to_revision)
    return RevisionComparison(
        from_revision=old.number, to_revision=new.number, diff=diff_content(old.content, new.content)
    )
