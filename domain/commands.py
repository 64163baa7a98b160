"""What people and systems ask of a plan. Each command is decided against the current state by
domain.decide."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from domain.approval import CounterProposal, Gate
from domain.base import Amount, DomainModel, Month, UtcDateTime
from domain.calendar import CycleCalendar
from domain.execution import Csf, Team
from domain.money import CurrencyCode
from domain.scoring import LessonLink
from domain.strategy import PlanContent
from domain.tracking import ImprovementAction, StatusThresholds


class CommandBase(DomainModel):
    schema_version: int = 1
    actor: str = Field(min_length=1)
    # Time enters the domain only here: the decider has no clock of its own.
    at: UtcDateTime
    on_behalf_of: str | None = None


class OpenPlan(CommandBase):
    """Everything the plan's rules need comes in here, so a plan's stream is self-contained."""

    type: Literal["OpenPlan"] = "OpenPlan"
    cycle_id: str = Field(min_length=1)
    unit_id: str = Field(min_length=1)
    authors: tuple[str, ...]
    currency: CurrencyCode
    calendar: CycleCalendar
    approval_chain: tuple[Gate, ...]
    thresholds: StatusThresholds = StatusThresholds()


class ReviseStrategy(CommandBase):
    type: Literal["ReviseStrategy"] = "ReviseStrategy"
    content: PlanContent
    reason: str


class SubmitForApproval(CommandBase):
    type: Literal["SubmitForApproval"] = "SubmitForApproval"
    # The revision the author means to submit; refused if a newer one exists. None submits the latest.
    revision: int | None = None


class ApprovePlan(CommandBase):
    type: Literal["ApprovePlan"] = "ApprovePlan"
    content_hash: str
    comment: str = ""


class RequestChanges(CommandBase):
    type: Literal["RequestChanges"] = "RequestChanges"
    content_hash: str
    comment: str
    counter_proposal: CounterProposal | None = None


class RejectPlan(CommandBase):
    type: Literal["RejectPlan"] = "RejectPlan"
    content_hash: str
    reason: str


class AcceptCounterProposal(CommandBase):
    type: Literal["AcceptCounterProposal"] = "AcceptCounterProposal"
    reason: str = ""


class DelegateApproval(CommandBase):
    type: Literal["DelegateApproval"] = "DelegateApproval"
    delegate: str
    starts: UtcDateTime
    ends: UtcDateTime


class Tick(CommandBase):
    """The clock: reports which deadlines have passed at `at`. Idempotent."""

    type: Literal["Tick"] = "Tick"
    actor: str = "system:clock"


class ReopenPlan(CommandBase):
    type: Literal["ReopenPlan"] = "ReopenPlan"
    reason: str


class CancelPlan(CommandBase):
    type: Literal["CancelPlan"] = "CancelPlan"
    reason: str


class ClosePlan(CommandBase):
    """Sent to every plan when its cycle closes."""

    type: Literal["ClosePlan"] = "ClosePlan"
    reason: str


class StartExecutionPlanning(CommandBase):
    type: Literal["StartExecutionPlanning"] = "StartExecutionPlanning"
    sales_lead: str
    marketing_lead: str


class DefineCsf(CommandBase):
    type: Literal["DefineCsf"] = "DefineCsf"
    csf: Csf


class RemoveCsf(CommandBase):
    type: Literal["RemoveCsf"] = "RemoveCsf"
    csf_id: str


class AssignCsfOwner(CommandBase):
    """An execution-level adjustment, allowed while executing."""

    type: Literal["AssignCsfOwner"] = "AssignCsfOwner"
    csf_id: str
    owner: str
    coach: str | None = None


class ConfirmAlignment(CommandBase):
    type: Literal["ConfirmAlignment"] = "ConfirmAlignment"
    team: Team


class StartExecution(CommandBase):
    type: Literal["StartExecution"] = "StartExecution"


class RecordActual(CommandBase):
    type: Literal["RecordActual"] = "RecordActual"
    measure: str  # "revenue" or a CSF id
    month: Month
    value: Amount
    currency: CurrencyCode | None = None  # required for revenue, in the plan's currency
    source: str = Field(min_length=1)  # e.g. "crm:salesforce", "erp:sap", "manual"


class CorrectActual(CommandBase):
    type: Literal["CorrectActual"] = "CorrectActual"
    measure: str
    month: Month
    value: Amount
    currency: CurrencyCode | None = None
    source: str = Field(min_length=1)
    reason: str


class MonthlyActual(DomainModel):
    """One month's actual of one measure, inside RecordActuals: recorded, or (correction) corrected."""

    measure: str
    month: Month
    value: Amount
    currency: CurrencyCode | None = None
    source: str = Field(min_length=1)
    correction: bool = False
    reason: str = ""  # required for a correction

    def as_command(
        self, actor: str, at: datetime, on_behalf_of: str | None = None
    ) -> RecordActual | CorrectActual:
        """The actual as the command it stands for, alone: RecordActual, or CorrectActual with its reason."""
        fields = self.model_dump(exclude={"correction", "reason"})
        envelope = {"actor": actor, "at": at, "on_behalf_of": on_behalf_of}
        if self.correction:
            return CorrectActual(**envelope, **fields, reason=self.reason)
        return RecordActual(**envelope, **fields)


# A plan tracks revenue and a few CSFs over 12 months: a thousand actuals is far more than one plan has.
MAX_ACTUALS_PER_COMMAND = 1000


class RecordActuals(CommandBase):
    """Many actuals of one plan at once, all or none (a bulk import's rows for one plan): each is decided
    as its RecordActual or CorrectActual would be, on the plan as the ones before it left it."""

    type: Literal["RecordActuals"] = "RecordActuals"
    actuals: tuple[MonthlyActual, ...] = Field(min_length=1, max_length=MAX_ACTUALS_PER_COMMAND)


class ExplainDeviation(CommandBase):
    type: Literal["ExplainDeviation"] = "ExplainDeviation"
    deviation_id: str
    explanation: str


class IssueMonthlyReport(CommandBase):
    type: Literal["IssueMonthlyReport"] = "IssueMonthlyReport"
    month: Month


class HoldQuarterlyReview(CommandBase):
    type: Literal["HoldQuarterlyReview"] = "HoldQuarterlyReview"
    quarter: int
    attendees: tuple[str, ...]
    decisions: tuple[str, ...] = ()
    improvement_actions: tuple[ImprovementAction, ...] = ()


class CloseExecutionPeriod(CommandBase):
    type: Literal["CloseExecutionPeriod"] = "CloseExecutionPeriod"


class ScorePlan(CommandBase):
    type: Literal["ScorePlan"] = "ScorePlan"
    plan_quality: int
    execution_effectiveness: int
    rationale: str = ""


class RecordLesson(CommandBase):
    type: Literal["RecordLesson"] = "RecordLesson"
    text: str
    category: str = "general"


class RefineStrategy(CommandBase):
    """Opens the next iteration from the last strategy; every changed field is linked to a lesson."""

    type: Literal["RefineStrategy"] = "RefineStrategy"
    content: PlanContent
    reason: str
    lesson_links: tuple[LessonLink, ...]
    # The next iteration's calendar; None shifts the current one by one execution period.
    calendar: CycleCalendar | None = None


Command = Annotated[
    OpenPlan
    | ReviseStrategy
    | SubmitForApproval
    | ApprovePlan
    | RequestChanges
    | RejectPlan
    | AcceptCounterProposal
    | DelegateApproval
    | Tick
    | ReopenPlan
    | CancelPlan
    | ClosePlan
    | StartExecutionPlanning
    | DefineCsf
    | RemoveCsf
    | AssignCsfOwner
    | ConfirmAlignment
    | StartExecution
    | RecordActual
    | CorrectActual
    | RecordActuals
    | ExplainDeviation
    | IssueMonthlyReport
    | HoldQuarterlyReview
    | CloseExecutionPeriod
    | ScorePlan
    | RecordLesson
    | RefineStrategy,
    Field(discriminator="type"),
]

CommandAdapter: TypeAdapter[Command] = TypeAdapter(Command)
