"""Answers from the read models: a cycle's plan list, the approvals inbox and a plan's tracking.

The read models are projected from the event store by the API process's projector (see ``background``);
they lag the store by the projector's latency, usually well under a second. Each row carries the stream
``version`` of the plan it reflects, so a client that has just written can tell whether it sees its write.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from domain import OrgLevel, Phase
from domain.cycle import CycleState
from planloop.readmodels import InboxItem, TrackingLine, inbox, list_plans, tracking, waiting_on_person
from workflows import plan_id

from .auth import Principal, Role, authenticated
from .errors import ERROR_RESPONSES, FORBIDDEN, PLAN_NOT_FOUND, ApiError

router = APIRouter(tags=["read models"], responses=ERROR_RESPONSES)

Authenticated = Annotated[Principal, Depends(authenticated)]

INBOX_ROLES = frozenset({Role.APPROVER, Role.LEADERSHIP, Role.AUDITOR})
#: Who may read someone else's inbox (``?approver=``) or list what waits on someone else.
OVERSEER_ROLES = frozenset({Role.AUDITOR})
#: A principal id in a query: no control characters (PostgreSQL text cannot hold NUL).
PRINCIPAL_PATTERN = r"^[^\x00-\x1f\x7f]{1,200}$"
# Enough for every plan of the largest cycle; the page is cut after filtering by hierarchy and scope.
_ALL = 1_000_000


class PlanListItem(BaseModel):
    """A plan in the list: where it stands, whose decision it waits for, and whether anything is overdue."""

    unit_id: str
    level: OrgLevel
    parent_id: str | None
    authors: list[str]
    phase: Phase | None
    iteration: int
    revision: int | None
    signed_off_revision: int | None
    gate_id: str | None
    pending_approvers: list[str]
    gate_due_at: datetime | None
    escalated: bool
    overdue_months: int = Field(description="How many months of actuals are overdue (closed, some missing).")
    actuals_overdue_months: list[str] = Field(description="Those months, e.g. ['2027-01'].")
    explanations_overdue: int
    overdue: bool
    last_event_at: datetime
    version: int
    # With waiting_on: what waits on that person: 'approval' (a seat at the gate), 'draft' (their plan to
    # submit), 'changes' (changes requested of their plan), 'reopened' (their reopened plan to resubmit),
    # 'explanation' (a deviation they own).
    waiting_for: list[str] = []


class PlanList(BaseModel):
    cycle_id: str
    total: int
    plans: list[PlanListItem]


class Inbox(BaseModel):
    """What waits on ``approver`` now: their own seats, seats delegated to them, escalated gates they
    are the fallback of. An approval must name the item's ``content_hash``."""

    approver: str
    total: int
    items: list[InboxItem]


class TrackingView(BaseModel):
    """Every measure's target, actual and status by month."""

    plan_id: str
    cycle_id: str
    unit_id: str
    lines: list[TrackingLine]


def _in_scope(principal: Principal, state: CycleState, unit_id: str) -> bool:
    if principal.company_wide:
        return True
    assert state.hierarchy is not None
    lineage = {unit_id} | {u.unit_id for u in state.hierarchy.ancestors(unit_id)}
    return bool(lineage & set(principal.scopes))


def _whose(principal: Principal, approver: str | None, action: str) -> str:
    """The person asked about: the caller, or (for auditors and admins) anyone; ``action`` is what the
    refusal names, e.g. "reading the inbox"."""
    if approver is None or approver == principal.principal_id:
        return principal.principal_id
    if principal.is_admin or principal.roles & OVERSEER_ROLES:
        return approver
    raise ApiError(
        403,
        FORBIDDEN,
        f"{action} for another person ({approver}) needs the role auditor or admin; "
        f"{principal.principal_id} may see only their own",
    )


@router.get("/cycles/{cycle_id}/plans", response_model=PlanList)
async def list_cycle_plans(
    cycle_id: str,
    request: Request,
    principal: Authenticated,
    unit: Annotated[str | None, Query(description="Only this unit's plan and those below it.")] = None,
    phase: Annotated[Phase | None, Query(description="Only plans in this phase.")] = None,
    overdue: Annotated[
        bool | None,
        Query(description="Only plans with (or without) something overdue: actuals, explanations, a gate."),
    ] = None,
    escalated: Annotated[bool | None, Query(description="Only plans whose gate escalated (or not).")] = None,
    waiting_on: Annotated[
        str | None,
        Query(
            description="`me`: only plans where something waits on the caller: an approval (their seat, "
            "a seat delegated to them, or an escalated gate they are the fallback of), their own plan to "
            "submit or to revise after changes were requested, or a deviation they own to explain. Each "
            "plan says what in `waiting_for`. Auditors and admins may name another person.",
            pattern=PRINCIPAL_PATTERN,
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> PlanList:
    """The cycle's plans from the plan list read model, in hierarchy order, filtered; only those in the
    caller's scopes. Every role may list."""
    state: CycleState = await request.app.state.reader.cycle(cycle_id)
    assert state.hierarchy is not None
    pool = request.app.state.store.pool
    rows = {
        r.unit_id: r
        for r in await list_plans(
            pool,
            cycle=cycle_id,
            phase=phase.value if phase else None,
            overdue=overdue,
            limit=_ALL,
        )
    }
    planned = [p for p in state.plans if p.unit_id in rows and _in_scope(principal, state, p.unit_id)]
    if unit is not None:
        known = unit in {u.unit_id for u in state.hierarchy.units}
        subtree = {unit} | {u.unit_id for u in state.hierarchy.descendants(unit)} if known else set()
        planned = [p for p in planned if p.unit_id in subtree]
    waiting: dict[str, list[str]] = {}
    if waiting_on is not None:
        person = _whose(principal, None if waiting_on == "me" else waiting_on, "listing what waits")
        waiting = await waiting_on_person(pool, cycle_id, person)
        for item in await inbox(pool, person):
            if item.cycle_id == cycle_id and "approval" not in waiting.get(item.unit_id, []):
                waiting.setdefault(item.unit_id, []).insert(0, "approval")
        planned = [p for p in planned if p.unit_id in waiting]
    items = [
        PlanListItem(
            unit_id=p.unit_id,
            level=p.level,
            parent_id=p.parent_id,
            authors=list(rows[p.unit_id].authors),
            phase=Phase(rows[p.unit_id].phase),
            iteration=rows[p.unit_id].iteration,
            revision=rows[p.unit_id].current_revision,
            signed_off_revision=rows[p.unit_id].signed_off_revision,
            gate_id=rows[p.unit_id].gate_id,
            pending_approvers=rows[p.unit_id].pending_approvers,
            gate_due_at=rows[p.unit_id].gate_due_at,
            escalated=rows[p.unit_id].gate_escalated,
            overdue_months=len(rows[p.unit_id].actuals_overdue_months),
            actuals_overdue_months=rows[p.unit_id].actuals_overdue_months,
            explanations_overdue=rows[p.unit_id].explanations_overdue,
            overdue=rows[p.unit_id].overdue,
            last_event_at=rows[p.unit_id].last_event_at,
            version=rows[p.unit_id].version,
            waiting_for=waiting.get(p.unit_id, []),
        )
        for p in planned
    ]
    if escalated is not None:
        items = [i for i in items if i.escalated == escalated]
    return PlanList(cycle_id=cycle_id, total=len(items), plans=items[offset : offset + limit])


@router.get("/inbox", response_model=Inbox)
async def read_inbox(
    request: Request,
    principal: Authenticated,
    approver: Annotated[
        str | None,
        Query(
            description="Whose inbox (auditors and admins only); the caller's by default.",
            pattern=PRINCIPAL_PATTERN,
        ),
    ] = None,
) -> Inbox:
    """The approvals waiting on the caller now, most urgent first. Roles: approver, leadership; auditor and
    admin (who may name another approver). Only plans within the caller's scopes are shown."""
    principal.require_role(INBOX_ROLES, "reading an approvals inbox")
    whose = _whose(principal, approver, "reading the inbox")
    items = await inbox(request.app.state.store.pool, whose)
    if not principal.company_wide:
        reader = request.app.state.reader
        visible = []
        for item in items:
            ancestors = await reader.ancestors(item.cycle_id, item.unit_id)
            if item.unit_id in principal.scopes or any(a in principal.scopes for a in ancestors):
                visible.append(item)
        items = visible
    return Inbox(approver=whose, total=len(items), items=items)


@router.get("/cycles/{cycle_id}/plans/{unit_id}/tracking", response_model=TrackingView)
async def read_tracking(
    cycle_id: str, unit_id: str, request: Request, principal: Authenticated
) -> TrackingView:
    """The plan's tracking: per measure (revenue and each CSF) and month, the target, the actual and its
    status. Every role may read (within its org-unit scopes)."""
    await request.app.state.reader.require_scope(principal, cycle_id, unit_id)
    stream = plan_id(cycle_id, unit_id)
    if await request.app.state.store.stream_version(stream) == 0:
        raise ApiError(
            404,
            PLAN_NOT_FOUND,
            f"there is no plan of unit {unit_id} in cycle {cycle_id}; "
            f"GET /cycles/{cycle_id}/plans lists the cycle's plans",
        )
    found = await tracking(request.app.state.store.pool, stream)
    return TrackingView(plan_id=stream, cycle_id=cycle_id, unit_id=unit_id, lines=found.lines)
