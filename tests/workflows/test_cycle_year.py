"""A whole fiscal year of a small organisation on the time-skipping server, from cycle open to refine
(tests/workflows/scenario.py tells the story): the stored streams, the workflows' states, the cycle's
progress and the rollup (from the plan figures read model, as the API serves it) must all agree."""

from __future__ import annotations

import uuid
from collections import Counter
from decimal import Decimal

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain import Phase, PlanState, decode_event, replay
from domain.cycle import CloseCycle, progress_code, tally
from domain.rollup import Consolidated, PlanFigures, consolidate_figures, plan_figures, rollup
from domain.strategy import RevisionSource
from eventstore import EventStore, RecordedEvent
from planloop.readmodels import catch_up
from planloop.readmodels.figures import PlanFiguresProjection, cycle_figures
from tests.workflows.scenario import (
    AMERICAS_FALLBACK,
    ESCALATED,
    LATE_ACTUALS,
    PUSHED_BACK,
    REGIONS,
    UNITS,
    YearScenario,
    goal_target,
    hierarchy,
)
from workflows import CycleWorkflow, cycle_workflow_id
from workflows.contracts import CycleCommand, CycleProgress


async def stored_events(store: EventStore, stream_id: str) -> list[RecordedEvent]:
    events = await store.read_stream(stream_id)
    # No gaps, no duplicates: versions 1..n, every event id once.
    assert [e.version for e in events] == list(range(1, len(events) + 1))
    assert len({e.event_id for e in events}) == len(events)
    return events


async def stored_state(store: EventStore, stream_id: str) -> PlanState:
    events = await stored_events(store, stream_id)
    return replay(decode_event(e.type, e.schema_version, e.data) for e in events)  # type: ignore[misc]


async def cycle_caught_up(year: YearScenario) -> None:
    """Plans report to their cycle by signal, after the fact: wait until the cycle's progress counts each
    plan's latest phase and flags."""

    async def caught_up() -> bool:
        expected = tally([progress_code(plan_figures(await year.state(u))) for u in UNITS])
        progress = await year.progress()
        return (progress.phases, progress.signed_off, progress.escalated, progress.overdue) == (
            expected.phases,
            expected.signed_off,
            expected.escalated,
            expected.overdue,
        )

    await year.settled(caught_up, "the cycle to hear of every plan's progress")


def assert_sum_of(total: Consolidated, parts: list[Consolidated]) -> None:
    def add(field: str) -> dict[str, Decimal]:
        summed: Counter[str] = Counter()
        for part in parts:
            summed.update(getattr(part, field))
        return dict(summed)

    for field in ("forecast", "budget", "program_cost", "revenue_actual_to_date", "year_end_extrapolation"):
        assert getattr(total, field) == add(field), field
    targets: Counter[tuple[str, str]] = Counter()
    for part in parts:
        targets.update({(t.metric, t.unit): t.total for t in part.targets})
    assert {(t.metric, t.unit): t.total for t in total.targets} == dict(targets)


async def assert_rollup_adds_up(year: YearScenario, store: EventStore) -> dict[str, Consolidated]:
    await cycle_caught_up(year)
    stored = {u: await stored_state(store, year.plan(u).id) for u in UNITS}
    # The roll-up as the API serves it: the plan figures read model, caught up, consolidated. The feed
    # holds back events while any transaction on the PostgreSQL server is older: catch up until it is in.
    figures: dict[str, PlanFigures] = {}

    async def read_model_caught_up() -> bool:
        nonlocal figures
        await catch_up(store, PlanFiguresProjection())
        figures = await cycle_figures(store.pool, year.cycle_id)
        return {u: f.version for u, f in figures.items()} == {u: s.version for u, s in stored.items()}

    await year.settled(read_model_caught_up, "the plan figures read model to catch up")
    units = {u: consolidate_figures(u, hierarchy(), figures) for u in (*UNITS, "HQ")}
    # What the read model consolidates is what the stored plan streams consolidate to.
    assert units == {u: c for u, c in rollup(hierarchy(), stored).items() if u in units}
    for region, countries in REGIONS.items():
        # A region's consolidated numbers are its own plan (its key accounts) plus its countries' plans.
        own = consolidate_figures(region, hierarchy(), {region: plan_figures(stored[region])})
        assert_sum_of(units[region], [own, *(units[c] for c in countries)])
        assert units[region].plans == (region, *countries)
    assert_sum_of(units["HQ"], [units[r] for r in REGIONS])
    return units


async def test_a_whole_fiscal_year_from_cycle_open_to_refine(
    time_skipping_env: WorkflowEnvironment, skipping_worker: Worker, task_queue: str, store: EventStore
) -> None:
    year = YearScenario(time_skipping_env, task_queue, cycle_id=f"FY-{uuid.uuid4().hex[:8].upper()}")
    await year.open_cycle()
    opened = await stored_events(store, cycle_workflow_id(year.cycle_id))
    assert [e.type for e in opened] == ["CycleOpened"]
    assert (await year.progress()).phases == {"drafting": len(UNITS)}

    # Drafts and review: DE pushed back twice (a counter-proposal accepted, one answered) before sign-off.
    await year.draft_and_submit()
    await year.review_with_pushback()
    de = await year.state(PUSHED_BACK)
    assert de.phase is Phase.APPROVED and de.signed_off_revision == 3
    assert [r.source for r in de.revisions] == [
        RevisionSource.AUTHOR,
        RevisionSource.COUNTER_PROPOSAL,
        RevisionSource.AUTHOR,
    ]
    assert de.revisions[1].counter_proposal_by == "eu-cfo"
    assert [d.decision.value for d in de.decisions].count("changes_requested") == 2
    signed_off = de.revision(3)
    assert signed_off is not None and signed_off.content.goal("G-REV").target == goal_target("DE") * Decimal(  # type: ignore[union-attr]
        "1.1"
    )

    # Leadership reviews the regions' consolidated numbers while US still waits at its regional gate.
    await cycle_caught_up(year)
    progress = await year.cycle().query(CycleWorkflow.progress, result_type=CycleProgress)
    assert progress.phases == {"approved": 5, "in_review": 1} and progress.signed_off == 5
    units = await assert_rollup_adds_up(year, store)
    assert units["EU"].targets[0].metric == "new_customers"
    revenue = {t.metric: t.total for t in units["EU"].targets}["revenue"]
    assert revenue == goal_target("EU") + goal_target("DE") * Decimal("1.1") + goal_target("FR")

    # The AMERICAS gate misses its deadline: escalated to the fallback approver, who approves.
    await year.escalate_missed_gate()
    us_events = await stored_events(store, year.plan(ESCALATED).id)
    kinds = [e.type for e in us_events]
    assert kinds.count("GateReminderSent") == 1 and kinds.count("GateEscalated") == 1
    escalation = next(e for e in us_events if e.type == "GateEscalated")
    assert escalation.data["fallback_approver"] == AMERICAS_FALLBACK
    assert escalation.metadata["actor"] == "system:clock"
    us = await year.state(ESCALATED)
    assert us.phase is Phase.APPROVED
    assert any(d.approver == AMERICAS_FALLBACK for d in us.decisions)

    # Execution planning, then the year: twelve reports from the clock, four reviews, one overdue month.
    await year.plan_execution()
    assert {(await year.state(u)).phase for u in UNITS} == {Phase.EXECUTING}
    await year.execute_year()
    late_unit, late_index = LATE_ACTUALS
    for unit in UNITS:
        state = await year.state(unit)
        assert state.phase is Phase.LEARNING, unit
        assert [r.month for r in state.reports] == list(year.months)
        assert [r.quarter for r in state.reviews] == [1, 2, 3, 4]
        events = await stored_events(store, year.plan(unit).id)
        reports = [e for e in events if e.type == "MonthlyReportIssued"]
        assert len(reports) == 12 and {e.metadata["actor"] for e in reports} == {"system:clock"}
        overdue = [e.data["month"] for e in events if e.type == "ActualsOverdue"]
        assert overdue == ([year.months[late_index]] if unit == late_unit else []), unit
        assert [e.type for e in events].count("QuarterlyReviewDue") == 4
        assert [e.type for e in events].count("ExecutionPeriodClosed") == 1
    late = await year.state(late_unit)
    late_report = next(r for r in late.reports if r.month == year.months[late_index])
    assert late_report.revenue_actual is None  # issued at the close, before the figure came in
    units = await assert_rollup_adds_up(year, store)
    assert (await year.progress()).overdue == 1
    assert units["HQ"].revenue_actual_to_date and units["HQ"].phases == {"learning": len(UNITS)}

    # Learn and refine: each plan continues as new into its next iteration; its stream goes on.
    await year.learn_and_refine()
    for unit in UNITS:
        handle = year.plan(unit)

        async def refined(unit: str = unit) -> bool:
            description = await year.plan(unit).describe()
            return description.run_id != year.first_run_ids[unit]

        await year.settled(refined, f"{unit} to continue as new")
        live = await year.state(unit)
        assert live.phase is Phase.DRAFTING and live.iteration == 2
        assert live.history[0].score is not None and live.history[0].score.results == 56
        assert live == await stored_state(store, handle.id)
    units = await assert_rollup_adds_up(year, store)
    assert units["HQ"].phases == {"drafting": len(UNITS)}
    assert (await year.progress()).signed_off == 0  # the new iteration is not signed off yet

    # The cycle's own stream holds only its opening; it follows the plans by their signals.
    assert [e.type for e in await stored_events(store, cycle_workflow_id(year.cycle_id))] == ["CycleOpened"]

    # The planning office closes the cycle: every plan is closed and ends (nothing is left running to hold
    # the session's time-skipping server).
    close = CloseCycle(actor="planning-office", at=year.opened_at, reason="FY done")  # type: ignore[arg-type]
    await year.cycle().execute_update(CycleWorkflow.close_cycle, CycleCommand(command=close))
    await year.cycle().result()
    for unit in UNITS:
        await year.plan(unit).result()
        assert (await stored_state(store, year.plan(unit).id)).phase is Phase.CLOSED
    cycle_events = await stored_events(store, cycle_workflow_id(year.cycle_id))
    assert [e.type for e in cycle_events] == ["CycleOpened", "CycleClosed"]
