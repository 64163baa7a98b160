"""Tracking: actuals from a source, corrections that keep the original, status, deviations, reports,
reviews."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from domain import (
    ImprovementAction,
    MeasureStatus,
    StatusThresholds,
    extrapolate_year_end,
    monthly_report_of,
)
from domain import commands as cmd
from domain.tracking import assess, attainment
from tests.domain.factory import AUTHOR, Harness, executing, in_execution_planning

D = Decimal


def record(h: Harness, measure: str, month: str, value: int | str, **extra: object) -> list[object]:
    fields = {"currency": "EUR"} if measure == "revenue" else {}
    fields.update(extra)  # type: ignore[arg-type]
    return h.do(
        cmd.RecordActual, "erp", measure=measure, month=month, value=D(value), source="erp:sap", **fields
    )  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("actual", "status"),
    [
        (10, MeasureStatus.ON_TRACK),
        ("9.5", MeasureStatus.ON_TRACK),
        (9, MeasureStatus.AT_RISK),
        ("8.5", MeasureStatus.AT_RISK),
        (8, MeasureStatus.OFF_TRACK),
    ],
)
def test_status_follows_the_thresholds(actual: int | str, status: MeasureStatus) -> None:
    assert assess(D(actual), D(10), StatusThresholds()) is status


def test_thresholds_are_configurable_and_direction_aware() -> None:
    lenient = StatusThresholds(at_risk_below=D("0.8"), off_track_below=D("0.5"))
    assert assess(D(6), D(10), lenient) is MeasureStatus.AT_RISK
    assert assess(D(11), D(10), StatusThresholds(), higher_is_better=False) is MeasureStatus.AT_RISK
    assert attainment(D(0), D(0)) == 1 and attainment(D(-1), D(0)) == 0
    assert attainment(D(0), D(5), higher_is_better=False) == 1 and attainment(D(0), D(-5), False) == 0
    with pytest.raises(ValueError):
        StatusThresholds(at_risk_below=D("0.5"), off_track_below=D("0.9"))
    with pytest.raises(ValueError):
        StatusThresholds(explanation_due_after=timedelta(0))


def test_an_actual_is_recorded_once_per_measure_and_month_from_a_named_source() -> None:
    h = executing()
    recorded = record(h, "revenue", "2027-01", 80000)
    assert recorded[0].status is MeasureStatus.ON_TRACK and recorded[0].source == "erp:sap"  # type: ignore[attr-defined]
    error = h.refused(
        cmd.RecordActual,
        "erp",
        "actual_exists",
        measure="revenue",
        month="2027-01",
        value=D(1),
        currency="EUR",
        source="erp",
    )
    assert "CorrectActual" in error.message


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"measure": "revenue", "month": "2028-01", "currency": "EUR"}, "month_outside_period"),
        ({"measure": "revenue", "month": "2027-01", "currency": "USD"}, "currency_mismatch"),
        ({"measure": "revenue", "month": "2027-01"}, "currency_mismatch"),
        ({"measure": "NPS", "month": "2027-01"}, "unknown_measure"),
    ],
)
def test_actuals_must_fit_the_plan(fields: dict[str, str], code: str) -> None:
    executing().refused(cmd.RecordActual, "erp", code, value=D(1), source="erp", **fields)


def test_actuals_are_recorded_only_while_executing() -> None:
    in_execution_planning().refused(
        cmd.RecordActual,
        "erp",
        "wrong_phase",
        measure="revenue",
        month="2027-01",
        value=D(1),
        currency="EUR",
        source="erp",
    )


def test_a_correction_is_a_new_entry_that_keeps_the_original() -> None:
    h = executing()
    record(h, "S1", "2027-01", 10)
    h.refused(
        cmd.CorrectActual,
        "erp",
        "no_actual_to_correct",
        measure="S1",
        month="2027-02",
        value=D(1),
        source="erp",
        reason="typo",
    )
    h.refused(
        cmd.CorrectActual,
        "erp",
        "reason_required",
        measure="S1",
        month="2027-01",
        value=D(1),
        source="erp",
        reason="",
    )
    h.refused(
        cmd.CorrectActual,
        "erp",
        "no_change",
        measure="S1",
        month="2027-01",
        value=D(10),
        source="erp",
        reason="same",
    )
    corrected = h.do(
        cmd.CorrectActual,
        "controller",
        measure="S1",
        month="2027-01",
        value=D(4),
        source="manual",
        reason="double-counted visits",
    )
    assert [e.type for e in corrected] == ["ActualCorrected", "DeviationOpened"]
    assert corrected[0].corrects == "A1"  # type: ignore[union-attr]
    assert [(a.entry_id, a.value, a.corrects) for a in h.state.actuals] == [
        ("A1", D(10), None),
        ("A2", D(4), "A1"),
    ]
    assert h.state.current_actuals()["S1"]["2027-01"] == D(4)
    # A second correction still off track does not open a second deviation for the same month.
    again = h.do(
        cmd.CorrectActual,
        "controller",
        measure="S1",
        month="2027-01",
        value=D(3),
        source="manual",
        reason="one more",
    )
    assert [e.type for e in again] == ["ActualCorrected"] and again[0].corrects == "A2"  # type: ignore[union-attr]


def test_off_track_opens_a_deviation_that_its_owner_explains_in_writing() -> None:
    h = executing()
    opened = record(h, "M1", "2027-01", 3)[1]
    assert opened.owner == "mark" and opened.due_at == h.now + timedelta(days=5)  # type: ignore[attr-defined]
    h.refused(cmd.ExplainDeviation, "mark", "unknown_deviation", deviation_id="D9", explanation="x")
    h.refused(cmd.ExplainDeviation, "anna", "not_deviation_owner", deviation_id="D1", explanation="x")
    h.refused(cmd.ExplainDeviation, "mark", "explanation_required", deviation_id="D1", explanation=" ")
    h.do(cmd.ExplainDeviation, "mark", deviation_id="D1", explanation="Agency changed mid-month")
    h.refused(cmd.ExplainDeviation, "mark", "already_explained", deviation_id="D1", explanation="more")
    assert h.state.deviation("D1").explanation == "Agency changed mid-month"  # type: ignore[union-attr]


def test_the_year_end_is_extrapolated_with_the_forecasts_profile() -> None:
    months = ["m1", "m2", "m3", "m4"]
    forecast = {"m1": D(100), "m2": D(100), "m3": D(300), "m4": D(500)}
    # Running at 90% of forecast: the strong later months are scaled, not assumed flat.
    assert extrapolate_year_end(forecast, {"m1": D(90), "m2": D(90)}, months) == D("900.00")
    assert extrapolate_year_end(forecast, {}, months) == D("1000.00")
    assert extrapolate_year_end({}, {"m1": D(10)}, months) == D("40.00")


def test_a_monthly_report_sums_up_the_plan_for_a_month() -> None:
    h = executing()
    record(h, "revenue", "2027-01", 88000)
    record(h, "S1", "2027-01", 9)
    report = monthly_report_of(h.state, "2027-01")
    assert (report.revenue_actual, report.revenue_forecast, report.revenue_actual_to_date) == (
        D(88000),
        D(80000),
        D(88000),
    )
    assert report.year_end_extrapolation == D("1320000.00") and report.year_end_forecast == D(1200000)
    assert [(m.measure, m.status) for m in report.measures] == [
        ("revenue", MeasureStatus.ON_TRACK),
        ("S1", MeasureStatus.AT_RISK),
        ("M1", MeasureStatus.NO_DATA),
    ]
    issued = h.do(cmd.IssueMonthlyReport, AUTHOR, month="2027-01")
    assert issued[0].report == report  # type: ignore[union-attr]
    h.refused(cmd.IssueMonthlyReport, AUTHOR, "month_outside_period", month="2026-12")


def test_a_quarterly_review_records_attendees_status_decisions_and_actions() -> None:
    h = executing()
    for month in ("2027-01", "2027-02"):
        record(h, "S1", month, 10)
    action = ImprovementAction(description="Weekly pipeline call", owner="anna", due=date(2027, 5, 1))
    review_fields = {
        "quarter": 1,
        "attendees": (AUTHOR, "anna"),
        "decisions": ("More demos",),
        "improvement_actions": (action,),
    }
    h.refused(cmd.HoldQuarterlyReview, AUTHOR, "quarter_not_ended", **review_fields)
    h.at(datetime(2027, 4, 2, tzinfo=UTC))
    h.refused(cmd.HoldQuarterlyReview, AUTHOR, "quarter_out_of_range", **{**review_fields, "quarter": 5})
    h.refused(cmd.HoldQuarterlyReview, AUTHOR, "invalid_review", **{**review_fields, "attendees": ()})
    h.do(cmd.HoldQuarterlyReview, AUTHOR, **review_fields)
    review = h.state.reviews[0]
    assert review.improvement_actions == (action,) and review.attendees == (AUTHOR, "anna")
    assert [(s.measure, s.actual, s.target, s.status) for s in review.csf_status] == [
        ("S1", D(20), D(20), MeasureStatus.ON_TRACK),
        ("M1", None, None, MeasureStatus.NO_DATA),
    ]
    h.refused(cmd.HoldQuarterlyReview, AUTHOR, "review_exists", **review_fields)


def test_regression_an_absurd_actual_is_refused_before_it_can_break_the_monthly_close() -> None:
    # RecordActual(value=1E+40) used to be accepted; the year-end extrapolation at the month's close then
    # overflowed Decimal's context and the plan's clock failed for ever.
    from datetime import UTC, datetime

    from pydantic import ValidationError

    from domain import next_deadlines

    with pytest.raises(ValidationError, match="digits"):
        cmd.RecordActual(
            actor="erp",
            at=datetime(2027, 2, 1, tzinfo=UTC),
            measure="revenue",
            month="2027-01",
            value=Decimal("1E+40"),
            currency="EUR",
            source="erp",
        )
    # The largest amount accepted still goes through a close.
    h = executing()
    h.do(
        cmd.RecordActual,
        "erp",
        measure="revenue",
        month="2027-01",
        value=Decimal("99999999999999.999999"),
        currency="EUR",
        source="erp",
    )
    close = next_deadlines(h.state)[0].at
    events = h.run(cmd.Tick(at=close))
    assert [e.type for e in events][-1] == "MonthlyReportIssued"


def test_many_actuals_at_once_are_decided_in_order_and_recorded_all_or_none() -> None:
    h = executing()

    def actual(measure: str, month: str, value: int, **extra: object) -> cmd.MonthlyActual:
        currency = "EUR" if measure == "revenue" else None
        return cmd.MonthlyActual(
            measure=measure, month=month, value=D(value), currency=currency, source="erp:sap", **extra
        )

    # A bad one anywhere refuses them all, naming it; the plan is left as it was.
    error = h.refused(
        cmd.RecordActuals,
        "erp",
        "unknown_measure",
        actuals=(actual("S1", "2027-01", 10), actual("S9", "2027-01", 1), actual("M1", "2027-01", 10)),
    )
    assert error.message.startswith("actual 2 of 3 (S9 for 2027-01): 'S9' is neither revenue nor a CSF")
    assert error.message.endswith("none of the command's actuals were recorded")
    # Each is decided on the plan as the ones before left it: a correction of an actual in the same
    # command, then a second record of the same month, which is refused.
    events = h.do(
        cmd.RecordActuals,
        "erp",
        actuals=(
            actual("S1", "2027-01", 10),
            actual("S1", "2027-01", 4, correction=True, reason="double-counted visits"),
            actual("M1", "2027-01", 4),
        ),
    )
    assert [e.type for e in events] == [
        "ActualRecorded",
        "ActualCorrected",
        "DeviationOpened",
        "ActualRecorded",
        "DeviationOpened",
    ]
    assert [(a.entry_id, a.measure, a.corrects) for a in h.state.actuals] == [
        ("A1", "S1", None),
        ("A2", "S1", "A1"),
        ("A3", "M1", None),
    ]
    assert [d.deviation_id for d in h.state.deviations] == ["D1", "D2"]
    assert {e.actor for e in events} == {"erp"}
    exists = h.refused(cmd.RecordActuals, "erp", "actual_exists", actuals=(actual("M1", "2027-01", 9),))
    assert "mark this actual as a correction and give a reason" in exists.message  # not "send CorrectActual"
    h.refused(
        cmd.RecordActuals,
        "erp",
        "reason_required",
        actuals=(actual("M1", "2027-01", 9, correction=True),),
    )
    with pytest.raises(ValueError, match="at least 1 item"):
        cmd.RecordActuals(actor="erp", at=h.now, actuals=())
