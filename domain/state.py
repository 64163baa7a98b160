"""A plan's state: what the decider needs to judge the next command. Built only by folding events (evolve)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from domain.approval import CounterProposal, Delegation, Gate, GateDecisionRecord
from domain.base import DomainModel, UtcDateTime
from domain.calendar import CycleCalendar
from domain.execution import Csf, Team
from domain.scoring import Lesson, LessonLink, PlanScore, ScoreEvidence
from domain.strategy import PlanContent, RevisionDiff, RevisionSource
from domain.tracking import (
    ActualEntry,
    Deviation,
    MonthlyReport,
    QuarterlyReview,
    StatusThresholds,
    current_actuals,
)


class Phase(StrEnum):
    """Where a plan stands in the loop. Refine opens the next iteration directly in DRAFTING (no REFINING)."""

    DRAFTING = "drafting"
    IN_REVIEW = "in_review"
    CHANGES_REQUESTED = "changes_requested"
    APPROVED = "approved"
    EXECUTION_PLANNING = "execution_planning"
    EXECUTING = "executing"
    LEARNING = "learning"
    REJECTED = "rejected"
    REOPENED = "reopened"
    CANCELLED = "cancelled"
    CLOSED = "closed"


# Phases in which the author may record a new revision of the strategy.
EDITABLE_PHASES = frozenset({Phase.DRAFTING, Phase.CHANGES_REQUESTED, Phase.REOPENED, Phase.REJECTED})
TERMINAL_PHASES = frozenset({Phase.CANCELLED, Phase.CLOSED})


class Revision(DomainModel):
    number: int
    iteration: int
    author: str
    at: UtcDateTime
    reason: str
    content: PlanContent
    content_hash: str
    diff: RevisionDiff
    source: RevisionSource
    counter_proposal_by: str | None = None
    lesson_links: tuple[LessonLink, ...] = ()


class Submission(DomainModel):
    revision: int
    content_hash: str
    submitted_at: UtcDateTime


class GateProgress(DomainModel):
    index: int
    opened_at: UtcDateTime
    due_at: UtcDateTime
    approved_by: tuple[str, ...] = ()  # approver seats that approved this round
    reminded: bool = False
    escalated: bool = False


class PendingCounterProposal(DomainModel):
    proposal: CounterProposal
    proposed_by: str
    gate_index: int
    revision: int


class IterationSummary(DomainModel):
    iteration: int
    signed_off_revision: int | None
    evidence: ScoreEvidence | None
    score: PlanScore | None
    lessons: tuple[Lesson, ...]


class PlanState(DomainModel):
    version: int = 0  # events applied
    phase: Phase | None = None  # None: not opened yet
    cycle_id: str = ""
    unit_id: str = ""
    authors: tuple[str, ...] = ()
    currency: str = ""
    calendar: CycleCalendar | None = None
    approval_chain: tuple[Gate, ...] = ()
    thresholds: StatusThresholds = StatusThresholds()
    iteration: int = 0
    revisions: tuple[Revision, ...] = ()
    iteration_editors: tuple[str, ...] = ()
    submission: Submission | None = None
    gate: GateProgress | None = None
    decisions: tuple[GateDecisionRecord, ...] = ()
    counter_proposal: PendingCounterProposal | None = None
    delegations: tuple[Delegation, ...] = ()
    signed_off_revision: int | None = None
    sales_lead: str | None = None
    marketing_lead: str | None = None
    csfs: tuple[Csf, ...] = ()
    aligned: tuple[Team, ...] = ()
    actuals: tuple[ActualEntry, ...] = ()
    overdue_months: tuple[str, ...] = ()
    reviews_due: tuple[int, ...] = ()
    period_end_reached: bool = False
    deviations: tuple[Deviation, ...] = ()
    reports: tuple[MonthlyReport, ...] = ()
    reviews: tuple[QuarterlyReview, ...] = ()
    evidence: ScoreEvidence | None = None
    score: PlanScore | None = None
    lessons: tuple[Lesson, ...] = ()
    history: tuple[IterationSummary, ...] = ()
    reopen_reasons: tuple[str, ...] = ()
    end_reason: str | None = None

    @classmethod
    def empty(cls) -> PlanState:
        return cls()

    @property
    def latest_revision(self) -> Revision | None:
        return self.revisions[-1] if self.revisions else None

    def revision(self, number: int) -> Revision | None:
        return next((r for r in self.revisions if r.number == number), None)

    @property
    def current_gate(self) -> Gate | None:
        return None if self.gate is None else self.approval_chain[self.gate.index]

    @property
    def last_gate(self) -> Gate | None:
        return self.approval_chain[-1] if self.approval_chain else None

    @property
    def strategy(self) -> PlanContent | None:
        """The strategy in force: the signed-off revision once there is one, else the latest draft."""
        signed = self.revision(self.signed_off_revision) if self.signed_off_revision is not None else None
        if signed is not None:
            return signed.content
        latest = self.latest_revision
        return None if latest is None else latest.content

    def csf(self, csf_id: str) -> Csf | None:
        return next((c for c in self.csfs if c.csf_id == csf_id), None)

    def csfs_of(self, team: Team) -> tuple[Csf, ...]:
        return tuple(c for c in self.csfs if c.team == team)

    def current_actuals(self) -> dict[str, dict[str, Decimal]]:
        return current_actuals(self.actuals)

    def deviation(self, deviation_id: str) -> Deviation | None:
        return next((d for d in self.deviations if d.deviation_id == deviation_id), None)

    def active_delegations(self, at: datetime) -> tuple[Delegation, ...]:
        return tuple(d for d in self.delegations if d.active_at(at))


def initial_state() -> PlanState:
    return PlanState.empty()
