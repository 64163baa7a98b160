"""Learning and refining: closing the period, scores with evidence, lessons, the refined next iteration."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from domain import LessonLink, Phase, StrategyChoices, results
from domain import commands as cmd
from domain.scoring import compute_evidence
from domain.strategy import ForecastLine
from tests.domain.factory import AUTHOR, PROFILE, Harness, content, eur, executing

PERIOD_END = datetime(2028, 1, 1, tzinfo=UTC)
NEXT_MONTHS = [f"2028-{m:02d}" for m in range(1, 13)]


def learning() -> Harness:
    h = executing()
    h.do(cmd.RecordActual, "crm", measure="S1", month="2027-01", value=Decimal(5), source="crm")
    h.at(PERIOD_END)
    h.do(cmd.CloseExecutionPeriod, AUTHOR)
    return h


def next_content(how_to_win: str | None = None) -> object:
    base = content()
    choices = base.choices.model_copy(update={"how_to_win": how_to_win}) if how_to_win else base.choices
    forecast = tuple(
        ForecastLine(month=m, amount=eur(p * 1000)) for m, p in zip(NEXT_MONTHS, PROFILE, strict=True)
    )
    return base.model_copy(update={"choices": choices, "forecast": forecast})


def test_results_are_quality_times_effectiveness() -> None:
    assert results(9, 4) == 36 and results(6, 8) == 48


def test_the_period_closes_only_after_it_ends_with_computed_evidence() -> None:
    h = executing()
    h.at(datetime(2027, 12, 31, tzinfo=UTC))
    error = h.refused(cmd.CloseExecutionPeriod, AUTHOR, "period_not_over")
    assert "2028-01-01" in error.message
    h = learning()
    assert h.state.phase is Phase.LEARNING
    assert h.state.evidence is not None and h.state.evidence.csf_attainment_pct == Decimal("50.0")
    assert (
        h.state.evidence.forecast_accuracy_pct is None
        and h.state.evidence.suggested_execution_effectiveness == 5
    )


def test_evidence_caps_overshoot_and_floors_accuracy() -> None:
    evidence = compute_evidence(
        [(Decimal(20), Decimal(10), True), (Decimal(5), Decimal(10), True)],
        {"a": Decimal(100), "b": Decimal(0)},
        {"a": Decimal(400), "b": Decimal(50)},
    )
    assert evidence.csf_attainment_pct == Decimal("75.0") and evidence.forecast_accuracy_pct == Decimal("0.0")
    assert compute_evidence([], {}, {}).suggested_plan_quality is None


def test_scores_are_0_to_10_set_once_by_the_review() -> None:
    h = learning()
    h.refused(cmd.ScorePlan, "review", "score_out_of_range", plan_quality=11, execution_effectiveness=5)
    h.refused(cmd.ScorePlan, "review", "score_out_of_range", plan_quality=5, execution_effectiveness=-1)
    h.refused(cmd.ScorePlan, AUTHOR, "segregation_of_duties", plan_quality=10, execution_effectiveness=10)
    scored = h.do(cmd.ScorePlan, "review", plan_quality=9, execution_effectiveness=4)
    assert scored[0].results == 36  # type: ignore[union-attr]
    h.refused(cmd.ScorePlan, "review", "already_scored", plan_quality=9, execution_effectiveness=4)
    executing().refused(cmd.ScorePlan, "review", "wrong_phase", plan_quality=9, execution_effectiveness=4)


def test_lessons_need_text() -> None:
    h = learning()
    h.refused(cmd.RecordLesson, AUTHOR, "invalid_command", text=" ")
    h.do(cmd.RecordLesson, AUTHOR, text="Start partner recruiting earlier")
    assert h.state.lessons[0].lesson_id == "I1-L1"


def test_refine_needs_a_score_and_a_lesson_behind_each_strategy_change() -> None:
    h = learning()
    h.do(cmd.RecordLesson, AUTHOR, text="Customers buy on speed")
    link = LessonLink(changed_field="choices.how_to_win", lesson_id="I1-L1")
    changed = next_content("Commissioned in two weeks.")
    h.refused(cmd.RefineStrategy, AUTHOR, "not_scored", content=changed, reason="r", lesson_links=(link,))
    h.do(cmd.ScorePlan, "review", plan_quality=6, execution_effectiveness=8)
    h.refused(
        cmd.RefineStrategy, "intern", "not_plan_author", content=changed, reason="r", lesson_links=(link,)
    )
    error = h.refused(
        cmd.RefineStrategy, AUTHOR, "unlinked_change", content=changed, reason="r", lesson_links=()
    )
    assert "choices.how_to_win" in error.message
    stray = LessonLink(changed_field="choices.capabilities", lesson_id="I1-L1")
    h.refused(
        cmd.RefineStrategy, AUTHOR, "unlinked_change", content=changed, reason="r", lesson_links=(link, stray)
    )
    unknown = LessonLink(changed_field="choices.how_to_win", lesson_id="I1-L9")
    h.refused(
        cmd.RefineStrategy, AUTHOR, "unknown_lesson", content=changed, reason="r", lesson_links=(unknown,)
    )
    h.refused(cmd.RefineStrategy, AUTHOR, "invalid_content", content=content(), reason="r", lesson_links=())
    events = h.do(cmd.RefineStrategy, AUTHOR, content=changed, reason="faster", lesson_links=(link,))
    assert [e.type for e in events] == ["StrategyRefined", "RevisionRecorded"]
    assert h.state.revisions[-1].lesson_links == (link,) and h.state.iteration == 2
    assert h.state.history[0].lessons[0].text == "Customers buy on speed"


def test_refine_may_bring_its_own_calendar() -> None:
    h = learning()
    h.do(cmd.ScorePlan, "review", plan_quality=6, execution_effectiveness=8)
    calendar = h.state.calendar.model_copy(update={"execution_start": "2028-01", "execution_months": 6})  # type: ignore[union-attr]
    half_year = next_content()
    half_year = half_year.model_copy(update={"forecast": half_year.forecast[:6]})  # type: ignore[attr-defined]
    h.do(
        cmd.RefineStrategy, AUTHOR, content=half_year, reason="half year", lesson_links=(), calendar=calendar
    )
    assert h.state.calendar == calendar


@pytest.mark.parametrize("phase_builder", [executing])
def test_refine_while_executing_points_at_closing_the_period(phase_builder) -> None:  # type: ignore[no-untyped-def]
    error = phase_builder().refused(
        cmd.RefineStrategy, AUTHOR, "strategy_frozen", content=content(), reason="r", lesson_links=()
    )
    assert "RefineStrategy" in error.message


def test_choices_are_plain_text_answers() -> None:
    assert StrategyChoices().how_to_win == ""
