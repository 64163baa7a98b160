"""Reading the read models: typed answers for the API and dashboards, one SQL statement each.

Read models lag the event store by the projector's latency (usually well under a second); each
answer carries the ``version`` of the plan it reflects, so a client that has just written can tell
whether the row already includes its write.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Final, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict


class _ReadModel(BaseModel):
    model_config = ConfigDict(frozen=True)


class PlanSummary(_ReadModel):
    stream_id: str
    cycle_id: str
    unit_id: str
    phase: str
    iteration: int
    current_revision: int | None
    signed_off_revision: int | None
    authors: list[str]
    gate_id: str | None
    gate_index: int | None
    pending_approvers: list[str]
    gate_due_at: datetime | None
    gate_escalated: bool
    actuals_overdue_months: list[str]
    explanations_overdue: int
    overdue: bool
    last_event_at: datetime
    version: int
    explanations_owed_by: list[str] = []  # owners of unexplained deviations while the plan tracks actuals


class InboxItem(_ReadModel):
    approver: str
    stream_id: str
    seat: str  # whose seat this is: the approver's own, a delegator's, or the fallback's
    via: Literal["seat", "delegation", "fallback"]
    cycle_id: str
    unit_id: str
    gate_id: str
    gate_index: int
    revision: int
    content_hash: str  # an approval must name this hash: it binds the decision to what was seen
    due_at: datetime
    escalated: bool
    valid_from: datetime | None
    valid_until: datetime | None


class TrackingLine(_ReadModel):
    measure: str
    month: str
    target: Decimal | None
    actual: Decimal | None
    status: str
    source: str | None
    updated_at: datetime


class PlanTracking(_ReadModel):
    stream_id: str
    lines: list[TrackingLine]


LIST_PLANS: Final = """
SELECT * FROM plan_list
 WHERE ($1::text IS NULL OR cycle_id = $1)
   AND ($2::text IS NULL OR unit_id = $2)
   AND ($3::text IS NULL OR phase = $3)
   AND ($4::boolean IS NULL OR overdue = $4)
   AND ($5::text IS NULL OR pending_approvers @> ARRAY[$5::text])
 ORDER BY cycle_id, unit_id
 LIMIT $6
"""

INBOX: Final = """
SELECT * FROM approval_inbox
 WHERE approver = $1
   AND (valid_from IS NULL OR valid_from <= $2)
   AND (valid_until IS NULL OR $2 < valid_until)
 ORDER BY due_at, stream_id, seat
"""

TRACKING: Final = """
SELECT measure, month, target, actual, status, source, updated_at
  FROM plan_tracking
 WHERE stream_id = $1
 ORDER BY month, measure = 'revenue' DESC, measure
"""


async def list_plans(
    pool: asyncpg.Pool,
    *,
    cycle: str | None = None,
    unit: str | None = None,
    phase: str | None = None,
    overdue: bool | None = None,
    waiting_on: str | None = None,
    limit: int = 1000,
) -> list[PlanSummary]:
    """Plans matching every given filter; ``waiting_on`` is an approver whose seat is pending."""
    rows = await pool.fetch(LIST_PLANS, cycle, unit, phase, overdue, waiting_on, limit)
    return [PlanSummary.model_validate(dict(row)) for row in rows]


async def inbox(pool: asyncpg.Pool, approver: str, at: datetime | None = None) -> list[InboxItem]:
    """What waits on ``approver`` at ``at`` (now by default): their own seats, seats delegated to
    them for a period covering ``at``, and escalated gates they are the fallback of."""
    rows = await pool.fetch(INBOX, approver, at or datetime.now(UTC))
    return [InboxItem.model_validate(dict(row)) for row in rows]


#: Besides approvals (the inbox): plans whose next step is their authors' (a draft to submit, changes
#: requested to answer, a reopened plan to resubmit), and deviations waiting on their owner's explanation.
WAITING_ON_PERSON: Final = """
SELECT unit_id,
       CASE phase WHEN 'drafting' THEN 'draft' WHEN 'reopened' THEN 'reopened' ELSE 'changes' END
           AS waiting_for
  FROM plan_list
 WHERE cycle_id = $1 AND $2 = ANY (authors) AND phase IN ('drafting', 'changes_requested', 'reopened')
UNION ALL
SELECT unit_id, 'explanation'
  FROM plan_list
 WHERE cycle_id = $1 AND explanations_owed_by @> ARRAY[$2::text]
"""


async def waiting_on_person(pool: asyncpg.Pool, cycle: str, person: str) -> dict[str, list[str]]:
    """Per unit of ``cycle``, what waits on ``person`` other than an approval: 'draft' (their plan to
    submit), 'changes' (changes requested of their plan), 'reopened' (their reopened plan to resubmit),
    'explanation' (a deviation they own)."""
    waiting: dict[str, list[str]] = {}
    for row in await pool.fetch(WAITING_ON_PERSON, cycle, person):
        waiting.setdefault(row["unit_id"], []).append(row["waiting_for"])
    return waiting


async def tracking(pool: asyncpg.Pool, plan: str) -> PlanTracking:
    """Every measure's target, actual and status by month for the plan with stream id ``plan``."""
    rows = await pool.fetch(TRACKING, plan)
    return PlanTracking(stream_id=plan, lines=[TrackingLine.model_validate(dict(row)) for row in rows])
