"""Strategy content: the one-page rule, content checks, revisions, hashes and diffs."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain import (
    PAGE_WORD_LIMIT,
    DomainError,
    ForecastLine,
    Money,
    Phase,
    PlanContent,
    PlanState,
    StrategyChoices,
    content_hash,
    diff_content,
    initial_state,
)
from domain import commands as cmd
from domain.money import percent_change, quantize_like, totals_by_currency
from tests.domain.factory import (
    AUTHOR,
    COUNTRY,
    Harness,
    content,
    drafted,
    eur,
    executing,
    open_plan,
    signed_off,
    submitted,
)


def words(n: int) -> str:
    return " ".join(["word"] * n)


def test_a_choice_of_one_page_is_accepted_and_one_word_more_is_refused() -> None:
    h = Harness()
    h.run(open_plan())
    page = content(choices=StrategyChoices(how_to_win=words(PAGE_WORD_LIMIT)))
    h.do(cmd.ReviseStrategy, AUTHOR, content=page, reason="one page")
    too_long = content(choices=StrategyChoices(where_to_play=words(PAGE_WORD_LIMIT + 1)))
    error = h.refused(cmd.ReviseStrategy, AUTHOR, "page_limit_exceeded", content=too_long, reason="two pages")
    assert "where_to_play" in error.message and "501 words" in error.message and "500" in error.message


@pytest.mark.parametrize(
    ("change", "code", "hint"),
    [
        ({"goals": content().goals * 2}, "invalid_content", "G-REV"),
        ({"programs": content().programs[:1] * 2}, "invalid_content", "P-FAIR"),
        (
            {"forecast": (ForecastLine(month="2028-01", amount=Money(amount=Decimal(1), currency="EUR")),)},
            "invalid_content",
            "2028-01",
        ),
        (
            {
                "budget": tuple(
                    b.model_copy(update={"amount": Money(amount=Decimal(1), currency="USD")})
                    for b in content().budget
                )
            },
            "currency_mismatch",
            "USD",
        ),
    ],
)
def test_content_the_rules_cannot_work_with_is_refused(
    change: dict[str, object], code: str, hint: str
) -> None:
    h = Harness()
    h.run(open_plan())
    error = h.refused(cmd.ReviseStrategy, AUTHOR, code, content=content(**change), reason="draft")
    assert hint in error.message


def test_revisions_are_numbered_with_author_reason_hash_and_diff() -> None:
    h = drafted()
    cheaper = content(programs=content().programs[:2])
    h.do(cmd.ReviseStrategy, "controller", content=cheaper, reason="drop webinars")
    first, second = h.state.revisions
    assert (first.number, second.number) == (1, 2)
    assert (second.author, second.reason) == ("controller", "drop webinars")
    assert second.content_hash == content_hash(cheaper) != first.content_hash
    assert second.diff.programs_dropped == ("P-WEBINAR",) and second.diff.changed_fields == ("programs",)
    assert h.state.iteration_editors == (AUTHOR, "controller")


def test_an_identical_revision_or_one_without_reason_is_refused() -> None:
    h = drafted()
    h.refused(cmd.ReviseStrategy, AUTHOR, "no_change", content=content(), reason="again")
    h.refused(cmd.ReviseStrategy, AUTHOR, "reason_required", content=content(scale=2000), reason="  ")


def test_the_first_revision_is_diffed_against_an_empty_plan() -> None:
    diff = diff_content(None, content())
    assert "choices.how_to_win" in diff.changed_fields and "forecast" in diff.changed_fields
    assert all(c.old is None and c.change_pct is None for c in diff.target_changes)
    assert diff.programs_added == ("P-FAIR", "P-PARTNER", "P-WEBINAR")
    assert diff_content(content(), content()).is_empty


def test_the_diff_lists_each_changed_number_with_old_new_and_percent() -> None:
    diff = diff_content(content(scale=1000), content(scale=1250, goals=content(scale=1250).goals[:1]))
    assert [(c.key, c.old, c.new, c.change_pct) for c in diff.target_changes] == [
        ("G-LOGOS", Decimal(40), None, None),
        ("G-REV", Decimal(1200000), Decimal(1500000), Decimal("25.00")),
    ]
    assert {c.change_pct for c in diff.forecast_changes} == {Decimal("25.00")}


def test_the_content_hash_is_stable_and_sensitive_to_every_field() -> None:
    assert content_hash(content()) == content_hash(
        PlanContent.model_validate(content().model_dump(mode="json"))
    )
    assert content_hash(content()) != content_hash(content(choices=StrategyChoices(how_to_win="Cheaper")))
    assert len(content_hash(content())) == 64


@pytest.mark.parametrize(
    ("harness", "code", "hint"),
    [
        (submitted, "plan_in_review", "request changes"),
        (signed_off, "plan_signed_off", "ReopenPlan"),
        (executing, "strategy_frozen", "RefineStrategy"),
    ],
)
def test_the_strategy_is_edited_only_while_drafting(harness, code: str, hint: str) -> None:  # type: ignore[no-untyped-def]
    h = harness()
    error = h.refused(cmd.ReviseStrategy, AUTHOR, code, content=content(scale=3000), reason="change")
    assert hint in error.message


def test_submission_needs_a_complete_plan() -> None:
    gaps = content(
        choices=StrategyChoices(winning_aspiration="Win"), goals=(), forecast=content().forecast[:11]
    )
    h = drafted(gaps)
    error = h.refused(cmd.SubmitForApproval, AUTHOR, "incomplete_plan")
    assert (
        "choices.where_to_play" in error.message and "goals" in error.message and "2027-12" in error.message
    )


def test_a_rejected_plan_is_drafted_again() -> None:
    h = submitted()
    h.do(cmd.RejectPlan, COUNTRY, content_hash=h.submitted_hash, reason="Not our market")
    assert h.state.phase is Phase.REJECTED
    h.do(cmd.ReviseStrategy, AUTHOR, content=content(scale=900), reason="new approach")
    assert h.state.phase is Phase.DRAFTING


def test_money_never_mixes_currencies() -> None:
    assert eur(2) + eur(3) == eur(5) and eur(5) - eur(3) == eur(2)
    assert str(eur(5)) == "5 EUR" and Money.zero("USD").amount == 0
    with pytest.raises(DomainError) as caught:
        eur(1) + Money(amount=Decimal(1), currency="USD")
    assert caught.value.code == "currency_mismatch"
    with pytest.raises(DomainError):
        eur(1) - Money(amount=Decimal(1), currency="USD")
    assert totals_by_currency([eur(1), Money(amount=Decimal(2), currency="CHF"), eur(3)]) == {
        "CHF": Decimal(2),
        "EUR": Decimal(4),
    }
    assert percent_change(Decimal(0), Decimal(5)) is None and percent_change(
        Decimal(200), Decimal(150)
    ) == Decimal("-25.00")
    assert quantize_like(Decimal("110000.00"), Decimal("100000")) == Decimal("110000")
    assert repr(DomainError("x", "y")) == "DomainError('x', 'y')"


def test_the_plan_totals_and_the_calendar_quarters_read_from_the_content() -> None:
    plan = content()
    assert (plan.forecast_total(), plan.budget_total(), plan.program_cost_total()) == (
        Decimal(1200000),
        Decimal(610000),
        Decimal(150000),
    )
    h = drafted()
    assert h.state.calendar.quarter_ends() == ("2027-03", "2027-06", "2027-09", "2027-12")  # type: ignore[union-attr]
    assert initial_state() == PlanState.empty() and initial_state().phase is None
