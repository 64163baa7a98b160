"""Consolidation up the hierarchy: each unit's figures plus everything below it, summed per currency.

No exchange rates are guessed: totals stay per currency, so a region with EUR and GBP plans shows both.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from domain.base import DomainModel
from domain.money import totals_by_currency
from domain.org import OrgHierarchy
from domain.state import PlanState


class TargetTotal(DomainModel):
    metric: str
    unit: str
    total: Decimal


class Consolidated(DomainModel):
    unit_id: str
    plans: tuple[str, ...]  # the units whose plans are included
    forecast: dict[str, Decimal]  # currency -> total
    budget: dict[str, Decimal]
    program_cost: dict[str, Decimal]
    targets: tuple[TargetTotal, ...]


def consolidate(unit_id: str, hierarchy: OrgHierarchy, plans: Mapping[str, PlanState]) -> Consolidated:
    covered = [unit_id] + [u.unit_id for u in hierarchy.descendants(unit_id)]
    contents = [
        (uid, content) for uid in covered if uid in plans and (content := plans[uid].strategy) is not None
    ]
    targets: dict[tuple[str, str], Decimal] = {}
    for _, content in contents:
        for goal in content.goals:
            key = (goal.metric, goal.unit)
            targets[key] = targets.get(key, Decimal(0)) + goal.target
    return Consolidated(
        unit_id=unit_id,
        plans=tuple(uid for uid, _ in contents),
        forecast=totals_by_currency(line.amount for _, c in contents for line in c.forecast),
        budget=totals_by_currency(line.amount for _, c in contents for line in c.budget),
        program_cost=totals_by_currency(p.cost for _, c in contents for p in c.programs),
        targets=tuple(TargetTotal(metric=m, unit=u, total=t) for (m, u), t in sorted(targets.items())),
    )


def rollup(hierarchy: OrgHierarchy, plans: Mapping[str, PlanState]) -> dict[str, Consolidated]:
    """Consolidated figures for every unit of the hierarchy, global included."""
    return {unit.unit_id: consolidate(unit.unit_id, hierarchy, plans) for unit in hierarchy.units}
