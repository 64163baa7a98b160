"""Everything that can happen to a plan, as frozen, versioned, self-describing facts.

Each event carries the command's actor, time and on-behalf-of, plus every field a later reader (replay,
auditor, projection) needs: nothing is recomputed from configuration that might have changed since.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from domain.approval import CounterProposal, Gate
from domain.base import DomainModel, Month, UtcDateTime
from domain.calendar import CycleCalendar
from domain.execution import Csf, Team
from domain.scoring import LessonLink, ScoreEvidence
from domain.strategy import PlanContent, RevisionDiff, RevisionSource
from domain.tracking import MeasureStatus, MonthlyReport, QuarterlyReview, StatusThresholds


class EventBase(DomainModel):
    schema_version: int = 1
    actor: str
    at: UtcDateTime
    on_behalf_of: str | None = None


# -- opening, revisions, lifecycle -------------------------------------------------------------------------


class PlanOpened(EventBase):
    type: Literal["PlanOpened"] = "PlanOpened"
    cycle_id: str
    unit_id: str
    authors: tuple[str, ...]
    currency: str
    calendar: CycleCalendar
    approval_chain: tuple[Gate, ...]
    thresholds: StatusThresholds


class RevisionRecorded(EventBase):
    type: Literal["RevisionRecorded"] = "RevisionRecorded"
    revision: int
    iteration: int
    reason: str
    content: PlanContent
    content_hash: str
    diff: RevisionDiff
    source: RevisionSource = RevisionSource.AUTHOR
    counter_proposal_by: str | None = None
    lesson_links: tuple[LessonLink, ...] = ()


class PlanReopened(EventBase):
    type: Literal["PlanReopened"] = "PlanReopened"
    reason: str
    revision: int


class PlanCancelled(EventBase):
    type: Literal["PlanCancelled"] = "PlanCancelled"
    reason: str


class PlanClosed(EventBase):
    type: Literal["PlanClosed"] = "PlanClosed"
    reason: str


# -- approval --------------------------------------------------------------------------------------


class PlanSubmitted(EventBase):
    type: Literal["PlanSubmitted"] = "PlanSubmitted"
    revision: int
    content_hash: str
    gate_index: int
    gate_id: str
    due_at: UtcDateTime


class ApprovalRecorded(EventBase):
    type: Literal["ApprovalRecorded"] = "ApprovalRecorded"
    gate_index: int
    gate_id: str
    approver: str  # whose seat at the gate; `actor` is who acted (a delegate or the fallback)
    revision: int
    content_hash: str


class GatePassed(EventBase):
    type: Literal["GatePassed"] = "GatePassed"
    gate_index: int
    gate_id: str
    next_gate_index: int | None
    next_gate_id: str | None
    next_due_at: UtcDateTime | None


class PlanSignedOff(EventBase):
    type: Literal["PlanSignedOff"] = "PlanSignedOff"
    revision: int
    content_hash: str


class ChangesRequested(EventBase):
    type: Literal["ChangesRequested"] = "ChangesRequested"
    gate_index: int
    gate_id: str
    approver: str
    revision: int
    content_hash: str
    comment: str
    counter_proposal: CounterProposal | None = None


class PlanRejected(EventBase):
    type: Literal["PlanRejected"] = "PlanRejected"
    gate_index: int
    gate_id: str
    approver: str
    revision: int
    content_hash: str
    reason: str


class ApprovalDelegated(EventBase):
    type: Literal["ApprovalDelegated"] = "ApprovalDelegated"
    approver: str
    delegate: str
    starts: UtcDateTime
    ends: UtcDateTime


class GateReminderSent(EventBase):
    type: Literal["GateReminderSent"] = "GateReminderSent"
    gate_index: int
    gate_id: str
    due_at: UtcDateTime
    pending: tuple[str, ...]


class GateEscalated(EventBase):
    type: Literal["GateEscalated"] = "GateEscalated"
    gate_index: int
    gate_id: str
    due_at: UtcDateTime
    fallback_approver: str
    pending: tuple[str, ...]


# -- execution planning -------------------------------------------------------------------------------------


class ExecutionPlanningStarted(EventBase):
    type: Literal["ExecutionPlanningStarted"] = "ExecutionPlanningStarted"
    sales_lead: str
    marketing_lead: str


class CsfDefined(EventBase):
    type: Literal["CsfDefined"] = "CsfDefined"
    csf: Csf


class CsfRemoved(EventBase):
    type: Literal["CsfRemoved"] = "CsfRemoved"
    csf_id: str


class CsfOwnerAssigned(EventBase):
    type: Literal["CsfOwnerAssigned"] = "CsfOwnerAssigned"
    csf_id: str
    owner: str
    coach: str | None


class AlignmentConfirmed(EventBase):
    type: Literal["AlignmentConfirmed"] = "AlignmentConfirmed"
    team: Team


class ExecutionStarted(EventBase):
    type: Literal["ExecutionStarted"] = "ExecutionStarted"
    csf_ids: tuple[str, ...]


# -- tracking --------------------------------------------------------------------------------------


class ActualRecorded(EventBase):
    type: Literal["ActualRecorded"] = "ActualRecorded"
    entry_id: str
    measure: str
    month: Month
    value: Decimal
    source: str
    target: Decimal | None
    status: MeasureStatus


class ActualCorrected(EventBase):
    type: Literal["ActualCorrected"] = "ActualCorrected"
    entry_id: str
    corrects: str
    measure: str
    month: Month
    value: Decimal
    source: str
    reason: str
    target: Decimal | None
    status: MeasureStatus


class DeviationOpened(EventBase):
    type: Literal["DeviationOpened"] = "DeviationOpened"
    deviation_id: str
    measure: str
    month: Month
    owner: str
    actual: Decimal
    target: Decimal
    due_at: UtcDateTime


class DeviationExplained(EventBase):
    type: Literal["DeviationExplained"] = "DeviationExplained"
    deviation_id: str
    explanation: str


class ActualsOverdue(EventBase):
    type: Literal["ActualsOverdue"] = "ActualsOverdue"
    month: Month
    missing: tuple[str, ...]
    due_at: UtcDateTime


class ExplanationOverdue(EventBase):
    type: Literal["ExplanationOverdue"] = "ExplanationOverdue"
    deviation_id: str
    owner: str
    due_at: UtcDateTime


class QuarterlyReviewDue(EventBase):
    type: Literal["QuarterlyReviewDue"] = "QuarterlyReviewDue"
    quarter: int
    due_at: UtcDateTime


class PeriodEndReached(EventBase):
    type: Literal["PeriodEndReached"] = "PeriodEndReached"
    period_end: UtcDateTime


class MonthlyReportIssued(EventBase):
    type: Literal["MonthlyReportIssued"] = "MonthlyReportIssued"
    report: MonthlyReport


class QuarterlyReviewHeld(EventBase):
    type: Literal["QuarterlyReviewHeld"] = "QuarterlyReviewHeld"
    review: QuarterlyReview


# -- learning and refining ----------------------------------------------------------------------------------


class ExecutionPeriodClosed(EventBase):
    type: Literal["ExecutionPeriodClosed"] = "ExecutionPeriodClosed"
    evidence: ScoreEvidence


class PlanScored(EventBase):
    """v2 renamed v1's `quality`/`effectiveness` and records `results`; see domain.upcasting."""

    schema_version: int = 2
    type: Literal["PlanScored"] = "PlanScored"
    plan_quality: int
    execution_effectiveness: int
    results: int
    rationale: str


class LessonRecorded(EventBase):
    type: Literal["LessonRecorded"] = "LessonRecorded"
    lesson_id: str
    text: str
    category: str


class StrategyRefined(EventBase):
    """Opens the next iteration; the RevisionRecorded that follows carries the refined content."""

    type: Literal["StrategyRefined"] = "StrategyRefined"
    iteration: int
    calendar: CycleCalendar
    lesson_links: tuple[LessonLink, ...]


Event = Annotated[
    PlanOpened
    | RevisionRecorded
    | PlanReopened
    | PlanCancelled
    | PlanClosed
    | PlanSubmitted
    | ApprovalRecorded
    | GatePassed
    | PlanSignedOff
    | ChangesRequested
    | PlanRejected
    | ApprovalDelegated
    | GateReminderSent
    | GateEscalated
    | ExecutionPlanningStarted
    | CsfDefined
    | CsfRemoved
    | CsfOwnerAssigned
    | AlignmentConfirmed
    | ExecutionStarted
    | ActualRecorded
    | ActualCorrected
    | DeviationOpened
    | DeviationExplained
    | ActualsOverdue
    | ExplanationOverdue
    | QuarterlyReviewDue
    | PeriodEndReached
    | MonthlyReportIssued
    | QuarterlyReviewHeld
    | ExecutionPeriodClosed
    | PlanScored
    | LessonRecorded
    | StrategyRefined,
    Field(discriminator="type"),
]

EventAdapter: TypeAdapter[Event] = TypeAdapter(Event)
EventListAdapter: TypeAdapter[list[Event]] = TypeAdapter(list[Event])
