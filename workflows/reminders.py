"""ScheduledTrigger: what a Temporal Schedule of planloop starts, once per firing.

A Schedule's action starts a workflow with fixed arguments, but a recurring trigger needs the moment it
fires: the cycle opened each October is named after the year it plans, and the monthly reminder names the
month whose actuals are due. This small workflow reads that moment from ``workflow.now()`` (deterministic)
and acts:

* ``open_cycle``: builds the OpenCycle of the year from the schedule's cycle template (its hierarchy and
  the shape of its calendar), checks it with the pure cycle decider and starts the cycle's CycleWorkflow
  (id ``cycle:{cycle_id}``, an abandoned child, never a second time for the same id). A firing for a cycle
  that exists already (a manual trigger, a retried firing) changes nothing.
* ``actuals_reminder``: records an ``ActualsReminderIssued`` event in the stream ``reminder:{cycle_id}``
  through the ``append_events`` activity, naming the month whose actuals are due and when; the feed and
  outbound webhooks carry it to the systems that post actuals. A month outside the cycle's execution
  period is skipped. The event is an integration event, not a plan event: no plan's state changes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, ApplicationError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from domain import CycleCalendar, DomainError, GateDeadline, OrgHierarchy, OrgLevel
    from domain.base import month_add
    from domain.cycle import CycleState, OpenCycle, decide_cycle
    from domain.envelope import AppendOutcome, AppendRequest, EventMetadata, EventToAppend
    from domain.money import CurrencyCode
    from workflows.contracts import CycleStart
    from workflows.cycle import cycle_workflow_id
    from workflows.recording import APPEND_RETRY, APPEND_TIMEOUT

REMINDER_EVENT = "ActualsReminderIssued"


def reminder_stream(cycle_id: str) -> str:
    return f"reminder:{cycle_id}"


class CycleTemplate(BaseModel):
    """A cycle as a shape, to be opened every year: the hierarchy and the calendar relative to the opening.

    Opened in year Y, the cycle plans year ``Y + year_offset`` and is named ``cycle_id_pattern`` with
    ``{year}`` replaced by that year (``FY{year}`` -> FY2027); execution starts in ``execution_start_month``
    of that year. Gate deadlines and the approval deadline are days after the opening.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    hierarchy: OrgHierarchy
    currency: CurrencyCode = "EUR"
    cycle_id_pattern: str = Field(default="FY{year}", min_length=1, max_length=80)
    year_offset: int = Field(default=1, ge=0, le=5)
    execution_start_month: int = Field(default=1, ge=1, le=12)
    execution_months: int = Field(default=12, ge=1, le=36)
    monthly_close_day: int = Field(default=5, ge=1, le=28)
    gate_deadline_days: dict[OrgLevel, int] = Field(default_factory=dict)
    approval_deadline_days: int | None = Field(default=None, ge=1, le=366)

    @field_validator("cycle_id_pattern")
    @classmethod
    def _names_the_year(cls, pattern: str) -> str:
        if "{year}" not in pattern or pattern.replace("{year}", "").count("{") > 0:
            raise ValueError("the cycle id pattern must contain {year} (and no other braces), e.g. FY{year}")
        return pattern

    @field_validator("gate_deadline_days")
    @classmethod
    def _positive_days(cls, days: dict[OrgLevel, int]) -> dict[OrgLevel, int]:
        if any(not 1 <= d <= 366 for d in days.values()):
            raise ValueError("gate deadlines are 1 to 366 days after the opening")
        return days

    def cycle_id(self, opened_at: datetime) -> str:
        return self.cycle_id_pattern.replace("{year}", str(opened_at.year + self.year_offset))

    def calendar(self, opened_at: datetime) -> CycleCalendar:
        day = opened_at.replace(hour=0, minute=0, second=0, microsecond=0)
        year = opened_at.year + self.year_offset
        return CycleCalendar(
            cycle_id=self.cycle_id(opened_at),
            execution_start=f"{year:04d}-{self.execution_start_month:02d}",
            execution_months=self.execution_months,
            monthly_close_day=self.monthly_close_day,
            gate_deadlines=tuple(
                GateDeadline(level=level, at=day + timedelta(days=days))
                for level, days in sorted(self.gate_deadline_days.items())
            ),
            strategy_window_opens=day,
            approval_deadline=(
                day + timedelta(days=self.approval_deadline_days) if self.approval_deadline_days else None
            ),
        )

    def open_command(self, opened_at: datetime, actor: str, on_behalf_of: str | None = None) -> OpenCycle:
        return OpenCycle(
            actor=actor,
            on_behalf_of=on_behalf_of,
            at=opened_at,
            calendar=self.calendar(opened_at),
            hierarchy=self.hierarchy,
            currency=self.currency,
        )


class ScheduledTrigger(BaseModel):
    """The fixed argument of a schedule's action: what to do at each firing, and on whose behalf."""

    model_config = ConfigDict(frozen=True)

    schedule_id: str
    kind: Literal["open_cycle", "actuals_reminder"]
    actor: str  # the actor recorded on what a firing causes, e.g. schedule:open-fy
    on_behalf_of: str | None = None  # who created the schedule
    template: CycleTemplate | None = None  # open_cycle
    cycle_id: str | None = None  # actuals_reminder
    calendar: CycleCalendar | None = None  # actuals_reminder: the cycle's calendar, to skip other months


class TriggerOutcome(BaseModel):
    schedule_id: str
    kind: str
    fired_at: datetime
    cycle_id: str | None = None
    month: str | None = None
    done: Literal["cycle_opened", "cycle_exists", "reminder_recorded", "skipped"]
    detail: str = ""


@workflow.defn(name="ScheduledTrigger")
class ScheduledTriggerWorkflow:
    @workflow.run
    async def run(self, trigger: ScheduledTrigger) -> TriggerOutcome:
        now = workflow.now()
        if trigger.kind == "open_cycle":
            return await self._open_cycle(trigger, now)
        return await self._remind(trigger, now)

    async def _open_cycle(self, trigger: ScheduledTrigger, now: datetime) -> TriggerOutcome:
        assert trigger.template is not None
        command = trigger.template.open_command(now, trigger.actor, trigger.on_behalf_of)
        cycle_id = command.calendar.cycle_id
        try:
            decide_cycle(CycleState(), command)
        except DomainError as err:
            raise ApplicationError(
                f"the template does not open a valid cycle {cycle_id}: {err.message}",
                type=str(err.code),
                non_retryable=True,
            ) from None
        outcome = TriggerOutcome(
            schedule_id=trigger.schedule_id,
            kind=trigger.kind,
            fired_at=now,
            cycle_id=cycle_id,
            done="cycle_opened",
        )
        try:
            await workflow.start_child_workflow(
                "CycleWorkflow",
                CycleStart(open=command),
                id=cycle_workflow_id(cycle_id),
                parent_close_policy=ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            return outcome.model_copy(
                update={"done": "cycle_exists", "detail": f"{cycle_id} is open already"}
            )
        return outcome

    async def _remind(self, trigger: ScheduledTrigger, now: datetime) -> TriggerOutcome:
        assert trigger.cycle_id is not None
        month = month_add(f"{now.year:04d}-{now.month:02d}", -1)
        outcome = TriggerOutcome(
            schedule_id=trigger.schedule_id,
            kind=trigger.kind,
            fired_at=now,
            cycle_id=trigger.cycle_id,
            month=month,
            done="reminder_recorded",
        )
        calendar = trigger.calendar
        if calendar is not None and not calendar.contains(month):
            return outcome.model_copy(
                update={"done": "skipped", "detail": f"{month} is outside the cycle's execution period"}
            )
        info = workflow.info()
        data = {
            "cycle_id": trigger.cycle_id,
            "month": month,
            "due_at": calendar.close_at(month).isoformat() if calendar is not None else None,
            "schedule_id": trigger.schedule_id,
            "message": f"post the actuals of {month} for every plan of cycle {trigger.cycle_id}",
        }
        request = AppendRequest(
            stream_id=reminder_stream(trigger.cycle_id),
            expected_version="any",
            events=[
                EventToAppend(
                    event_id=workflow.uuid4(),
                    type=REMINDER_EVENT,
                    data=data,
                    metadata=EventMetadata(
                        actor=trigger.actor,
                        on_behalf_of=trigger.on_behalf_of,
                        source="schedule",
                        request_id=f"{info.workflow_id}:{info.run_id}",
                        workflow_id=info.workflow_id,
                        run_id=info.run_id,
                    ),
                )
            ],
        )
        try:
            await workflow.execute_activity(
                "append_events",
                request,
                result_type=AppendOutcome,
                start_to_close_timeout=APPEND_TIMEOUT,
                retry_policy=APPEND_RETRY,
            )
        except ActivityError as err:
            raise ApplicationError(
                f"the reminder could not be recorded ({err.cause})", type="append_failed", non_retryable=True
            ) from None
        return outcome
