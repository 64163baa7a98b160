"""Builders for domain tests: a German business-unit plan in cycle FY2027, and a harness that runs
commands."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from domain import (
    BudgetLine,
    Csf,
    CycleCalendar,
    DomainError,
    Event,
    ForecastLine,
    Gate,
    GateDeadline,
    GateMode,
    Money,
    MonthTarget,
    OrgLevel,
    PlanContent,
    PlanState,
    Program,
    SmartGoal,
    StrategyChoices,
    StrategyComponents,
    Team,
    decide,
    evolve,
)
from domain import commands as cmd

T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)
AUTHOR = "bu-head"
COUNTRY = "de-country-mgr"
REGION = ("eu-cfo", "eu-coo", "eu-cso")
GLOBAL = ("ceo", "cfo")
SALES_LEAD = "sales-lead"
MARKETING_LEAD = "marketing-lead"
MONTHS = tuple(f"2027-{m:02d}" for m in range(1, 13))
# A seasonal business: a slow start, a strong spring and autumn, a quiet August, a strong December.
PROFILE = (80, 85, 100, 105, 110, 100, 95, 70, 105, 110, 115, 125)


def calendar() -> CycleCalendar:
    return CycleCalendar(
        cycle_id="FY2027",
        execution_start="2027-01",
        execution_months=12,
        monthly_close_day=5,
        gate_deadlines=(
            GateDeadline(level=OrgLevel.COUNTRY, at=datetime(2026, 10, 15, tzinfo=UTC)),
            GateDeadline(level=OrgLevel.REGION, at=datetime(2026, 11, 1, tzinfo=UTC)),
            GateDeadline(level=OrgLevel.GLOBAL, at=datetime(2026, 11, 15, tzinfo=UTC)),
        ),
        approval_deadline=datetime(2026, 11, 30, tzinfo=UTC),
    )


def chain() -> tuple[Gate, ...]:
    return (
        Gate(
            gate_id="country:DE",
            name="Germany country management",
            approvers=(COUNTRY,),
            deadline=datetime(2026, 10, 15, tzinfo=UTC),
            fallback_approver="de-country-deputy",
        ),
        Gate(
            gate_id="region:EU",
            name="Europe regional leadership",
            approvers=REGION,
            mode=GateMode.QUORUM,
            quorum=2,
            deadline=datetime(2026, 11, 1, tzinfo=UTC),
            fallback_approver="eu-president",
        ),
        Gate(
            gate_id="global:HQ",
            name="Global leadership",
            approvers=GLOBAL,
            mode=GateMode.ALL,
            deadline=datetime(2026, 11, 15, tzinfo=UTC),
            fallback_approver="board-chair",
        ),
    )


def eur(amount: int | str | Decimal) -> Money:
    return Money(amount=Decimal(amount), currency="EUR")


def content(scale: int = 1000, **overrides: Any) -> PlanContent:
    base = PlanContent(
        choices=StrategyChoices(
            winning_aspiration="Be the preferred automation partner of German mid-sized manufacturers.",
            where_to_play="Mid-sized discrete manufacturers in Bavaria and Baden-Wuerttemberg.",
            how_to_win="Fast commissioning by certified partners and a fixed-price service contract.",
            capabilities="Partner certification, application engineering, inside sales.",
            management_systems="Monthly pipeline review, partner scorecard, quarterly win-loss analysis.",
        ),
        components=StrategyComponents(
            target_market="Discrete manufacturing, 50-500 employees",
            ideal_customer="Owner-led firm with a plant modernisation budget",
            value_proposition="Commissioned in four weeks, at a fixed price",
            sales_process=("qualify", "demo", "pilot", "contract"),
            sales_channels=("direct", "partners"),
            pricing_strategy="Value-based, fixed-price services",
            competitive_analysis="Two global vendors, slow to commission",
        ),
        goals=(
            SmartGoal(
                goal_id="G-REV",
                description="Revenue of the fiscal year",
                metric="revenue",
                unit="EUR",
                target=Decimal(sum(PROFILE) * scale),
                deadline=date(2027, 12, 31),
            ),
            SmartGoal(
                goal_id="G-LOGOS",
                description="New customers won",
                metric="new_customers",
                unit="customers",
                target=Decimal(40),
                deadline=date(2027, 12, 31),
            ),
        ),
        forecast=tuple(
            ForecastLine(month=m, amount=eur(p * scale)) for m, p in zip(MONTHS, PROFILE, strict=True)
        ),
        programs=(
            Program(program_id="P-FAIR", name="Hannover Messe", cost=eur(50000), expected_effect="120 leads"),
            Program(
                program_id="P-PARTNER", name="Partner program", cost=eur(80000), expected_effect="8 partners"
            ),
            Program(
                program_id="P-WEBINAR", name="Webinar series", cost=eur(20000), expected_effect="300 leads"
            ),
        ),
        budget=(
            BudgetLine(line_id="B-TRAVEL", category="travel", amount=eur(60000)),
            BudgetLine(line_id="B-MARKETING", category="marketing", amount=eur(150000)),
            BudgetLine(line_id="B-HEADCOUNT", category="headcount", amount=eur(400000)),
        ),
    )
    return base.model_copy(update=overrides)


def csf(csf_id: str, team: Team, owner: str, target: int = 10, coach: str | None = None) -> Csf:
    return Csf(
        csf_id=csf_id,
        team=team,
        name=f"CSF {csf_id}",
        measure=f"{csf_id} per month",
        unit="count",
        monthly_targets=tuple(MonthTarget(month=m, target=Decimal(target)) for m in MONTHS),
        owner=owner,
        coach=coach,
    )


def open_plan(at: datetime = T0, **overrides: Any) -> cmd.OpenPlan:
    fields: dict[str, Any] = {
        "actor": "system:cycle",
        "at": at,
        "cycle_id": "FY2027",
        "unit_id": "DE-AUTOMATION",
        "authors": (AUTHOR,),
        "currency": "EUR",
        "calendar": calendar(),
        "approval_chain": chain(),
    }
    fields.update(overrides)
    return cmd.OpenPlan(**fields)


@dataclass
class Harness:
    """Runs commands the way the workflow does: decide, then fold the events into the state."""

    state: PlanState = field(default_factory=PlanState.empty)
    events: list[Event] = field(default_factory=list)
    now: datetime = T0

    def at(self, moment: datetime) -> Harness:
        self.now = moment
        return self

    def later(self, **delta: float) -> datetime:
        self.now = self.now + timedelta(**delta)
        return self.now

    def run(self, command: cmd.CommandBase) -> list[Event]:
        new = decide(self.state, command)  # type: ignore[arg-type]
        for event in new:
            self.state = evolve(self.state, event)
        self.events.extend(new)
        return new

    def do(self, command_type: type[cmd.CommandBase], actor: str, **fields: Any) -> list[Event]:
        """Run a command at a moment one hour after the previous one."""
        return self.run(command_type(actor=actor, at=self.later(hours=1), **fields))

    def refused(
        self, command_type: type[cmd.CommandBase], actor: str, code: str, **fields: Any
    ) -> DomainError:
        before = self.state
        with pytest.raises(DomainError) as caught:
            self.do(command_type, actor, **fields)
        assert caught.value.code == code, caught.value.message
        assert self.state == before
        return caught.value

    @property
    def submitted_hash(self) -> str:
        assert self.state.submission is not None
        return self.state.submission.content_hash


def drafted(content_: PlanContent | None = None) -> Harness:
    h = Harness()
    h.run(open_plan())
    h.do(cmd.ReviseStrategy, AUTHOR, content=content_ or content(), reason="first draft")
    return h


def submitted() -> Harness:
    h = drafted()
    h.do(cmd.SubmitForApproval, AUTHOR)
    return h


def approve_all_gates(h: Harness) -> None:
    for approver in (COUNTRY, REGION[0], REGION[1], *GLOBAL):
        h.do(cmd.ApprovePlan, approver, content_hash=h.submitted_hash)


def signed_off() -> Harness:
    h = submitted()
    approve_all_gates(h)
    return h


def in_execution_planning() -> Harness:
    h = signed_off()
    h.do(cmd.StartExecutionPlanning, AUTHOR, sales_lead=SALES_LEAD, marketing_lead=MARKETING_LEAD)
    return h


def executing() -> Harness:
    h = in_execution_planning()
    h.do(cmd.DefineCsf, SALES_LEAD, csf=csf("S1", Team.SALES, "anna"))
    h.do(cmd.DefineCsf, MARKETING_LEAD, csf=csf("M1", Team.MARKETING, "mark"))
    h.do(cmd.ConfirmAlignment, SALES_LEAD, team=Team.SALES)
    h.do(cmd.ConfirmAlignment, MARKETING_LEAD, team=Team.MARKETING)
    h.do(cmd.StartExecution, AUTHOR)
    h.at(datetime(2027, 1, 1, tzinfo=UTC))
    return h
