"""Learning: results = plan quality x execution effectiveness, with evidence computed from the data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal

from pydantic import Field

from domain.base import DomainModel
from domain.money import HUNDRED
from domain.tracking import attainment

MAX_SCORE = 10
ONE_DECIMAL = Decimal("0.1")


class ScoreEvidence(DomainModel):
    """Computed at the close of the period so the review scores against facts, not memories."""

    csf_attainment_pct: Decimal | None  # mean attainment of CSF month targets, capped at 100% a month
    forecast_accuracy_pct: Decimal | None  # 100 - mean absolute percentage error of the revenue forecast
    months_reported: int
    suggested_plan_quality: int | None
    suggested_execution_effectiveness: int | None


class PlanScore(DomainModel):
    plan_quality: int = Field(ge=0, le=MAX_SCORE)
    execution_effectiveness: int = Field(ge=0, le=MAX_SCORE)
    results: int
    rationale: str


def results(plan_quality: int, execution_effectiveness: int) -> int:
    """9 x 4 = 36 and 6 x 8 = 48: execution matters as much as the plan."""
    return plan_quality * execution_effectiveness


def _to_score(pct: Decimal | None) -> int | None:
    if pct is None:
        return None
    return int((pct / 10).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def csf_attainment_pct(
    targets: Sequence[tuple[Decimal, Decimal, bool]],
) -> Decimal | None:
    """Mean of (actual, target, higher_is_better) attainments; overshooting one month does not buy another."""
    if not targets:
        return None
    ratios = [min(attainment(a, t, hib), Decimal(1)) for a, t, hib in targets]
    return (sum(ratios, Decimal(0)) / len(ratios) * HUNDRED).quantize(ONE_DECIMAL, rounding=ROUND_HALF_UP)


def forecast_accuracy_pct(forecast: Mapping[str, Decimal], actuals: Mapping[str, Decimal]) -> Decimal | None:
    errors = [abs(actuals[m] - f) / f for m, f in forecast.items() if m in actuals and f != 0]
    if not errors:
        return None
    mape = sum(errors, Decimal(0)) / len(errors) * HUNDRED
    return max(Decimal(0), HUNDRED - mape).quantize(ONE_DECIMAL, rounding=ROUND_HALF_UP)


def compute_evidence(
    csf_targets: Sequence[tuple[Decimal, Decimal, bool]],
    forecast: Mapping[str, Decimal],
    revenue_actuals: Mapping[str, Decimal],
) -> ScoreEvidence:
    csf_pct = csf_attainment_pct(csf_targets)
    accuracy = forecast_accuracy_pct(forecast, revenue_actuals)
    return ScoreEvidence(
        csf_attainment_pct=csf_pct,
        forecast_accuracy_pct=accuracy,
        months_reported=len(revenue_actuals),
        suggested_plan_quality=_to_score(accuracy),
        suggested_execution_effectiveness=_to_score(csf_pct),
    )


class Lesson(DomainModel):
    lesson_id: str
    text: str
    category: str = "general"


class LessonLink(DomainModel):
    """Ties one changed field of a refined strategy (a RevisionDiff field name) to the lesson behind it."""

    changed_field: str
    lesson_id: str
