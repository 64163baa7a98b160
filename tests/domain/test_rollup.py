"""PlanFigures: a plan's key numbers, and their consolidation up the hierarchy (what a cycle holds)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain import DomainError, Phase
from domain import commands as cmd
from domain.rollup import PlanFigures, consolidate, consolidate_figures, plan_figures, rollup, rollup_figures
from tests.domain.factory import MONTHS, content, drafted, executing, submitted
from tests.domain.test_org_cycle import hierarchy


def test_a_plans_figures_follow_it_from_draft_to_execution() -> None:
    draft = plan_figures(drafted().state)
    assert (draft.phase, draft.iteration, draft.revision, draft.signed_off_revision) == (
        Phase.DRAFTING,
        1,
        1,
        None,
    )
    assert (draft.forecast, draft.budget, draft.program_cost) == (
        Decimal(1200000),
        Decimal(610000),
        Decimal(150000),
    )
    assert {t.metric: t.total for t in draft.targets} == {"new_customers": 40, "revenue": 1200000}
    assert draft.is_open and draft.has_content and not draft.escalated

    h = executing()
    h.do(
        cmd.RecordActual,
        "system:erp",
        measure="revenue",
        month=MONTHS[0],
        value=Decimal(81600),
        currency="EUR",
        source="erp",
    )
    h.do(cmd.IssueMonthlyReport, "bu-head", month=MONTHS[0])
    running = plan_figures(h.state)
    assert running.phase is Phase.EXECUTING and running.signed_off_revision == 1
    assert running.revenue_actual_to_date == Decimal(81600) and running.year_end_extrapolation is not None
    assert running.version == h.state.version > draft.version

    h.do(cmd.ClosePlan, "planning-office", reason="cycle closed")
    assert not plan_figures(h.state).is_open
    assert plan_figures(submitted().state).phase is Phase.IN_REVIEW


def test_figures_roll_up_the_same_by_unit_and_for_the_whole_tree() -> None:
    org = hierarchy()
    states = {"DE": drafted().state, "FR": drafted(content(scale=500)).state, "DE-AUTO": submitted().state}
    figures = {unit: plan_figures(state) for unit, state in states.items()}
    everything = rollup_figures(org, figures)
    assert everything == rollup(org, states)
    for unit in ("HQ", "EU", "DE", "FR", "DE-AUTO"):
        assert everything[unit] == consolidate_figures(unit, org, figures) == consolidate(unit, org, states)
    assert everything["DE"].plans == ("DE", "DE-AUTO")
    assert everything["EU"].phases == {"drafting": 2, "in_review": 1}
    assert everything["EU"].forecast == {"EUR": Decimal(1200000 * 2 + 600000)}
    # An opened plan with nothing drafted counts in the phases but adds no money.
    opened = PlanFigures(unit_id="EU", phase=Phase.DRAFTING, iteration=1, currency="EUR")
    with_region = rollup_figures(org, {**figures, "EU": opened})["HQ"]
    assert with_region.phases == {"drafting": 3, "in_review": 1} and "EU" not in with_region.plans
    assert rollup_figures(org, {"FR": PlanFigures(unit_id="FR")})["EU"].phases == {}  # not opened yet
    with pytest.raises(DomainError) as unknown:
        consolidate_figures("XX", org, figures)
    assert unknown.value.code == "invalid_org"
