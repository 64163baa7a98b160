"""Approval gates: submission, single/quorum/parallel gates, stale revisions, delegation, SoD, reopen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from domain import BudgetCut, CounterProposal, Gate, GateMode, Money, Phase, TargetChange, decide
from domain import commands as cmd
from domain import events as ev
from tests.domain.factory import (
    AUTHOR,
    COUNTRY,
    GLOBAL,
    REGION,
    T0,
    Harness,
    chain,
    content,
    drafted,
    eur,
    executing,
    in_execution_planning,
    open_plan,
    signed_off,
    submitted,
)


def test_a_plan_is_opened_once_and_nothing_happens_before() -> None:
    h = Harness()
    h.refused(cmd.SubmitForApproval, AUTHOR, "plan_not_opened")
    h.run(open_plan())
    assert h.state.phase is Phase.DRAFTING and h.state.iteration == 1
    with pytest.raises(Exception) as caught:
        h.run(open_plan())
    assert getattr(caught.value, "code", None) == "plan_already_opened"


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"authors": ()}, "invalid_command"),
        ({"cycle_id": "FY2028"}, "invalid_command"),
        ({"approval_chain": ()}, "invalid_chain"),
        ({"approval_chain": chain()[:1] * 2}, "invalid_chain"),
        ({"approval_chain": (chain()[0].model_copy(update={"approvers": ()}),)}, "invalid_chain"),
        ({"approval_chain": (chain()[0].model_copy(update={"approvers": ("a", "a")}),)}, "invalid_chain"),
        ({"approval_chain": (chain()[1].model_copy(update={"quorum": 4}),)}, "invalid_chain"),
        ({"approval_chain": (chain()[0].model_copy(update={"quorum": 1}),)}, "invalid_chain"),
        ({"approval_chain": (chain()[0].model_copy(update={"grace": timedelta(0)}),)}, "invalid_chain"),
        ({"approval_chain": (chain()[0].model_copy(update={"approvers": (AUTHOR,)}),)}, "invalid_chain"),
        ({"approval_chain": (chain()[0].model_copy(update={"fallback_approver": AUTHOR}),)}, "invalid_chain"),
    ],
)
def test_a_plan_whose_chain_could_never_sign_off_is_not_opened(
    overrides: dict[str, object], code: str
) -> None:
    with pytest.raises(Exception) as caught:
        decide(Harness().state, open_plan(**overrides))
    assert getattr(caught.value, "code", None) == code


def test_submission_is_by_an_author_of_the_latest_revision() -> None:
    h = Harness()
    h.run(open_plan())
    h.refused(cmd.SubmitForApproval, AUTHOR, "no_revision")
    h.do(cmd.ReviseStrategy, AUTHOR, content=content(), reason="draft")
    h.do(cmd.ReviseStrategy, AUTHOR, content=content(scale=1100), reason="more")
    h.refused(cmd.SubmitForApproval, "intern", "not_plan_author")
    h.refused(cmd.SubmitForApproval, AUTHOR, "stale_revision", revision=1)
    submitted_ = h.do(cmd.SubmitForApproval, AUTHOR, revision=2)[0]
    assert isinstance(submitted_, ev.PlanSubmitted) and submitted_.gate_id == "country:DE"
    assert submitted_.due_at == datetime(2026, 10, 15, tzinfo=UTC)
    h.refused(cmd.SubmitForApproval, AUTHOR, "plan_in_review")


def test_no_decision_without_a_submission() -> None:
    h = drafted()
    h.refused(cmd.ApprovePlan, COUNTRY, "not_in_review", content_hash=h.state.revisions[-1].content_hash)


def test_a_decision_on_a_stale_revision_is_refused() -> None:
    h = submitted()
    error = h.refused(cmd.ApprovePlan, COUNTRY, "stale_revision", content_hash="0" * 64)
    assert "revision 1" in error.message


def test_gates_are_decided_in_order_by_their_own_approvers() -> None:
    h = submitted()
    error = h.refused(cmd.ApprovePlan, GLOBAL[0], "not_your_gate", content_hash=h.submitted_hash)
    assert "Global leadership" in error.message and COUNTRY in error.message
    h.refused(cmd.ApprovePlan, "stranger", "not_your_gate", content_hash=h.submitted_hash)
    h.refused(
        cmd.ApprovePlan, "stranger", "not_your_gate", content_hash=h.submitted_hash, on_behalf_of=COUNTRY
    )


def test_a_quorum_gate_passes_at_its_quorum_and_an_approver_decides_once() -> None:
    h = submitted()
    h.do(cmd.ApprovePlan, COUNTRY, content_hash=h.submitted_hash)
    assert [e.type for e in h.do(cmd.ApprovePlan, REGION[2], content_hash=h.submitted_hash)] == [
        "ApprovalRecorded"
    ]
    h.refused(cmd.ApprovePlan, REGION[2], "already_decided", content_hash=h.submitted_hash)
    passed = h.do(cmd.ApprovePlan, REGION[0], content_hash=h.submitted_hash)
    assert [e.type for e in passed] == ["ApprovalRecorded", "GatePassed"]
    assert h.state.gate is not None and h.state.gate.index == 2


def test_a_parallel_gate_needs_every_approver_and_the_last_gate_signs_off() -> None:
    h = submitted()
    for approver in (COUNTRY, REGION[0], REGION[1], GLOBAL[0]):
        h.do(cmd.ApprovePlan, approver, content_hash=h.submitted_hash)
    assert h.state.phase is Phase.IN_REVIEW
    signed = h.do(cmd.ApprovePlan, GLOBAL[1], content_hash=h.submitted_hash)
    assert isinstance(signed[-1], ev.PlanSignedOff) and signed[-1].revision == 1
    assert h.state.phase is Phase.APPROVED


def test_nobody_approves_a_plan_they_wrote_or_edited() -> None:
    h = Harness()
    h.run(open_plan())
    h.do(cmd.ReviseStrategy, AUTHOR, content=content(), reason="draft")
    h.do(cmd.ReviseStrategy, COUNTRY, content=content(scale=1100), reason="country tweaks")
    h.do(cmd.SubmitForApproval, AUTHOR)
    error = h.refused(cmd.ApprovePlan, COUNTRY, "segregation_of_duties", content_hash=h.submitted_hash)
    assert "segregation of duties" in error.message


def test_an_author_who_is_also_an_approver_cannot_decide_on_their_plan() -> None:
    gates = (chain()[1],)
    h = Harness()
    h.run(open_plan(authors=(AUTHOR, REGION[0]), approval_chain=gates))
    h.do(cmd.ReviseStrategy, AUTHOR, content=content(), reason="draft")
    h.do(cmd.SubmitForApproval, AUTHOR)
    h.refused(cmd.ApprovePlan, REGION[0], "segregation_of_duties", content_hash=h.submitted_hash)


def test_a_delegate_decides_for_the_approver_while_the_delegation_lasts_and_both_are_recorded() -> None:
    h = submitted()
    ends = h.now + timedelta(days=3)
    h.do(cmd.DelegateApproval, COUNTRY, delegate="deputy", starts=h.now, ends=ends)
    approved = h.do(cmd.ApprovePlan, "deputy", content_hash=h.submitted_hash, on_behalf_of=COUNTRY)
    assert (approved[0].actor, approved[0].on_behalf_of, approved[0].approver) == ("deputy", COUNTRY, COUNTRY)
    assert h.state.decisions[-1].approver == COUNTRY and h.state.decisions[-1].actor == "deputy"
    h.at(ends)
    h.refused(cmd.ApprovePlan, "deputy", "not_your_gate", content_hash=h.submitted_hash)


@pytest.mark.parametrize(
    ("actor", "delegate", "days", "code"),
    [
        ("stranger", "deputy", 3, "invalid_delegation"),
        (COUNTRY, COUNTRY, 3, "invalid_delegation"),
        (COUNTRY, "deputy", 0, "invalid_delegation"),
        (COUNTRY, AUTHOR, 3, "invalid_delegation"),
    ],
)
def test_invalid_delegations_are_refused(actor: str, delegate: str, days: int, code: str) -> None:
    h = submitted()
    h.refused(cmd.DelegateApproval, actor, code, delegate=delegate, starts=T0, ends=T0 + timedelta(days=days))


def test_a_delegate_who_edited_the_plan_still_cannot_approve_it() -> None:
    h = Harness()
    h.run(open_plan())
    h.do(cmd.ReviseStrategy, AUTHOR, content=content(), reason="draft")
    h.do(cmd.DelegateApproval, COUNTRY, delegate="deputy", starts=T0, ends=T0 + timedelta(days=90))
    h.do(cmd.ReviseStrategy, "deputy", content=content(scale=1100), reason="helping out")
    h.do(cmd.SubmitForApproval, AUTHOR)
    h.refused(cmd.ApprovePlan, "deputy", "segregation_of_duties", content_hash=h.submitted_hash)


def test_changes_requested_return_the_plan_to_the_author_who_must_change_it() -> None:
    h = submitted()
    h.refused(cmd.RequestChanges, COUNTRY, "reason_required", content_hash=h.submitted_hash, comment="")
    h.do(cmd.RequestChanges, COUNTRY, content_hash=h.submitted_hash, comment="Be bolder")
    assert h.state.phase is Phase.CHANGES_REQUESTED and h.state.counter_proposal is None
    h.refused(cmd.AcceptCounterProposal, AUTHOR, "no_counter_proposal")
    h.refused(cmd.SubmitForApproval, AUTHOR, "no_change")
    h.do(cmd.ReviseStrategy, AUTHOR, content=content(scale=1300), reason="bolder")
    h.do(cmd.SubmitForApproval, AUTHOR)
    assert h.state.gate is not None and h.state.gate.index == 0 and h.state.submission.revision == 2  # type: ignore[union-attr]


def test_a_counter_proposal_becomes_the_next_revision_when_accepted() -> None:
    h = submitted()
    proposal = CounterProposal(
        target_changes=(TargetChange(goal_id="G-LOGOS", absolute=Decimal(5)),),
        budget_cuts=(
            BudgetCut(line_id="B-TRAVEL", amount=eur(10000)),
            BudgetCut(line_id="B-HEADCOUNT", percent=Decimal(5)),
        ),
        programs_to_drop=("P-FAIR",),
        comment="leaner",
    )
    h.do(
        cmd.RequestChanges,
        COUNTRY,
        content_hash=h.submitted_hash,
        comment="leaner",
        counter_proposal=proposal,
    )
    h.refused(cmd.AcceptCounterProposal, "intern", "not_plan_author")
    h.do(cmd.AcceptCounterProposal, AUTHOR)
    revision = h.state.revisions[-1]
    assert revision.content.goal("G-LOGOS").target == Decimal(45)  # type: ignore[union-attr]
    assert {b.line_id: b.amount.amount for b in revision.content.budget} == {
        "B-TRAVEL": Decimal(50000),
        "B-MARKETING": Decimal(150000),
        "B-HEADCOUNT": Decimal(380000),
    }
    assert revision.diff.programs_dropped == ("P-FAIR",)
    assert "accepted the counter-proposal of de-country-mgr" in revision.reason


@pytest.mark.parametrize(
    ("proposal", "code"),
    [
        (CounterProposal(programs_to_drop=("P-NOPE",)), "unknown_reference"),
        (
            CounterProposal(target_changes=(TargetChange(goal_id="G-NOPE", percent=Decimal(1)),)),
            "unknown_reference",
        ),
        (
            CounterProposal(budget_cuts=(BudgetCut(line_id="B-NOPE", percent=Decimal(1)),)),
            "unknown_reference",
        ),
        (CounterProposal(target_changes=(TargetChange(goal_id="G-REV"),)), "invalid_counter_proposal"),
        (CounterProposal(budget_cuts=(BudgetCut(line_id="B-TRAVEL"),)), "invalid_counter_proposal"),
        (
            CounterProposal(
                budget_cuts=(BudgetCut(line_id="B-TRAVEL", amount=Money(amount=Decimal(1), currency="USD")),)
            ),
            "invalid_counter_proposal",
        ),
        (CounterProposal(comment="just a comment"), "invalid_counter_proposal"),
    ],
)
def test_a_counter_proposal_must_be_concrete(proposal: CounterProposal, code: str) -> None:
    h = submitted()
    h.refused(
        cmd.RequestChanges,
        COUNTRY,
        code,
        content_hash=h.submitted_hash,
        comment="c",
        counter_proposal=proposal,
    )


def test_a_rejection_needs_a_reason() -> None:
    h = submitted()
    h.refused(cmd.RejectPlan, COUNTRY, "reason_required", content_hash=h.submitted_hash, reason=" ")
    rejected = h.do(cmd.RejectPlan, COUNTRY, content_hash=h.submitted_hash, reason="wrong market")
    assert isinstance(rejected[0], ev.PlanRejected) and h.state.phase is Phase.REJECTED
    h.refused(cmd.SubmitForApproval, AUTHOR, "wrong_phase")


def test_leadership_reopens_a_signed_off_plan_with_a_reason() -> None:
    h = in_execution_planning()
    h.refused(cmd.ReopenPlan, COUNTRY, "not_leadership", reason="second thoughts")
    h.refused(cmd.ReopenPlan, GLOBAL[0], "reason_required", reason="")
    h.do(cmd.ReopenPlan, GLOBAL[0], reason="Market collapsed in Q4")
    assert h.state.phase is Phase.REOPENED and h.state.signed_off_revision is None
    assert h.state.sales_lead is None and h.state.reopen_reasons == ("Market collapsed in Q4",)
    h.do(cmd.ReviseStrategy, AUTHOR, content=content(scale=800), reason="lower numbers")
    h.do(cmd.SubmitForApproval, AUTHOR)
    assert h.state.phase is Phase.IN_REVIEW


def test_an_executing_plan_is_not_reopened_and_a_draft_has_nothing_to_reopen() -> None:
    h = executing()
    error = h.refused(cmd.ReopenPlan, GLOBAL[0], "strategy_frozen", reason="change")
    assert "RefineStrategy" in error.message
    drafted().refused(cmd.ReopenPlan, GLOBAL[0], "wrong_phase", reason="change")


def test_a_cancelled_or_closed_plan_takes_no_further_commands() -> None:
    h = signed_off()
    h.refused(cmd.CancelPlan, "intern", "not_plan_author", reason="no")
    h.refused(cmd.CancelPlan, AUTHOR, "reason_required", reason="")
    h.do(cmd.CancelPlan, AUTHOR, reason="unit merged into DE-ROBOTICS")
    assert h.state.phase is Phase.CANCELLED
    error = h.refused(cmd.ReviseStrategy, AUTHOR, "plan_closed", content=content(), reason="x")
    assert "unit merged" in error.message
    h2 = drafted()
    h2.refused(cmd.ClosePlan, "system:cycle", "reason_required", reason="")
    h2.do(cmd.ClosePlan, "system:cycle", reason="cycle FY2027 closed")
    assert h2.state.phase is Phase.CLOSED


def test_a_resubmission_after_the_calendar_deadline_still_gets_time() -> None:
    gate = Gate(
        gate_id="g", name="g", approvers=("x",), mode=GateMode.SINGLE, deadline=T0, fallback_approver="y"
    )
    assert gate.due_at(T0 - timedelta(days=1)) == T0
    assert gate.due_at(T0 + timedelta(days=1)) == T0 + timedelta(days=6)
    assert gate.required_approvals() == 1
