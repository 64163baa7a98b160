"""The company of `planloop demo`: Nordwind Group, a small multinational that sells charging infrastructure
for vehicle fleets, planning its fiscal year 2027.

Its org chart, its people (each gets an API token), its planning calendar, and the plans its units draft.
Pure data built from the domain's own types; ``planloop.demo`` sends it through the HTTP API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from domain import (
    BudgetLine,
    Csf,
    CycleCalendar,
    ForecastLine,
    GateDeadline,
    GateMode,
    Money,
    MonthTarget,
    OrgHierarchy,
    OrgLevel,
    OrgUnit,
    PlanContent,
    Program,
    SmartGoal,
    StrategyChoices,
    StrategyComponents,
    Team,
)
from domain.base import month_add, month_start
from planloop.api.auth import Role

COMPANY = "Nordwind Group"
FISCAL_YEAR = "FY2027"
CURRENCY = "EUR"
#: Where the compressed calendar stands when the cycle opens: the strategy window of FY2027.
CALENDAR_STARTS = datetime(2026, 11, 1, 8, tzinfo=UTC)

#: The business unit whose plan the story follows, the month it falls behind, and how far.
STORY_UNIT = "DE-EMOB"
OFF_TRACK_MONTH_INDEX = 4  # May 2027
OFF_TRACK_REVENUE = Decimal("0.72")
OFF_TRACK_CSF = "S3"


@dataclass(frozen=True)
class Person:
    principal: str
    title: str
    roles: tuple[Role, ...]
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unit:
    unit_id: str
    name: str
    author: str
    sales_lead: str
    marketing_lead: str
    scale: int  # the plan's size: monthly revenue in EUR per point of the seasonal profile


UNITS = (
    Unit(
        "EMEA",
        "Europe, Middle East and Africa",
        "emea-president",
        "emea-sales-lead",
        "emea-marketing-lead",
        900,
    ),
    Unit("DE", "Germany", "de-country-mgr", "de-sales-lead", "de-marketing-lead", 3000),
    Unit("FR", "France", "fr-country-mgr", "fr-sales-lead", "fr-marketing-lead", 2000),
    Unit(STORY_UNIT, "E-Mobility Germany", "emob-head", "emob-sales-lead", "emob-marketing-lead", 4000),
)
UNIT_BY_ID = {u.unit_id: u for u in UNITS}

#: Sales and marketing each agree on three CSFs:
#: (id, team, name, measure, unit, monthly target, owner suffix).
CSFS = (
    (
        "S1",
        Team.SALES,
        "Qualified fleet opportunities",
        "new qualified opportunities",
        "count",
        12,
        "key-accounts",
    ),
    ("S2", Team.SALES, "Proposals to fleet buyers", "proposals sent", "count", 8, "inside-sales"),
    ("S3", Team.SALES, "Pilot sites converted", "pilots converted to orders", "count", 2, "partners"),
    ("M1", Team.MARKETING, "Marketing-qualified leads", "leads accepted by sales", "count", 120, "campaigns"),
    ("M2", Team.MARKETING, "Fleet manager events", "events held", "count", 2, "events"),
    ("M3", Team.MARKETING, "Customer case studies", "case studies published", "count", 1, "content"),
)

# A seasonal business: slow winters, strong spring and autumn fleet renewals, a quiet August.
PROFILE = (70, 80, 100, 105, 110, 100, 95, 65, 105, 115, 120, 135)


def csf_owner(unit: Unit, suffix: str) -> str:
    return f"{unit.unit_id.lower()}-{suffix}"


def people() -> list[Person]:
    """Everyone in the story, with the roles and org-unit scopes of their API token."""
    found = [
        Person("planning-office", "the planning office (admin)", (Role.ADMIN,)),
        Person("ceo", "CEO, global leadership", (Role.LEADERSHIP,)),
        Person("cfo", "CFO, global leadership", (Role.LEADERSHIP,)),
        Person(
            "emea-president",
            "president EMEA, regional leadership",
            (Role.PLANNER, Role.APPROVER, Role.LEADERSHIP),
            ("EMEA",),
        ),
        Person("de-country-mgr", "country manager Germany", (Role.PLANNER, Role.APPROVER), ("DE",)),
        Person("fr-country-mgr", "country manager France", (Role.PLANNER, Role.APPROVER), ("FR",)),
        Person("emob-head", "head of E-Mobility Germany (business unit)", (Role.PLANNER,), (STORY_UNIT,)),
        Person("erp", "the ERP, posting monthly actuals", (Role.INTEGRATION,)),
        Person("auditor", "the auditor", (Role.AUDITOR,)),
    ]
    for unit in UNITS:
        for lead, team in ((unit.sales_lead, "sales"), (unit.marketing_lead, "marketing")):
            found.append(
                Person(lead, f"{team} lead, {unit.name}", (Role.PLANNER, Role.CSF_OWNER), (unit.unit_id,))
            )
    story = UNIT_BY_ID[STORY_UNIT]
    for _, team, name, *_rest, suffix in CSFS:
        found.append(
            Person(
                csf_owner(story, suffix),
                f"{team.value} CSF owner ({name}), {story.name}",
                (Role.CSF_OWNER,),
                (STORY_UNIT,),
            )
        )
    return found


def hierarchy() -> OrgHierarchy:
    return OrgHierarchy(
        units=(
            OrgUnit(
                unit_id="HQ",
                name=COMPANY,
                level=OrgLevel.GLOBAL,
                approvers=("ceo", "cfo"),
                approval_mode=GateMode.ALL,
                fallback_approver="board-chair",
            ),
            OrgUnit(
                unit_id="EMEA",
                name=UNIT_BY_ID["EMEA"].name,
                level=OrgLevel.REGION,
                parent_id="HQ",
                head="emea-president",
                approvers=("emea-president",),
                fallback_approver="emea-cfo",
            ),
            OrgUnit(
                unit_id="DE",
                name="Germany",
                level=OrgLevel.COUNTRY,
                parent_id="EMEA",
                head="de-country-mgr",
                approvers=("de-country-mgr",),
                fallback_approver="de-deputy",
            ),
            OrgUnit(
                unit_id="FR",
                name="France",
                level=OrgLevel.COUNTRY,
                parent_id="EMEA",
                head="fr-country-mgr",
                approvers=("fr-country-mgr",),
                fallback_approver="fr-deputy",
            ),
            OrgUnit(
                unit_id=STORY_UNIT,
                name=UNIT_BY_ID[STORY_UNIT].name,
                level=OrgLevel.BUSINESS_UNIT,
                parent_id="DE",
                head="emob-head",
            ),
        )
    )


def calendar(cycle_id: str) -> CycleCalendar:
    """FY2027: the strategy window opens in November, the gates decide in December (each with weeks to
    spare, so a busy machine still meets them), twelve months of execution, actuals due on the 25th."""

    def day(month: int, dom: int) -> datetime:
        return datetime(2026, month, dom, tzinfo=UTC)

    return CycleCalendar(
        cycle_id=cycle_id,
        execution_start="2027-01",
        execution_months=12,
        monthly_close_day=25,
        gate_deadlines=(
            GateDeadline(level=OrgLevel.COUNTRY, at=day(12, 4)),
            GateDeadline(level=OrgLevel.REGION, at=day(12, 11)),
            GateDeadline(level=OrgLevel.GLOBAL, at=day(12, 18)),
        ),
        strategy_window_opens=CALENDAR_STARTS,
        approval_deadline=day(12, 22),
    )


def eur(amount: int | Decimal) -> Money:
    return Money(amount=Decimal(amount), currency=CURRENCY)


def content(
    unit: Unit, months: tuple[str, ...], growth: Decimal = Decimal(1), how_to_win: str = ""
) -> PlanContent:
    """The unit's plan for ``months``: five choices, components, goals, forecast, programs, budget."""
    year_end = (month_start(month_add(months[-1], 1)) - timedelta(days=1)).date()
    forecast = tuple(
        ForecastLine(month=m, amount=eur(int(p * unit.scale * growth)))
        for m, p in zip(months, PROFILE, strict=True)
    )
    revenue = sum((line.amount.amount for line in forecast), Decimal(0))
    return PlanContent(
        choices=StrategyChoices(
            winning_aspiration=f"The charging partner fleet operators in {unit.name} trust first.",
            where_to_play="Company fleets of 50 to 2,000 vehicles: logistics, utilities, field service.",
            how_to_win=how_to_win
            or "Turnkey depot charging: survey, grid connection, hardware and service in one contract.",
            capabilities="Grid-connection engineering, installer network, 24/7 service desk.",
            management_systems="Weekly pipeline review, monthly pilot-to-order review, quarterly win-loss.",
        ),
        components=StrategyComponents(
            target_market="Fleets electrifying their depots within two years",
            ideal_customer="Fleet manager with a signed electrification budget and a depot of their own",
            value_proposition="Depot charging live in twelve weeks, at a fixed price per charge point",
            sales_process=("qualify", "site survey", "pilot", "proposal", "order"),
            sales_channels=("key accounts", "installer partners"),
            pricing_strategy="Fixed price per charge point plus a service subscription",
            competitive_analysis="Utilities sell energy; hardware makers leave installing to others",
        ),
        goals=(
            SmartGoal(
                goal_id="G-REV",
                description=f"Revenue of {unit.name}",
                metric="revenue",
                unit=CURRENCY,
                target=revenue,
                deadline=year_end,
            ),
            SmartGoal(
                goal_id="G-FLEETS",
                description="New fleet customers",
                metric="new_customers",
                unit="customers",
                target=Decimal(max(6, unit.scale // 150)),
                deadline=year_end,
            ),
        ),
        forecast=forecast,
        programs=(
            Program(program_id="P-PILOT", name="Depot pilot program", cost=eur(unit.scale * 30)),
            Program(program_id="P-FAIR", name="eMove fleet fair", cost=eur(unit.scale * 15)),
            Program(program_id="P-WEBINAR", name="Fleet manager webinars", cost=eur(unit.scale * 5)),
        ),
        budget=(
            BudgetLine(line_id="B-TRAVEL", category="travel", amount=eur(unit.scale * 20)),
            BudgetLine(line_id="B-MARKETING", category="marketing", amount=eur(unit.scale * 45)),
            BudgetLine(line_id="B-HEADCOUNT", category="headcount", amount=eur(unit.scale * 160)),
        ),
    )


def csfs(unit: Unit, months: tuple[str, ...]) -> list[Csf]:
    """The three sales and three marketing CSFs of a unit's plan, each with an owner and monthly targets."""
    return [
        Csf(
            csf_id=csf_id,
            team=team,
            name=name,
            measure=measure,
            unit=measure_unit,
            monthly_targets=tuple(MonthTarget(month=m, target=Decimal(target)) for m in months),
            owner=csf_owner(unit, suffix),
        )
        for csf_id, team, name, measure, measure_unit, target, suffix in CSFS
    ]


def actual_factor(unit_id: str, month_index: int, measure: str) -> Decimal:
    """How the month went, as a share of its target: steady, but for the story unit's bad May (two fleet
    orders slip: revenue at 72% and no pilot converted) and its June, when the orders land."""
    if unit_id == STORY_UNIT and month_index == OFF_TRACK_MONTH_INDEX:
        return {"revenue": OFF_TRACK_REVENUE, OFF_TRACK_CSF: Decimal(0)}.get(measure, Decimal("0.97"))
    if unit_id == STORY_UNIT and month_index == OFF_TRACK_MONTH_INDEX + 1 and measure == "revenue":
        return Decimal("1.25")
    # Most months land near plan, some at risk (below 95% of target), none off track.
    return (Decimal("1.04"), Decimal("0.98"), Decimal("0.93"))[(month_index + len(measure)) % 3]


def review_due(months: tuple[str, ...]) -> date:
    """Improvement actions of a review are due by the end of the period."""
    return (month_start(month_add(months[-1], 1)) - timedelta(days=1)).date()
