"""Read models follow plans through approval and execution; rebuilt from scratch they come out the same."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from domain import commands as cmd
from eventstore import EventStore
from planloop.readmodels import (
    Projector,
    all_projections,
    catch_up,
    inbox,
    list_plans,
    rebuild,
    tracking,
    waiting_on_person,
)
from tests.domain.factory import AUTHOR, COUNTRY, REGION, calendar, drafted, executing
from tests.readmodels.plans import STREAM, PlanWriter, utc


async def catch_up_all(store: EventStore) -> None:
    for projection in all_projections():
        await catch_up(store, projection)


async def table_rows(store: EventStore) -> dict[str, list[dict]]:
    queries = {
        "plan_list": "SELECT * FROM plan_list ORDER BY stream_id",
        "approval_inbox": "SELECT * FROM approval_inbox ORDER BY approver, stream_id, seat, valid_from",
        "plan_tracking": "SELECT * FROM plan_tracking ORDER BY stream_id, measure, month",
        "plan_figures": "SELECT * FROM plan_figures ORDER BY stream_id",
        "states": "SELECT projection, stream_id, version, state FROM projection_plan_states ORDER BY 1, 2",
    }
    return {name: [dict(r) for r in await store.pool.fetch(sql)] for name, sql in queries.items()}


async def test_plan_list_and_inbox_follow_a_plan_through_its_gates(store: EventStore) -> None:
    w = PlanWriter(store, drafted())
    await w.flush()
    await w.do(cmd.SubmitForApproval, AUTHOR)
    await catch_up_all(store)

    [plan] = await list_plans(store.pool, cycle="FY2027")
    assert (plan.stream_id, plan.unit_id, plan.phase) == (STREAM, "DE-AUTOMATION", "in_review")
    assert (plan.current_revision, plan.signed_off_revision, plan.authors) == (1, None, [AUTHOR])
    assert (plan.gate_id, plan.pending_approvers, plan.gate_due_at) == (
        "country:DE",
        [COUNTRY],
        utc(2026, 10, 15),
    )
    assert plan.version == w.written and not plan.overdue
    [item] = await inbox(store.pool, COUNTRY)
    assert (item.stream_id, item.gate_id, item.via, item.revision) == (STREAM, "country:DE", "seat", 1)
    assert item.content_hash == w.harness.submitted_hash

    await w.do(cmd.ApprovePlan, COUNTRY, content_hash=w.harness.submitted_hash)
    start = w.harness.later(hours=1)
    await w.do(
        cmd.DelegateApproval, REGION[0], delegate="eu-deputy", starts=start, ends=start + timedelta(days=3)
    )
    await catch_up_all(store)

    assert await inbox(store.pool, COUNTRY) == []
    [plan] = await list_plans(store.pool, waiting_on=REGION[0])
    assert (plan.gate_id, plan.pending_approvers) == ("region:EU", list(REGION))
    assert await list_plans(store.pool, waiting_on=COUNTRY) == []
    [delegated] = await inbox(store.pool, "eu-deputy", at=start + timedelta(days=1))
    assert (delegated.seat, delegated.via) == (REGION[0], "delegation")
    assert await inbox(store.pool, "eu-deputy", at=start + timedelta(days=4)) == []

    # Past the region's deadline the gate escalates: its fallback approver now decides for it.
    await w.tick(utc(2026, 11, 2))
    await catch_up_all(store)
    [fallback] = await inbox(store.pool, "eu-president")
    assert (fallback.via, fallback.escalated) == ("fallback", True)
    [plan] = await list_plans(store.pool, overdue=True)
    assert plan.gate_escalated and plan.version == w.written
    assert await list_plans(store.pool, overdue=False) == []
    assert await list_plans(store.pool, phase="approved") == []


async def test_tracking_and_overdue_flags_follow_actuals_and_the_monthly_close(store: EventStore) -> None:
    w = PlanWriter(store, executing())
    await w.flush()
    await w.actual("revenue", "2027-01", 80000)
    await w.actual("S1", "2027-01", 7)
    await w.tick(calendar().close_at("2027-01"))  # M1 is missing: overdue, and the report is issued
    await catch_up_all(store)

    [plan] = await list_plans(store.pool, unit="DE-AUTOMATION")
    assert (plan.phase, plan.actuals_overdue_months, plan.overdue) == ("executing", ["2027-01"], True)
    # S1 was off track and its owner let the explanation's deadline pass: "waiting on" anna.
    assert plan.explanations_overdue == 1 and plan.explanations_owed_by == ["anna"]
    assert await waiting_on_person(store.pool, plan.cycle_id, "anna") == {"DE-AUTOMATION": ["explanation"]}
    lines = {(line.measure, line.month): line for line in (await tracking(store.pool, STREAM)).lines}
    revenue = lines["revenue", "2027-01"]
    assert (revenue.target, revenue.actual, revenue.status) == (80000, 80000, "on_track")
    assert (lines["S1", "2027-01"].actual, lines["S1", "2027-01"].status) == (7, "off_track")
    assert (lines["M1", "2027-01"].target, lines["M1", "2027-01"].status) == (10, "no_data")
    assert (lines["M1", "2027-06"].target, lines["M1", "2027-06"].actual) == (10, None)

    await w.actual("M1", "2027-01", "9.5")
    [deviation] = w.harness.state.deviations
    await w.do(cmd.ExplainDeviation, "anna", deviation_id=deviation.deviation_id, explanation="a lost tender")
    await catch_up_all(store)
    [plan] = await list_plans(store.pool)
    assert (plan.actuals_overdue_months, plan.explanations_overdue, plan.overdue) == ([], 0, False)
    assert (
        plan.explanations_owed_by == [] and await waiting_on_person(store.pool, plan.cycle_id, "anna") == {}
    )
    m1 = next(li for li in (await tracking(store.pool, STREAM)).lines if li.measure == "M1")
    assert (m1.month, m1.actual, m1.status, m1.source) == ("2027-01", 9.5, "on_track", "erp:sap")


async def test_a_rebuild_from_scratch_gives_identical_rows(store: EventStore) -> None:
    w = PlanWriter(store, executing())
    await w.flush()
    await w.actual("revenue", "2027-01", 70000)
    await w.tick(calendar().close_at("2027-01"))
    other = PlanWriter(store, drafted(), stream="plan:FY2027:FR-SALES")
    await other.flush()
    await other.do(cmd.SubmitForApproval, AUTHOR)
    await catch_up_all(store)
    before = await table_rows(store)
    assert all(before.values())

    applied = await rebuild(store)
    assert (
        applied
        == {
            "plan_list": w.written + other.written,
            "approval_inbox": w.written + other.written,
            "tracking": applied["tracking"],
            "plan_figures": w.written + other.written,
        }
        and applied["tracking"] > 0
    )
    assert await table_rows(store) == before
    # Rebuilding one read model leaves the others alone.
    await rebuild(store, ["tracking"])
    assert await table_rows(store) == before


async def test_the_projector_follows_new_events_as_they_commit(store: EventStore) -> None:
    projector = Projector(store, all_projections(), poll_interval=5)
    stop = asyncio.Event()
    running = asyncio.create_task(projector.run(stop))
    try:
        w = PlanWriter(store, drafted())
        await w.flush()
        for _ in range(50):  # a NOTIFY wakes it long before its 5 s poll
            if await list_plans(store.pool):
                break
            await asyncio.sleep(0.05)
        [plan] = await list_plans(store.pool)
        assert plan.phase == "drafting"
    finally:
        stop.set()
        await asyncio.wait_for(running, 5)
