"""One whole iteration of the planning loop, as DOMAIN.md tells it, then the refine into the next
iteration."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from domain import (
    BudgetCut,
    CounterProposal,
    ImprovementAction,
    LessonLink,
    MeasureStatus,
    Phase,
    TargetChange,
    Team,
    decode_event,
    encode_event,
    next_deadlines,
    replay,
)
from domain import commands as cmd
from domain import events as ev
from domain.strategy import ForecastLine, RevisionSource
from tests.domain.factory import (
    AUTHOR,
    COUNTRY,
    GLOBAL,
    MARKETING_LEAD,
    MONTHS,
    PROFILE,
    REGION,
    SALES_LEAD,
    Harness,
    content,
    csf,
    eur,
    open_plan,
)

OFF_MONTH = "2027-05"


def test_a_business_unit_plan_walks_the_whole_loop() -> None:
    h = Harness()
    h.run(open_plan())
    h.do(cmd.ReviseStrategy, AUTHOR, content=content(), reason="first draft")
    h.do(cmd.SubmitForApproval, AUTHOR, revision=1)
    h.do(cmd.ApprovePlan, COUNTRY, content_hash=h.submitted_hash)

    # Regional leadership pushes back: stretched numbers, lower expenses, one program fewer.
    pushback = CounterProposal(
        target_changes=(TargetChange(goal_id="G-REV", percent=Decimal(10)),),
        forecast_change_pct=Decimal(10),
        budget_cuts=(BudgetCut(line_id="B-MARKETING", percent=Decimal(20)),),
        programs_to_drop=("P-WEBINAR",),
        comment="Stretch revenue by 10%, spend less on marketing, drop the webinars.",
    )
    h.do(
        cmd.RequestChanges,
        REGION[0],
        content_hash=h.submitted_hash,
        comment="Too cautious",
        counter_proposal=pushback,
    )
    assert h.state.phase is Phase.CHANGES_REQUESTED
    h.do(cmd.AcceptCounterProposal, AUTHOR)
    rev2 = h.state.revisions[-1]
    assert (rev2.number, rev2.source, rev2.counter_proposal_by) == (
        2,
        RevisionSource.COUNTER_PROPOSAL,
        "eu-cfo",
    )
    revenue_change = next(c for c in rev2.diff.target_changes if c.key == "G-REV")
    assert (revenue_change.old, revenue_change.new, revenue_change.change_pct) == (
        Decimal(1200000),
        Decimal(1320000),
        Decimal("10.00"),
    )
    assert [(c.key, c.change_pct) for c in rev2.diff.budget_changes] == [("B-MARKETING", Decimal("-20.00"))]
    assert rev2.diff.programs_dropped == ("P-WEBINAR",)
    assert all(c.change_pct == Decimal("10.00") for c in rev2.diff.forecast_changes)
    assert len(rev2.diff.forecast_changes) == 12

    # Resubmitted, the plan walks all gates again, bound to the new hash; an out-of-office approver delegates.
    h.do(cmd.SubmitForApproval, AUTHOR)
    h.do(cmd.ApprovePlan, COUNTRY, content_hash=h.submitted_hash)
    h.do(
        cmd.DelegateApproval,
        REGION[1],
        delegate="eu-coo-deputy",
        starts=h.now,
        ends=datetime(2026, 12, 1, tzinfo=UTC),
    )
    h.do(cmd.ApprovePlan, REGION[0], content_hash=h.submitted_hash)
    delegated = h.do(cmd.ApprovePlan, "eu-coo-deputy", content_hash=h.submitted_hash)
    assert delegated[0].actor == "eu-coo-deputy" and delegated[0].on_behalf_of == REGION[1]
    assert isinstance(delegated[1], ev.GatePassed) and delegated[1].next_gate_id == "global:HQ"

    # Global leadership wants lower travel expenses; the author answers with a revision of their own.
    h.do(cmd.ApprovePlan, GLOBAL[0], content_hash=h.submitted_hash)
    cut = CounterProposal(
        budget_cuts=(BudgetCut(line_id="B-TRAVEL", amount=eur(20000)),), comment="Travel -20k"
    )
    h.do(
        cmd.RequestChanges,
        GLOBAL[1],
        content_hash=h.submitted_hash,
        comment="Travel is high",
        counter_proposal=cut,
    )
    answer = rev2.content.model_copy(
        update={
            "budget": tuple(
                b.model_copy(update={"amount": eur(50000)}) if b.line_id == "B-TRAVEL" else b
                for b in rev2.content.budget
            )
        }
    )
    h.do(cmd.ReviseStrategy, AUTHOR, content=answer, reason="Travel -10k: customer visits are how we win")
    assert h.state.counter_proposal is None
    assert [(c.key, c.change_pct) for c in h.state.revisions[-1].diff.budget_changes] == [
        ("B-TRAVEL", Decimal("-16.67"))
    ]
    h.do(cmd.SubmitForApproval, AUTHOR, revision=3)
    for approver in (COUNTRY, REGION[0], REGION[2], GLOBAL[0]):
        h.do(cmd.ApprovePlan, approver, content_hash=h.submitted_hash)
    final = h.do(cmd.ApprovePlan, GLOBAL[1], content_hash=h.submitted_hash)
    assert [e.type for e in final] == ["ApprovalRecorded", "GatePassed", "PlanSignedOff"]
    assert h.state.phase is Phase.APPROVED and h.state.signed_off_revision == 3
    assert {d.approver for d in h.state.decisions if d.revision == 3} == {COUNTRY, *REGION[::2], *GLOBAL}

    # Execution planning: three CSFs per team, owners and a coach, both leads confirm.
    h.do(cmd.StartExecutionPlanning, AUTHOR, sales_lead=SALES_LEAD, marketing_lead=MARKETING_LEAD)
    for i, owner in enumerate(("anna", "ben", "carla"), start=1):
        h.do(cmd.DefineCsf, SALES_LEAD, csf=csf(f"S{i}", Team.SALES, owner, coach="sales-coach"))
        h.do(cmd.DefineCsf, MARKETING_LEAD, csf=csf(f"M{i}", Team.MARKETING, f"m-owner-{i}"))
    h.refused(cmd.DefineCsf, SALES_LEAD, "too_many_csfs", csf=csf("S4", Team.SALES, "dan"))
    h.do(cmd.ConfirmAlignment, SALES_LEAD, team=Team.SALES)
    h.do(cmd.ConfirmAlignment, MARKETING_LEAD, team=Team.MARKETING)
    h.do(cmd.StartExecution, AUTHOR)
    assert h.state.phase is Phase.EXECUTING
    h.refused(cmd.ReviseStrategy, AUTHOR, "strategy_frozen", content=content(), reason="tweak")

    # Twelve months of actuals: revenue 2% above forecast except one month far off track, which is explained.
    forecast = h.state.strategy.forecast_by_month()  # type: ignore[union-attr]
    quarters_held = 0
    for index, month in enumerate(MONTHS):
        h.at(datetime(2027, index + 1, 28, tzinfo=UTC) if index < 11 else datetime(2027, 12, 31, tzinfo=UTC))
        factor = Decimal("0.70") if month == OFF_MONTH else Decimal("1.02")
        recorded = h.do(
            cmd.RecordActual,
            "system:erp",
            measure="revenue",
            month=month,
            value=forecast[month] * factor,
            currency="EUR",
            source="erp:sap",
        )
        for c in h.state.csfs:
            h.do(
                cmd.RecordActual, "system:crm", measure=c.csf_id, month=month, value=Decimal(10), source="crm"
            )
        if month == OFF_MONTH:
            assert recorded[0].status is MeasureStatus.OFF_TRACK
            deviation = recorded[1]
            assert isinstance(deviation, ev.DeviationOpened) and deviation.owner == AUTHOR
            h.refused(cmd.ExplainDeviation, "anna", "not_deviation_owner", deviation_id="D1", explanation="x")
            h.do(cmd.ExplainDeviation, AUTHOR, deviation_id="D1", explanation="Two orders slipped to June.")
        else:
            assert [e.type for e in recorded] == ["ActualRecorded"]
        h.at(datetime(2027, index + 1, 28, tzinfo=UTC) if index < 11 else datetime(2028, 1, 2, tzinfo=UTC))
        report = h.do(cmd.IssueMonthlyReport, AUTHOR, month=month)[0]
        assert isinstance(report, ev.MonthlyReportIssued) and report.report.month == month
        if month in ("2027-03", "2027-06", "2027-09", "2027-12"):
            quarters_held += 1
            h.at(
                datetime(2028, 1, 3, tzinfo=UTC)
                if month == "2027-12"
                else h.now.replace(day=1, month=index + 2)
            )
            h.do(
                cmd.HoldQuarterlyReview,
                AUTHOR,
                quarter=quarters_held,
                attendees=(AUTHOR, SALES_LEAD, MARKETING_LEAD, "sales-coach"),
                decisions=("Keep the partner program",),
                improvement_actions=(
                    ImprovementAction(description="Win-loss review", owner="anna", due=date(2028, 1, 31)),
                ),
            )
    assert len(h.state.reviews) == 4
    assert all(line.status is MeasureStatus.ON_TRACK for line in h.state.reviews[0].csf_status)
    december = h.state.reports[-1]
    expected_total = sum(forecast.values()) * Decimal("1.02") - forecast[OFF_MONTH] * Decimal("0.32")
    assert december.revenue_actual_to_date == expected_total
    assert december.year_end_extrapolation == expected_total.quantize(Decimal("0.01"))
    may = next(r for r in h.state.reports if r.month == OFF_MONTH)
    assert may.measures[0].status is MeasureStatus.OFF_TRACK
    # Only review/period deadlines are left, nothing overdue: every month was reported on time.
    assert {d.kind.value for d in next_deadlines(h.state)} == {"period_end"}

    # Learning: the period closes with evidence; the review scores 6 x 8 = 48.
    h.at(datetime(2028, 1, 5, tzinfo=UTC))
    closed = h.do(cmd.CloseExecutionPeriod, AUTHOR)[0]
    assert isinstance(closed, ev.ExecutionPeriodClosed)
    assert closed.evidence.csf_attainment_pct == Decimal("100.0")
    # Mean absolute error: eleven months 2% off, one month 30% off -> (11 x 2 + 30) / 12 = 4.33%.
    assert closed.evidence.forecast_accuracy_pct == Decimal("95.7")
    h.do(
        cmd.ScorePlan, "eu-president", plan_quality=6, execution_effectiveness=8, rationale="solid execution"
    )
    assert h.state.score is not None and h.state.score.results == 48
    h.do(
        cmd.RecordLesson, AUTHOR, text="Large orders slip; win them earlier in the quarter.", category="sales"
    )
    lesson_id = h.state.lessons[0].lesson_id

    # Refine: the next iteration starts from the last strategy, the change linked to the lesson behind it.
    last = h.state.revisions[-1].content
    next_months = [f"2028-{m:02d}" for m in range(1, 13)]
    refined = last.model_copy(
        update={
            "choices": last.choices.model_copy(
                update={"how_to_win": last.choices.how_to_win + " Close large orders by mid-quarter."}
            ),
            "forecast": tuple(
                ForecastLine(month=m, amount=eur(p * 1100)) for m, p in zip(next_months, PROFILE, strict=True)
            ),
        }
    )
    h.do(
        cmd.RefineStrategy,
        AUTHOR,
        content=refined,
        reason="FY2028 iteration",
        lesson_links=(LessonLink(changed_field="choices.how_to_win", lesson_id=lesson_id),),
    )
    assert h.state.phase is Phase.DRAFTING and h.state.iteration == 2
    assert h.state.calendar is not None and h.state.calendar.execution_start == "2028-01"
    new_revision = h.state.revisions[-1]
    assert (new_revision.number, new_revision.source) == (4, RevisionSource.REFINE)
    assert "choices.how_to_win" in new_revision.diff.changed_fields
    assert h.state.history[0].score is not None and h.state.history[0].score.results == 48
    assert h.state.csfs == () and h.state.actuals == ()

    # What the auditor reconstructs equals what the workflow decided, also through the storage encoding.
    assert replay(h.events) == h.state
    stored = [(e.type, e.schema_version, encode_event(e)) for e in h.events]
    assert replay(decode_event(t, v, d) for t, v, d in stored) == h.state  # type: ignore[misc]
    assert [r.number for r in h.state.revisions] == [1, 2, 3, 4]
