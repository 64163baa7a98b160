"""Tracking during execution: actuals, status by thresholds, deviations, year-end extrapolation, reports,
reviews."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from pydantic import Field, model_validator

from domain.base import Amount, DomainModel, Month, UtcDateTime

# The measure id of revenue; every other measure is a CSF id.
REVENUE = "revenue"
CENT = Decimal("0.01")


class MeasureStatus(StrEnum):
    ON_TRACK = "on_track"
    AT_RISK = "at_risk"
    OFF_TRACK = "off_track"
    NO_DATA = "no_data"


class StatusThresholds(DomainModel):
    """Attainment (actual / target) at or above `at_risk_below` is on track; below `off_track_below` off
    track."""

    at_risk_below: Amount = Decimal("0.95")
    off_track_below: Amount = Decimal("0.85")
    explanation_due_after: timedelta = timedelta(days=5)

    @model_validator(mode="after")
    def _ordered(self) -> StatusThresholds:
        if not (Decimal(0) < self.off_track_below <= self.at_risk_below):
            raise ValueError("thresholds need 0 < off_track_below <= at_risk_below")
        if self.explanation_due_after <= timedelta(0):
            raise ValueError("explanation_due_after must be positive")
        return self


def attainment(actual: Decimal, target: Decimal, higher_is_better: bool = True) -> Decimal:
    """How much of the target was reached, 1 = exactly on target."""
    if higher_is_better:
        if target == 0:
            return Decimal(1) if actual >= 0 else Decimal(0)
        return actual / target
    if actual <= 0:
        return Decimal(1) if target >= 0 else Decimal(0)
    return target / actual


def assess(
    actual: Decimal, target: Decimal, thresholds: StatusThresholds, higher_is_better: bool = True
) -> MeasureStatus:
    ratio = attainment(actual, target, higher_is_better)
    if ratio >= thresholds.at_risk_below:
        return MeasureStatus.ON_TRACK
    if ratio >= thresholds.off_track_below:
        return MeasureStatus.AT_RISK
    return MeasureStatus.OFF_TRACK


class ActualEntry(DomainModel):
    """One reported value. A correction is a further entry pointing at the one it corrects; nothing is
    erased."""

    entry_id: str
    measure: str
    month: Month
    value: Decimal
    source: str
    recorded_at: UtcDateTime
    recorded_by: str
    corrects: str | None = None
    reason: str | None = None


def current_actuals(entries: Sequence[ActualEntry]) -> dict[str, dict[str, Decimal]]:
    """measure -> month -> the latest value (corrections win)."""
    latest: dict[str, dict[str, Decimal]] = {}
    for entry in entries:
        latest.setdefault(entry.measure, {})[entry.month] = entry.value
    return latest


class Deviation(DomainModel):
    deviation_id: str
    measure: str
    month: Month
    owner: str
    actual: Decimal
    target: Decimal
    opened_at: UtcDateTime
    due_at: UtcDateTime
    explanation: str | None = None
    explained_at: UtcDateTime | None = None
    overdue_flagged: bool = False


def extrapolate_year_end(
    forecast: Mapping[str, Decimal], actuals: Mapping[str, Decimal], months: Sequence[str]
) -> Decimal:
    """Year-end outcome from the actuals so far, with the remaining months shaped by the forecast's profile.

    The run rate is actual / forecast over the reported months; the forecast of the months still to come is
    scaled by it, so a seasonal business is not extrapolated as if every month were alike.
    """
    reported = [m for m in months if m in actuals]
    remaining = [m for m in months if m not in actuals]
    actual_to_date = sum((actuals[m] for m in reported), Decimal(0))
    forecast_to_date = sum((forecast.get(m, Decimal(0)) for m in reported), Decimal(0))
    forecast_remaining = sum((forecast.get(m, Decimal(0)) for m in remaining), Decimal(0))
    if not reported:
        estimate = forecast_remaining
    elif forecast_to_date == 0:
        # No forecast to shape by: fall back to a flat run rate.
        estimate = actual_to_date + actual_to_date / len(reported) * len(remaining)
    else:
        estimate = actual_to_date + forecast_remaining * actual_to_date / forecast_to_date
    return estimate.quantize(CENT, rounding=ROUND_HALF_UP)


class MeasureLine(DomainModel):
    measure: str
    target: Decimal | None
    actual: Decimal | None
    status: MeasureStatus


class MonthlyReport(DomainModel):
    """The value object a monthly report is: everything the plan's readers need for one month."""

    month: Month
    currency: str
    revenue_actual: Decimal | None
    revenue_forecast: Decimal
    revenue_actual_to_date: Decimal
    revenue_forecast_to_date: Decimal
    year_end_extrapolation: Decimal
    year_end_forecast: Decimal
    measures: tuple[MeasureLine, ...]
    open_deviations: tuple[str, ...]


def measure_line(
    measure: str,
    target: Decimal | None,
    actual: Decimal | None,
    thresholds: StatusThresholds,
    higher_is_better: bool = True,
) -> MeasureLine:
    status = (
        MeasureStatus.NO_DATA
        if actual is None or target is None
        else assess(actual, target, thresholds, higher_is_better)
    )
    return MeasureLine(measure=measure, target=target, actual=actual, status=status)


def build_monthly_report(
    month: str,
    currency: str,
    months: Sequence[str],
    forecast: Mapping[str, Decimal],
    actuals: Mapping[str, Mapping[str, Decimal]],
    csf_lines: Sequence[MeasureLine],
    thresholds: StatusThresholds,
    open_deviations: Sequence[str],
) -> MonthlyReport:
    revenue = actuals.get(REVENUE, {})
    to_date = [m for m in months if m <= month]
    known = {m: v for m, v in revenue.items() if m <= month}
    return MonthlyReport(
        month=month,
        currency=currency,
        revenue_actual=revenue.get(month),
        revenue_forecast=forecast.get(month, Decimal(0)),
        revenue_actual_to_date=sum(known.values(), Decimal(0)),
        revenue_forecast_to_date=sum((forecast.get(m, Decimal(0)) for m in to_date), Decimal(0)),
        year_end_extrapolation=extrapolate_year_end(forecast, known, months),
        year_end_forecast=sum((forecast.get(m, Decimal(0)) for m in months), Decimal(0)),
        measures=(measure_line(REVENUE, forecast.get(month), revenue.get(month), thresholds), *csf_lines),
        open_deviations=tuple(open_deviations),
    )


class ImprovementAction(DomainModel):
    description: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    due: date


class QuarterlyReview(DomainModel):
    quarter: int
    held_at: UtcDateTime
    attendees: tuple[str, ...]
    csf_status: tuple[MeasureLine, ...]
    decisions: tuple[str, ...]
    improvement_actions: tuple[ImprovementAction, ...]
