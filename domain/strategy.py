"""A plan's content (one revision): the five strategy choices, components, goals, forecast and business plan.

Also the one-page rule, the content hash an approval is bound to, and the structured diff between revisions.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from enum import StrEnum

from pydantic import Field

from domain.base import Amount, DomainModel, Month
from domain.canonical import canonical_json
from domain.errors import DomainError, ErrorCode
from domain.money import Money, percent_change

# "About 500 words" is one page; beyond that a choice has turned into a classical plan.
PAGE_WORD_LIMIT = 500

CHOICE_NAMES = ("winning_aspiration", "where_to_play", "how_to_win", "capabilities", "management_systems")


class StrategyChoices(DomainModel):
    """One integrated set of five choices, each answered in at most one page."""

    winning_aspiration: str = ""
    where_to_play: str = ""
    how_to_win: str = ""
    capabilities: str = ""
    management_systems: str = ""


class StrategyComponents(DomainModel):
    target_market: str = ""
    ideal_customer: str = ""
    value_proposition: str = ""
    sales_process: tuple[str, ...] = ()
    sales_channels: tuple[str, ...] = ()
    pricing_strategy: str = ""
    competitive_analysis: str = ""


class SmartGoal(DomainModel):
    """Specific, measurable (metric and unit), achievable and relevant (target), time-bound (deadline)."""

    goal_id: str = Field(min_length=1)
    description: str
    metric: str = Field(min_length=1)
    unit: str = Field(min_length=1)
    target: Amount
    deadline: date


class ForecastLine(DomainModel):
    month: Month
    amount: Money


class ProgramKind(StrEnum):
    PROGRAM = "program"
    TACTIC = "tactic"


class Program(DomainModel):
    program_id: str = Field(min_length=1)
    name: str
    kind: ProgramKind = ProgramKind.PROGRAM
    cost: Money
    expected_effect: str = ""


class BudgetLine(DomainModel):
    line_id: str = Field(min_length=1)
    category: str
    amount: Money


class PlanContent(DomainModel):
    choices: StrategyChoices = StrategyChoices()
    components: StrategyComponents = StrategyComponents()
    goals: tuple[SmartGoal, ...] = ()
    forecast: tuple[ForecastLine, ...] = ()
    programs: tuple[Program, ...] = ()
    budget: tuple[BudgetLine, ...] = ()

    def goal(self, goal_id: str) -> SmartGoal | None:
        return next((g for g in self.goals if g.goal_id == goal_id), None)

    def forecast_by_month(self) -> dict[str, Decimal]:
        return {line.month: line.amount.amount for line in self.forecast}

    def forecast_total(self) -> Decimal:
        return sum((line.amount.amount for line in self.forecast), Decimal(0))

    def budget_total(self) -> Decimal:
        return sum((line.amount.amount for line in self.budget), Decimal(0))

    def program_cost_total(self) -> Decimal:
        return sum((p.cost.amount for p in self.programs), Decimal(0))


def word_count(text: str) -> int:
    return len(text.split())


def check_page_limit(choices: StrategyChoices) -> None:
    for name in CHOICE_NAMES:
        words = word_count(getattr(choices, name))
        if words > PAGE_WORD_LIMIT:
            raise DomainError(
                ErrorCode.PAGE_LIMIT_EXCEEDED,
                f"the choice '{name}' has {words} words; each strategy choice is answered in at most one "
                f"page ({PAGE_WORD_LIMIT} words). Cut it to the choice itself and move the detail into "
                "programs, goals or the business plan",
            )


def _duplicates(ids: Iterable[str]) -> list[str]:
    return sorted(key for key, count in Counter(ids).items() if count > 1)


def check_content(content: PlanContent, currency: str, months: tuple[str, ...]) -> None:
    """Refuse content the rules cannot work with; completeness is only required at submission."""
    check_page_limit(content.choices)
    for label, ids in (
        ("goal", [g.goal_id for g in content.goals]),
        ("program", [p.program_id for p in content.programs]),
        ("budget line", [b.line_id for b in content.budget]),
        ("forecast month", [f.month for f in content.forecast]),
    ):
        dupes = _duplicates(ids)
        if dupes:
            raise DomainError(
                ErrorCode.INVALID_CONTENT,
                f"{label} ids must be unique, {', '.join(dupes)} appear more than once; give each its own id",
            )
    outside = [f.month for f in content.forecast if f.month not in months]
    if outside:
        raise DomainError(
            ErrorCode.INVALID_CONTENT,
            f"forecast months {', '.join(outside)} are outside the execution period "
            f"{months[0]}..{months[-1]}; forecast only the months of the period",
        )
    amounts = [f.amount for f in content.forecast] + [p.cost for p in content.programs]
    amounts += [b.amount for b in content.budget]
    foreign = sorted({m.currency for m in amounts if m.currency != currency})
    if foreign:
        raise DomainError(
            ErrorCode.CURRENCY_MISMATCH,
            f"the plan is kept in {currency} but the content uses {', '.join(foreign)}; "
            f"convert those amounts to {currency}",
        )


def missing_for_submission(content: PlanContent, months: tuple[str, ...]) -> list[str]:
    missing = [f"choices.{name}" for name in CHOICE_NAMES if not getattr(content.choices, name).strip()]
    if not content.goals:
        missing.append("goals (at least one SMART goal)")
    forecast_months = {f.month for f in content.forecast}
    gaps = [m for m in months if m not in forecast_months]
    if gaps:
        missing.append(f"forecast for {', '.join(gaps)}")
    return missing


def content_hash(content: PlanContent) -> str:
    """SHA-256 over the canonical JSON of the content: what an approver saw, byte for byte."""
    return hashlib.sha256(canonical_json(content)).hexdigest()


class ValueChange(DomainModel):
    key: str
    old: Decimal | None
    new: Decimal | None
    change_pct: Decimal | None


class RevisionDiff(DomainModel):
    changed_fields: tuple[str, ...] = ()
    target_changes: tuple[ValueChange, ...] = ()
    forecast_changes: tuple[ValueChange, ...] = ()
    budget_changes: tuple[ValueChange, ...] = ()
    programs_added: tuple[str, ...] = ()
    programs_dropped: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.changed_fields


def _value_changes(old: dict[str, Decimal], new: dict[str, Decimal]) -> tuple[ValueChange, ...]:
    changes = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before != after:
            changes.append(
                ValueChange(key=key, old=before, new=after, change_pct=percent_change(before, after))
            )
    return tuple(changes)


def diff_content(old: PlanContent | None, new: PlanContent) -> RevisionDiff:
    """What changed from the previous revision; the first revision is diffed against an empty plan."""
    before = old if old is not None else PlanContent()
    changed: list[str] = []
    for section in ("choices", "components"):
        old_part, new_part = getattr(before, section), getattr(new, section)
        changed += [
            f"{section}.{name}"
            for name in type(new_part).model_fields
            if getattr(old_part, name) != getattr(new_part, name)
        ]
    changed += [
        name
        for name in ("goals", "forecast", "programs", "budget")
        if getattr(before, name) != getattr(new, name)
    ]
    old_programs = {p.program_id for p in before.programs}
    new_programs = {p.program_id for p in new.programs}
    return RevisionDiff(
        changed_fields=tuple(changed),
        target_changes=_value_changes(
            {g.goal_id: g.target for g in before.goals}, {g.goal_id: g.target for g in new.goals}
        ),
        forecast_changes=_value_changes(before.forecast_by_month(), new.forecast_by_month()),
        budget_changes=_value_changes(
            {b.line_id: b.amount.amount for b in before.budget},
            {b.line_id: b.amount.amount for b in new.budget},
        ),
        programs_added=tuple(sorted(new_programs - old_programs)),
        programs_dropped=tuple(sorted(old_programs - new_programs)),
    )


class RevisionSource(StrEnum):
    AUTHOR = "author"  # the author's own edit (also the answer to a counter-proposal)
    COUNTER_PROPOSAL = "counter_proposal"  # leadership's counter-proposal, accepted by the author
    REFINE = "refine"  # the first revision of the next iteration, from the refine step
