"""Time enters through Tick: reminders, escalation, overdue actuals and explanations; next_deadlines
agrees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from domain import DeadlineKind, Phase, next_deadlines
from domain import commands as cmd
from domain import events as ev
from tests.domain.factory import COUNTRY, REGION, Harness, drafted, executing, submitted

DUE = datetime(2026, 10, 15, tzinfo=UTC)


def tick(h: Harness, at: datetime) -> list[ev.Event]:  # type: ignore[name-defined]
    return h.at(at).run(cmd.Tick(at=at))


def test_a_gate_is_reminded_before_its_deadline_then_escalated_once() -> None:
    h = submitted()
    assert [(d.kind, d.at) for d in next_deadlines(h.state)] == [
        (DeadlineKind.GATE_REMINDER, DUE - timedelta(days=2)),
        (DeadlineKind.GATE_ESCALATION, DUE),
    ]
    assert tick(h, DUE - timedelta(days=3)) == []
    reminder = tick(h, DUE - timedelta(days=1))
    assert isinstance(reminder[0], ev.GateReminderSent) and reminder[0].pending == (COUNTRY,)
    assert tick(h, DUE - timedelta(days=1)) == []
    escalation = tick(h, DUE)
    assert (
        isinstance(escalation[0], ev.GateEscalated) and escalation[0].fallback_approver == "de-country-deputy"
    )
    assert tick(h, DUE + timedelta(days=1)) == [] and next_deadlines(h.state) == []


def test_a_late_first_tick_escalates_without_a_moot_reminder() -> None:
    h = submitted()
    assert [e.type for e in tick(h, DUE + timedelta(hours=1))] == ["GateEscalated"]


def test_after_escalation_the_fallback_approver_decides_for_the_whole_gate() -> None:
    h = submitted()
    h.do(cmd.ApprovePlan, COUNTRY, content_hash=h.submitted_hash)
    h.refused(cmd.ApprovePlan, "eu-president", "not_your_gate", content_hash=h.submitted_hash)
    tick(h, datetime(2026, 11, 2, tzinfo=UTC))
    passed = h.do(cmd.ApprovePlan, "eu-president", content_hash=h.submitted_hash)
    assert [e.type for e in passed] == ["ApprovalRecorded", "GatePassed"]
    assert passed[1].next_due_at == datetime(2026, 11, 15, tzinfo=UTC)  # type: ignore[union-attr]
    assert [e.type for e in tick(h, datetime(2026, 11, 15, tzinfo=UTC))] == ["GateEscalated"]


def test_the_regular_approvers_may_still_decide_after_escalation() -> None:
    h = submitted()
    h.do(cmd.ApprovePlan, COUNTRY, content_hash=h.submitted_hash)
    tick(h, datetime(2026, 11, 2, tzinfo=UTC))
    assert len(h.do(cmd.ApprovePlan, REGION[0], content_hash=h.submitted_hash)) == 1


def test_missing_monthly_actuals_are_overdue_after_the_monthly_close() -> None:
    h = executing()
    h.do(
        cmd.RecordActual,
        "erp",
        measure="revenue",
        month="2027-01",
        value=Decimal(80000),
        currency="EUR",
        source="erp",
    )
    close = datetime(2027, 2, 5, tzinfo=UTC)
    assert next_deadlines(h.state)[0].at == close
    assert tick(h, close - timedelta(seconds=1)) == []
    overdue, report = tick(h, close)
    assert isinstance(overdue, ev.ActualsOverdue) and isinstance(report, ev.MonthlyReportIssued)
    assert (overdue.month, overdue.missing) == ("2027-01", ("S1", "M1"))
    # The report issued at the close shows what was known then: revenue, and no data for the CSFs.
    assert report.report.month == "2027-01" and report.report.revenue_actual == Decimal(80000)
    assert tick(h, close) == []


def test_a_month_fully_reported_is_not_overdue() -> None:
    h = executing()
    for measure, value in (("revenue", 80000), ("S1", 10), ("M1", 10)):
        h.do(
            cmd.RecordActual,
            "erp",
            measure=measure,
            month="2027-01",
            value=Decimal(value),
            currency="EUR" if measure == "revenue" else None,
            source="erp",
        )
    assert [e.type for e in tick(h, datetime(2027, 2, 5, tzinfo=UTC))] == ["MonthlyReportIssued"]


def test_a_month_reported_by_hand_gets_no_report_at_the_close() -> None:
    h = executing()
    h.do(cmd.IssueMonthlyReport, "bu-head", month="2027-01")
    assert [e.type for e in tick(h, datetime(2027, 2, 5, tzinfo=UTC))] == ["ActualsOverdue"]


def test_an_unexplained_deviation_is_flagged_once_after_its_due_date() -> None:
    h = executing()
    opened = h.do(cmd.RecordActual, "crm", measure="S1", month="2027-01", value=Decimal(2), source="crm")
    deviation = opened[1]
    assert isinstance(deviation, ev.DeviationOpened) and deviation.owner == "anna"
    kinds = [d.kind for d in next_deadlines(h.state) if d.at <= deviation.due_at]
    assert kinds == [DeadlineKind.EXPLANATION_DUE]
    flagged = tick(h, deviation.due_at)
    assert [e.type for e in flagged] == ["ExplanationOverdue"] and flagged[0].owner == "anna"  # type: ignore[union-attr]
    assert tick(h, deviation.due_at) == []
    # Late is better than never: the owner can still explain.
    h.do(cmd.ExplainDeviation, "anna", deviation_id="D1", explanation="Sick leave in January")


def test_quarterly_review_and_period_end_are_announced_once() -> None:
    h = executing()
    year_end = datetime(2028, 1, 6, tzinfo=UTC)
    events = tick(h, year_end)
    kinds = [e.type for e in events]
    assert kinds.count("ActualsOverdue") == 12 and kinds.count("QuarterlyReviewDue") == 4
    assert kinds.count("MonthlyReportIssued") == 12
    # The last month's close ends the period: the plan moves on to learning, with its evidence.
    assert kinds[-2:] == ["PeriodEndReached", "ExecutionPeriodClosed"]
    assert h.state.phase is Phase.LEARNING and h.state.evidence is not None
    assert tick(h, year_end) == [] and next_deadlines(h.state) == []


def test_the_period_is_not_closed_before_the_last_months_close() -> None:
    h = executing()
    assert [e.type for e in tick(h, datetime(2028, 1, 4, tzinfo=UTC))].count("ExecutionPeriodClosed") == 0
    assert h.state.phase is Phase.EXECUTING


def test_nothing_is_due_while_drafting() -> None:
    h = drafted()
    assert next_deadlines(h.state) == [] and tick(h, datetime(2030, 1, 1, tzinfo=UTC)) == []
    assert h.state.phase is Phase.DRAFTING
