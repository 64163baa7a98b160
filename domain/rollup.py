"""Consolidation up the hierarchy: each unit's figures plus everything below it, summed per currency.

A cycle with thousands of plans cannot hold thousands of full plan states, so consolidation works on
`PlanFigures`: the few key numbers of one plan (phase, revision, totals of the strategy in force), computed
from a `PlanState` by `plan_figures`. A plan's workflow sends them to its cycle when they change; the cycle
rolls them up with `consolidate_figures` when leadership asks for a region's or the company's numbers.

No exchange rates are guessed: totals stay per currency, so a region with EUR and GBP plans shows both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from domain.base import DomainModel
from domain.org import OrgHierarchy
from domain.state import TERMINAL_PHASES, Phase, PlanState


class TargetTotal(DomainModel):
    metric: str
    unit: str
    total: Decimal


class PlanFigures(DomainModel):
    """One plan's key figures, small enough for a cycle to hold thousands of them.

    The money totals are those of the strategy in force (the signed-off revision once there is one, else the
    latest draft) in the plan's currency; None while nothing is drafted. `version` is the number of plan
    events the figures reflect, so a receiver keeps the newest figures whatever order they arrive in.
    """

    unit_id: str
    version: int = 0
    phase: Phase | None = None
    iteration: int = 0
    currency: str = ""
    revision: int | None = None  # the latest revision
    signed_off_revision: int | None = None
    forecast: Decimal | None = None
    budget: Decimal | None = None
    program_cost: Decimal | None = None
    targets: tuple[TargetTotal, ...] = ()
    escalated: bool = False  # the current gate's deadline passed and went to the fallback approver
    overdue_months: int = 0  # months whose actuals were missing at the monthly close
    revenue_actual_to_date: Decimal | None = None  # from the latest monthly report
    year_end_extrapolation: Decimal | None = None

    @property
    def has_content(self) -> bool:
        return self.forecast is not None

    @property
    def is_open(self) -> bool:
        return self.phase not in TERMINAL_PHASES


def plan_figures(state: PlanState) -> PlanFigures:
    """The key figures of a plan, as its cycle consolidates them."""
    content = state.strategy
    latest = state.latest_revision
    report = state.reports[-1] if state.reports else None
    targets: dict[tuple[str, str], Decimal] = {}
    for goal in content.goals if content is not None else ():
        targets[(goal.metric, goal.unit)] = targets.get((goal.metric, goal.unit), Decimal(0)) + goal.target
    return PlanFigures(
        unit_id=state.unit_id,
        version=state.version,
        phase=state.phase,
        iteration=state.iteration,
        currency=state.currency,
        revision=None if latest is None else latest.number,
        signed_off_revision=state.signed_off_revision,
        forecast=None if content is None else _total(line.amount.amount for line in content.forecast),
        budget=None if content is None else _total(line.amount.amount for line in content.budget),
        program_cost=None if content is None else _total(p.cost.amount for p in content.programs),
        targets=_target_totals(targets),
        escalated=state.phase is Phase.IN_REVIEW and state.gate is not None and state.gate.escalated,
        overdue_months=len(state.overdue_months),
        revenue_actual_to_date=None if report is None else report.revenue_actual_to_date,
        year_end_extrapolation=None if report is None else report.year_end_extrapolation,
    )


class Consolidated(DomainModel):
    unit_id: str
    plans: tuple[str, ...]  # the units whose plans have figures to add (something drafted)
    forecast: dict[str, Decimal]  # currency -> total
    budget: dict[str, Decimal]
    program_cost: dict[str, Decimal]
    targets: tuple[TargetTotal, ...]
    # Where the unit's plans stand: every plan of the subtree the cycle has heard of, drafted or not.
    phases: dict[str, int] = {}
    signed_off: int = 0
    escalated: int = 0
    overdue: int = 0
    revenue_actual_to_date: dict[str, Decimal] = {}
    year_end_extrapolation: dict[str, Decimal] = {}


def consolidate_figures(
    unit_id: str, hierarchy: OrgHierarchy, figures: Mapping[str, PlanFigures]
) -> Consolidated:
    """The unit's own plan plus every plan below it."""
    covered = _subtree(unit_id, hierarchy)
    return _consolidated(
        unit_id,
        [
            (u.unit_id, figures[u.unit_id])
            for u in hierarchy.units
            if u.unit_id in covered and u.unit_id in figures
        ],
    )


def consolidate(unit_id: str, hierarchy: OrgHierarchy, plans: Mapping[str, PlanState]) -> Consolidated:
    return consolidate_figures(unit_id, hierarchy, {u: plan_figures(s) for u, s in plans.items()})


def rollup(hierarchy: OrgHierarchy, plans: Mapping[str, PlanState]) -> dict[str, Consolidated]:
    """Consolidated figures for every unit of the hierarchy, global included."""
    return rollup_figures(hierarchy, {u: plan_figures(s) for u, s in plans.items()})


def rollup_figures(hierarchy: OrgHierarchy, figures: Mapping[str, PlanFigures]) -> dict[str, Consolidated]:
    # One pass up each plan's ancestor chain, instead of a subtree walk per unit: linear in the plans.
    parent = {u.unit_id: u.parent_id for u in hierarchy.units}
    members: dict[str, list[tuple[str, PlanFigures]]] = {u.unit_id: [] for u in hierarchy.units}
    for unit in hierarchy.units:
        own = figures.get(unit.unit_id)
        node: str | None = unit.unit_id
        while own is not None and node is not None:
            members[node].append((unit.unit_id, own))
            node = parent[node]
    return {unit.unit_id: _consolidated(unit.unit_id, members[unit.unit_id]) for unit in hierarchy.units}


def _subtree(unit_id: str, hierarchy: OrgHierarchy) -> set[str]:
    """The unit and everything below it; one index of children instead of a scan per unit."""
    hierarchy.unit(unit_id)  # an unknown unit is refused with the hierarchy's own message
    children: dict[str, list[str]] = {}
    for unit in hierarchy.units:
        if unit.parent_id is not None:
            children.setdefault(unit.parent_id, []).append(unit.unit_id)
    found: set[str] = set()
    pending = [unit_id]
    while pending:
        current = pending.pop()
        found.add(current)
        pending.extend(children.get(current, ()))
    return found


def _consolidated(unit_id: str, covered: list[tuple[str, PlanFigures]]) -> Consolidated:
    """`covered`: (unit id, figures) of every plan of the subtree, in hierarchy order."""
    members = [f for _, f in covered]
    drafted = [f for _, f in covered if f.has_content]
    targets: dict[tuple[str, str], Decimal] = {}
    for f in drafted:
        for t in f.targets:
            targets[(t.metric, t.unit)] = targets.get((t.metric, t.unit), Decimal(0)) + t.total
    phases: dict[str, int] = {}
    for f in members:
        if f.phase is not None:
            phases[f.phase.value] = phases.get(f.phase.value, 0) + 1
    return Consolidated(
        unit_id=unit_id,
        plans=tuple(u for u, f in covered if f.has_content),
        forecast=_per_currency((f.currency, f.forecast) for f in drafted),
        budget=_per_currency((f.currency, f.budget) for f in drafted),
        program_cost=_per_currency((f.currency, f.program_cost) for f in drafted),
        targets=_target_totals(targets),
        phases=dict(sorted(phases.items())),
        signed_off=sum(1 for f in members if f.signed_off_revision is not None),
        escalated=sum(1 for f in members if f.escalated),
        overdue=sum(1 for f in members if f.overdue_months),
        revenue_actual_to_date=_per_currency((f.currency, f.revenue_actual_to_date) for f in members),
        year_end_extrapolation=_per_currency((f.currency, f.year_end_extrapolation) for f in members),
    )


def _total(amounts: Iterable[Decimal]) -> Decimal:
    return sum(amounts, Decimal(0))


def _per_currency(amounts: Iterable[tuple[str, Decimal | None]]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for currency, amount in amounts:
        if amount is not None:
            totals[currency] = totals.get(currency, Decimal(0)) + amount
    return dict(sorted(totals.items()))


def _target_totals(targets: dict[tuple[str, str], Decimal]) -> tuple[TargetTotal, ...]:
    return tuple(TargetTotal(metric=m, unit=u, total=t) for (m, u), t in sorted(targets.items()))
