"""A whole fiscal year of a small organisation, as reusable steps: the commands a planning office, its plan
authors, approvers and other systems send, and the time that passes between them.

The organisation: global (HQ), two regions (EU, AMERICAS), four countries (DE, FR, US, BR). Every unit below
global has a plan. The year, step by step (each a method of `YearScenario`):

1. `open_cycle`: the CRM opens the cycle; the cycle starts the six plans.
2. `draft_and_submit`: every author drafts a plan and submits it.
3. `review_with_pushback`: the gates decide. DE is pushed back twice before sign-off: regional leadership
   asks for stretched revenue and lower expenses (the author accepts the counter-proposal), then global
   leadership asks for less travel (the author answers with a revision of their own). US waits at its
   regional gate.
4. `escalate_missed_gate`: the AMERICAS gate misses its deadline for US; it escalates to the fallback
   approver, who approves.
5. `plan_execution`: CSFs per team, both leads align, execution starts.
6. `execute_year`: twelve months of actuals; BR misses March's revenue (ActualsOverdue at the close, the
   figure arrives late); the workflow's clock issues each monthly report at the close; quarterly reviews
   each quarter; the last close moves the plans to learning.
7. `learn_and_refine`: scoring, a lesson, and the refine into the next iteration.

Built for the time-skipping test server: the calendar is laid out from the server's current time and time
moves only through `env.sleep`. A colleague records the workflow histories of a run as replay fixtures, so
keep the commands deterministic (no randomness besides the cycle id chosen by the caller).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from domain import (
    BudgetCut,
    CounterProposal,
    Csf,
    CycleCalendar,
    ForecastLine,
    GateDeadline,
    GateMode,
    ImprovementAction,
    LessonLink,
    MonthTarget,
    OrgHierarchy,
    OrgLevel,
    OrgUnit,
    PlanContent,
    PlanState,
    TargetChange,
    Team,
)
from domain import commands as cmd
from domain.base import month_add, month_start
from domain.cycle import OpenCycle
from tests.domain import factory
from workflows import CycleWorkflow, PlanWorkflow, cycle_workflow_id, plan_id
from workflows.contracts import (
    CommandResult,
    CycleProgress,
    CycleStart,
    PlanCommand,
)

PLANNING_OFFICE = "system:crm"
REGIONS = {"EU": ("DE", "FR"), "AMERICAS": ("US", "BR")}
UNITS = ("EU", "AMERICAS", "DE", "FR", "US", "BR")  # every unit with a plan, in the cycle's order
# Plan size per unit: the factory's seasonal profile times this (regions plan their key accounts).
SCALE = {"EU": 100, "AMERICAS": 120, "DE": 1000, "FR": 600, "US": 1500, "BR": 400}
AUTHORS = {
    "EU": "eu-president",
    "AMERICAS": "am-head",
    "DE": "de-mgr",
    "FR": "fr-mgr",
    "US": "us-mgr",
    "BR": "br-mgr",
}
EU_GATE = ("eu-cfo", "eu-coo", "eu-cso")  # a quorum of two
AMERICAS_GATE = ("am-cfo",)
AMERICAS_FALLBACK = "am-president"
GLOBAL_GATE = ("ceo", "cfo")  # all of them
PUSHED_BACK = "DE"  # pushed back twice before sign-off
ESCALATED = "US"  # its regional gate misses the deadline
LATE_ACTUALS = ("BR", 2)  # BR's revenue of the period's third month misses the close


def hierarchy() -> OrgHierarchy:
    def country(unit_id: str, region: str) -> OrgUnit:
        return OrgUnit(
            unit_id=unit_id,
            name=unit_id,
            level=OrgLevel.COUNTRY,
            parent_id=region,
            head=AUTHORS[unit_id],
        )

    return OrgHierarchy(
        units=(
            OrgUnit(
                unit_id="HQ",
                name="Global",
                level=OrgLevel.GLOBAL,
                approvers=GLOBAL_GATE,
                approval_mode=GateMode.ALL,
                fallback_approver="board-chair",
            ),
            OrgUnit(
                unit_id="EU",
                name="Europe",
                level=OrgLevel.REGION,
                parent_id="HQ",
                head=AUTHORS["EU"],
                approvers=EU_GATE,
                approval_mode=GateMode.QUORUM,
                quorum=2,
                fallback_approver="eu-deputy",
            ),
            OrgUnit(
                unit_id="AMERICAS",
                name="Americas",
                level=OrgLevel.REGION,
                parent_id="HQ",
                head=AUTHORS["AMERICAS"],
                approvers=AMERICAS_GATE,
                fallback_approver=AMERICAS_FALLBACK,
            ),
            country("DE", "EU"),
            country("FR", "EU"),
            country("US", "AMERICAS"),
            country("BR", "AMERICAS"),
        )
    )


def calendar(cycle_id: str, now: datetime) -> CycleCalendar:
    """A cycle laid out from `now`: regional gates decide within ten days, global within twenty, execution
    starts at the beginning of the month after next and runs twelve months."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return CycleCalendar(
        cycle_id=cycle_id,
        execution_start=month_add(f"{now.year:04d}-{now.month:02d}", 2),
        execution_months=12,
        monthly_close_day=5,
        gate_deadlines=(
            GateDeadline(level=OrgLevel.REGION, at=day + timedelta(days=10)),
            GateDeadline(level=OrgLevel.GLOBAL, at=day + timedelta(days=20)),
        ),
        strategy_window_opens=day,
        approval_deadline=day + timedelta(days=25),
    )


def content(unit_id: str, months: tuple[str, ...], scale: int | None = None) -> PlanContent:
    """The factory's plan, re-planned for the unit's size and the cycle's months."""
    scale = scale if scale is not None else SCALE[unit_id]
    base = factory.content(scale=scale)
    deadline = (month_start(month_add(months[-1], 1)) - timedelta(days=1)).date()
    return base.model_copy(
        update={
            "forecast": tuple(
                ForecastLine(month=m, amount=factory.eur(p * scale))
                for m, p in zip(months, factory.PROFILE, strict=True)
            ),
            "goals": tuple(g.model_copy(update={"deadline": deadline}) for g in base.goals),
        }
    )


def csf(csf_id: str, team: Team, owner: str, months: tuple[str, ...], target: int = 10) -> Csf:
    return Csf(
        csf_id=csf_id,
        team=team,
        name=f"CSF {csf_id}",
        measure=f"{csf_id} per month",
        unit="count",
        monthly_targets=tuple(MonthTarget(month=m, target=Decimal(target)) for m in months),
        owner=owner,
    )


def sales_lead(unit_id: str) -> str:
    return f"{unit_id.lower()}-sales-lead"


def marketing_lead(unit_id: str) -> str:
    return f"{unit_id.lower()}-marketing-lead"


@dataclass
class YearScenario:
    """Drives one cycle's year on a time-skipping test server. Steps run in the order of the module's doc."""

    env: WorkflowEnvironment
    task_queue: str
    cycle_id: str
    batch_size: int = 100
    opened_at: datetime | None = None
    first_run_ids: dict[str, str] = field(default_factory=dict)

    # -- plumbing ----------------------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        return self.env.client

    @property
    def calendar(self) -> CycleCalendar:
        assert self.opened_at is not None, "open the cycle first"
        return calendar(self.cycle_id, self.opened_at)

    @property
    def months(self) -> tuple[str, ...]:
        return self.calendar.months()

    def cycle(self) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(cycle_workflow_id(self.cycle_id))

    def plan(self, unit_id: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(plan_id(self.cycle_id, unit_id))

    async def send(
        self, unit_id: str, command: cmd.CommandBase, request_id: str | None = None
    ) -> CommandResult:
        return await self.plan(unit_id).execute_update(
            command.type,  # type: ignore[attr-defined]
            PlanCommand(command=command, request_id=request_id),  # type: ignore[arg-type]
            result_type=CommandResult,
        )

    async def state(self, unit_id: str) -> PlanState:
        return await self.plan(unit_id).query(PlanWorkflow.state, result_type=PlanState)

    async def progress(self) -> CycleProgress:
        return await self.cycle().query(CycleWorkflow.progress, result_type=CycleProgress)

    async def now(self) -> datetime:
        return (await self.env.get_current_time()).astimezone(UTC)

    async def until(self, moment: datetime) -> None:
        """Let the server's time pass until `moment`: the plans' durable timers fire on the way."""
        left = moment - await self.now()
        if left > timedelta(0):
            await self.env.sleep(left)

    async def settled(self, check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20.0) -> None:
        """Wait (in real time) until the workflows have caught up with what just happened."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not await check():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.05)

    async def hash_of(self, unit_id: str) -> str:
        state = await self.state(unit_id)
        assert state.submission is not None
        return state.submission.content_hash

    async def approve(self, unit_id: str, *approvers: str) -> CommandResult:
        content_hash = await self.hash_of(unit_id)
        result = None
        for approver in approvers:
            result = await self.send(
                unit_id, cmd.ApprovePlan(actor=approver, at=await self.now(), content_hash=content_hash)
            )
        assert result is not None
        return result

    # -- 1. open -----------------------------------------------------------------------------------------

    def open_command(self) -> OpenCycle:
        return OpenCycle(
            actor=PLANNING_OFFICE, at=self.opened_at, calendar=self.calendar, hierarchy=hierarchy()
        )

    async def open_cycle(self) -> WorkflowHandle[Any, Any]:
        self.opened_at = await self.now()
        handle = await self.client.start_workflow(
            CycleWorkflow.run,
            CycleStart(open=self.open_command(), batch_size=self.batch_size),
            id=cycle_workflow_id(self.cycle_id),
            task_queue=self.task_queue,
        )

        async def all_started() -> bool:
            return (await self.progress()).started == len(UNITS)

        await self.settled(all_started, "the cycle to start its plans")
        for unit in UNITS:
            self.first_run_ids[unit] = (await self.plan(unit).describe()).run_id or ""
        return handle

    # -- 2. draft and submit -----------------------------------------------------------------------------

    async def draft_and_submit(self) -> None:
        async def one(unit: str) -> None:
            at = await self.now()
            await self.send(
                unit,
                cmd.ReviseStrategy(
                    actor=AUTHORS[unit], at=at, content=content(unit, self.months), reason="first draft"
                ),
            )
            await self.send(unit, cmd.SubmitForApproval(actor=AUTHORS[unit], at=at, revision=1))

        await asyncio.gather(*(one(u) for u in UNITS))

    # -- 3. review, with DE pushed back twice ------------------------------------------------------------

    async def review_with_pushback(self) -> None:
        at = await self.now()
        de = AUTHORS[PUSHED_BACK]
        # Regional leadership: stretched revenue, lower expenses, one program fewer. The author accepts.
        stretch = CounterProposal(
            target_changes=(TargetChange(goal_id="G-REV", percent=Decimal(10)),),
            forecast_change_pct=Decimal(10),
            budget_cuts=(BudgetCut(line_id="B-MARKETING", percent=Decimal(20)),),
            programs_to_drop=("P-WEBINAR",),
            comment="Stretch revenue by 10%, spend 20% less on marketing, drop the webinars.",
        )
        await self.send(
            PUSHED_BACK,
            cmd.RequestChanges(
                actor=EU_GATE[0],
                at=at,
                content_hash=await self.hash_of(PUSHED_BACK),
                comment="Too cautious for our strongest market",
                counter_proposal=stretch,
            ),
        )
        await self.send(PUSHED_BACK, cmd.AcceptCounterProposal(actor=de, at=at))
        await self.send(PUSHED_BACK, cmd.SubmitForApproval(actor=de, at=at, revision=2))
        await self.approve(PUSHED_BACK, EU_GATE[0], EU_GATE[1])
        # Global leadership: less travel. The author answers with a revision of their own.
        await self.approve(PUSHED_BACK, GLOBAL_GATE[0])
        await self.send(
            PUSHED_BACK,
            cmd.RequestChanges(
                actor=GLOBAL_GATE[1],
                at=at,
                content_hash=await self.hash_of(PUSHED_BACK),
                comment="Travel is high",
                counter_proposal=CounterProposal(
                    budget_cuts=(BudgetCut(line_id="B-TRAVEL", amount=factory.eur(20000)),),
                    comment="Travel -20k",
                ),
            ),
        )
        stretched = (await self.state(PUSHED_BACK)).revisions[-1].content
        answer = stretched.model_copy(
            update={
                "budget": tuple(
                    b.model_copy(update={"amount": factory.eur(50000)}) if b.line_id == "B-TRAVEL" else b
                    for b in stretched.budget
                )
            }
        )
        await self.send(
            PUSHED_BACK,
            cmd.ReviseStrategy(
                actor=de, at=at, content=answer, reason="Travel -10k: customer visits are how we win"
            ),
        )
        await self.send(PUSHED_BACK, cmd.SubmitForApproval(actor=de, at=at, revision=3))
        await self.approve(PUSHED_BACK, EU_GATE[0], EU_GATE[2], *GLOBAL_GATE)
        # The others pass their gates at once; US waits at the AMERICAS gate.
        await self.approve("FR", EU_GATE[1], EU_GATE[2], *GLOBAL_GATE)
        await self.approve("BR", *AMERICAS_GATE, *GLOBAL_GATE)
        await self.approve("EU", *GLOBAL_GATE)
        await self.approve("AMERICAS", *GLOBAL_GATE)

    # -- 4. a missed gate deadline -----------------------------------------------------------------------

    async def escalate_missed_gate(self) -> None:
        us = await self.state(ESCALATED)
        assert us.gate is not None
        await self.until(us.gate.due_at + timedelta(hours=1))

        async def escalated() -> bool:
            gate = (await self.state(ESCALATED)).gate
            return gate is not None and gate.escalated

        await self.settled(escalated, "the AMERICAS gate to escalate")
        await self.approve(ESCALATED, AMERICAS_FALLBACK, *GLOBAL_GATE)

    # -- 5. execution planning ---------------------------------------------------------------------------

    async def plan_execution(self) -> None:
        months = self.months

        async def one(unit: str) -> None:
            at = await self.now()
            sales, marketing = sales_lead(unit), marketing_lead(unit)
            await self.send(
                unit,
                cmd.StartExecutionPlanning(
                    actor=AUTHORS[unit], at=at, sales_lead=sales, marketing_lead=marketing
                ),
            )
            csfs = [
                csf("S1", Team.SALES, f"{unit.lower()}-ae", months),
                csf("M1", Team.MARKETING, f"{unit.lower()}-mops", months),
            ]
            if unit == PUSHED_BACK:
                csfs.append(csf("S2", Team.SALES, "de-partner-mgr", months, target=4))
            for c in csfs:
                await self.send(
                    unit, cmd.DefineCsf(actor=sales if c.team is Team.SALES else marketing, at=at, csf=c)
                )
            await self.send(unit, cmd.ConfirmAlignment(actor=sales, at=at, team=Team.SALES))
            await self.send(unit, cmd.ConfirmAlignment(actor=marketing, at=at, team=Team.MARKETING))
            await self.send(unit, cmd.StartExecution(actor=AUTHORS[unit], at=at))

        await asyncio.gather(*(one(u) for u in UNITS))

    # -- 6. the year -------------------------------------------------------------------------------------

    async def record_actuals(self, unit: str, month: str, skip_revenue: bool = False) -> None:
        state = await self.state(unit)
        assert state.strategy is not None
        at = await self.now()
        forecast = state.strategy.forecast_by_month()[month]
        if not skip_revenue:
            await self.send(
                unit,
                cmd.RecordActual(
                    actor="system:erp",
                    at=at,
                    measure="revenue",
                    month=month,
                    value=forecast * Decimal("1.02"),
                    currency="EUR",
                    source="erp:sap",
                ),
            )
        for c in state.csfs:
            target = c.target_for(month)
            assert target is not None
            await self.send(
                unit,
                cmd.RecordActual(
                    actor="system:crm", at=at, measure=c.csf_id, month=month, value=target, source="crm"
                ),
            )

    async def execute_year(self) -> None:
        calendar = self.calendar
        late_unit, late_index = LATE_ACTUALS
        for index, month in enumerate(self.months):
            # Actuals arrive in the first days of the following month, before the close.
            await self.until(month_start(month_add(month, 1)) + timedelta(days=1))
            late = index == late_index
            await asyncio.gather(
                *(self.record_actuals(u, month, skip_revenue=late and u == late_unit) for u in UNITS)
            )
            await self.until(calendar.close_at(month) + timedelta(hours=1))

            async def reported(month: str = month) -> bool:
                states = await asyncio.gather(*(self.state(u) for u in UNITS))
                return all(any(r.month == month for r in s.reports) for s in states)

            await self.settled(reported, f"the monthly reports of {month}")
            if late:
                # The missing figure arrives after the close (already flagged overdue).
                state = await self.state(late_unit)
                assert state.strategy is not None
                await self.send(
                    late_unit,
                    cmd.RecordActual(
                        actor="br-controller",
                        at=await self.now(),
                        measure="revenue",
                        month=month,
                        value=state.strategy.forecast_by_month()[month],
                        currency="EUR",
                        source="manual",
                    ),
                )
            if month in calendar.quarter_ends():
                quarter = calendar.quarter_ends().index(month) + 1
                await asyncio.gather(*(self.hold_review(u, quarter) for u in UNITS))

    async def hold_review(self, unit: str, quarter: int) -> CommandResult:
        return await self.send(
            unit,
            cmd.HoldQuarterlyReview(
                actor=AUTHORS[unit],
                at=await self.now(),
                quarter=quarter,
                attendees=(AUTHORS[unit], sales_lead(unit), marketing_lead(unit)),
                decisions=("Keep the partner program",),
                improvement_actions=(
                    ImprovementAction(
                        description="Win-loss review of the quarter",
                        owner=sales_lead(unit),
                        due=date.fromisoformat(f"{month_add(self.months[-1], 1)}-28"),
                    ),
                ),
            ),
        )

    # -- 7. learn and refine -----------------------------------------------------------------------------

    async def learn_and_refine(self) -> None:
        next_months = self.calendar.shifted().months()

        async def one(unit: str) -> None:
            at = await self.now()
            reviewer = (
                "ceo" if unit in REGIONS else AUTHORS[next(r for r, cs in REGIONS.items() if unit in cs)]
            )
            await self.send(
                unit,
                cmd.ScorePlan(
                    actor=reviewer, at=at, plan_quality=7, execution_effectiveness=8, rationale="on plan"
                ),
            )
            await self.send(
                unit,
                cmd.RecordLesson(actor=AUTHORS[unit], at=at, text="Large orders slip; win them earlier."),
            )
            state = await self.state(unit)
            last = state.revisions[-1].content
            refined = content(unit, next_months, scale=SCALE[unit] * 11 // 10).model_copy(
                update={"choices": last.choices, "components": last.components, "programs": last.programs}
            )
            links: tuple[LessonLink, ...] = ()
            if unit == PUSHED_BACK:
                refined = refined.model_copy(
                    update={
                        "choices": last.choices.model_copy(
                            update={
                                "how_to_win": last.choices.how_to_win + " Close large orders by mid-quarter."
                            }
                        )
                    }
                )
                links = (
                    LessonLink(changed_field="choices.how_to_win", lesson_id=state.lessons[0].lesson_id),
                )
            await self.send(
                unit,
                cmd.RefineStrategy(
                    actor=AUTHORS[unit],
                    at=at,
                    content=refined,
                    reason="the next iteration",
                    lesson_links=links,
                ),
            )

        await asyncio.gather(*(one(u) for u in UNITS))

    # -- all of it ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        await self.open_cycle()
        await self.draft_and_submit()
        await self.review_with_pushback()
        await self.escalate_missed_gate()
        await self.plan_execution()
        await self.execute_year()
        await self.learn_and_refine()


def goal_target(unit_id: str) -> Decimal:
    return Decimal(sum(factory.PROFILE) * SCALE[unit_id])
