"""evolve(state, event) -> state and replay(events): the one fold that the workflow, auditors and read models
share.

evolve never refuses: an event is a fact that was already decided. It only records it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from domain import events as ev
from domain.approval import Decision, Delegation, GateDecisionRecord
from domain.events import Event
from domain.scoring import Lesson, PlanScore
from domain.state import (
    GateProgress,
    IterationSummary,
    PendingCounterProposal,
    Phase,
    PlanState,
    Revision,
    Submission,
)
from domain.tracking import ActualEntry, Deviation

Updates = dict[str, Any]


def _opened(s: PlanState, e: ev.PlanOpened) -> Updates:
    return {
        "phase": Phase.DRAFTING,
        "cycle_id": e.cycle_id,
        "unit_id": e.unit_id,
        "authors": e.authors,
        "currency": e.currency,
        "calendar": e.calendar,
        "approval_chain": e.approval_chain,
        "thresholds": e.thresholds,
        "iteration": 1,
    }


def _revision(s: PlanState, e: ev.RevisionRecorded) -> Updates:
    revision = Revision(
        number=e.revision,
        iteration=e.iteration,
        author=e.actor,
        at=e.at,
        reason=e.reason,
        content=e.content,
        content_hash=e.content_hash,
        diff=e.diff,
        source=e.source,
        counter_proposal_by=e.counter_proposal_by,
        lesson_links=e.lesson_links,
    )
    editors = s.iteration_editors if e.actor in s.iteration_editors else (*s.iteration_editors, e.actor)
    return {
        "revisions": (*s.revisions, revision),
        "iteration_editors": editors,
        "counter_proposal": None,
        "phase": Phase.DRAFTING if s.phase is Phase.REJECTED else s.phase,
    }


def _record(
    s: PlanState, e: ev.ApprovalRecorded | ev.ChangesRequested | ev.PlanRejected, d: Decision
) -> GateDecisionRecord:
    return GateDecisionRecord(
        gate_index=e.gate_index,
        gate_id=e.gate_id,
        approver=e.approver,
        actor=e.actor,
        decision=d,
        revision=e.revision,
        content_hash=e.content_hash,
        at=e.at,
    )


def _submitted(s: PlanState, e: ev.PlanSubmitted) -> Updates:
    return {
        "phase": Phase.IN_REVIEW,
        "submission": Submission(revision=e.revision, content_hash=e.content_hash, submitted_at=e.at),
        "gate": GateProgress(index=e.gate_index, opened_at=e.at, due_at=e.due_at),
        "counter_proposal": None,
    }


def _approved(s: PlanState, e: ev.ApprovalRecorded) -> Updates:
    assert s.gate is not None
    gate = s.gate.model_copy(update={"approved_by": (*s.gate.approved_by, e.approver)})
    return {"decisions": (*s.decisions, _record(s, e, Decision.APPROVED)), "gate": gate}


def _gate_passed(s: PlanState, e: ev.GatePassed) -> Updates:
    if e.next_gate_index is None or e.next_due_at is None:
        return {"gate": None}
    return {"gate": GateProgress(index=e.next_gate_index, opened_at=e.at, due_at=e.next_due_at)}


def _signed_off(s: PlanState, e: ev.PlanSignedOff) -> Updates:
    return {"phase": Phase.APPROVED, "signed_off_revision": e.revision, "gate": None}


def _changes_requested(s: PlanState, e: ev.ChangesRequested) -> Updates:
    pending = (
        None
        if e.counter_proposal is None
        else PendingCounterProposal(
            proposal=e.counter_proposal, proposed_by=e.actor, gate_index=e.gate_index, revision=e.revision
        )
    )
    return {
        "phase": Phase.CHANGES_REQUESTED,
        "decisions": (*s.decisions, _record(s, e, Decision.CHANGES_REQUESTED)),
        "gate": None,
        "submission": None,
        "counter_proposal": pending,
    }


def _rejected(s: PlanState, e: ev.PlanRejected) -> Updates:
    return {
        "phase": Phase.REJECTED,
        "decisions": (*s.decisions, _record(s, e, Decision.REJECTED)),
        "gate": None,
        "submission": None,
    }


def _gate_flag(flag: str) -> Callable[[PlanState, Any], Updates]:
    def apply(s: PlanState, e: Any) -> Updates:
        assert s.gate is not None
        return {"gate": s.gate.model_copy(update={flag: True})}

    return apply


def _reopened(s: PlanState, e: ev.PlanReopened) -> Updates:
    # Execution planning was built on the targets being reopened, so it starts again after the next sign-off.
    return {
        "phase": Phase.REOPENED,
        "signed_off_revision": None,
        "submission": None,
        "sales_lead": None,
        "marketing_lead": None,
        "csfs": (),
        "aligned": (),
        "reopen_reasons": (*s.reopen_reasons, e.reason),
    }


def _csf_owner(s: PlanState, e: ev.CsfOwnerAssigned) -> Updates:
    csfs = tuple(
        c.model_copy(update={"owner": e.owner, "coach": e.coach}) if c.csf_id == e.csf_id else c
        for c in s.csfs
    )
    return {"csfs": csfs}


def _actual(s: PlanState, e: ev.ActualRecorded | ev.ActualCorrected) -> Updates:
    entry = ActualEntry(
        entry_id=e.entry_id,
        measure=e.measure,
        month=e.month,
        value=e.value,
        source=e.source,
        recorded_at=e.at,
        recorded_by=e.actor,
        corrects=e.corrects if isinstance(e, ev.ActualCorrected) else None,
        reason=e.reason if isinstance(e, ev.ActualCorrected) else None,
    )
    return {"actuals": (*s.actuals, entry)}


def _deviation_opened(s: PlanState, e: ev.DeviationOpened) -> Updates:
    deviation = Deviation(
        deviation_id=e.deviation_id,
        measure=e.measure,
        month=e.month,
        owner=e.owner,
        actual=e.actual,
        target=e.target,
        opened_at=e.at,
        due_at=e.due_at,
    )
    return {"deviations": (*s.deviations, deviation)}


def _update_deviation(s: PlanState, deviation_id: str, **changes: Any) -> Updates:
    return {
        "deviations": tuple(
            d.model_copy(update=changes) if d.deviation_id == deviation_id else d for d in s.deviations
        )
    }


def _refined(s: PlanState, e: ev.StrategyRefined) -> Updates:
    summary = IterationSummary(
        iteration=s.iteration,
        signed_off_revision=s.signed_off_revision,
        evidence=s.evidence,
        score=s.score,
        lessons=s.lessons,
    )
    fresh = PlanState()
    reset = [
        "iteration_editors",
        "submission",
        "gate",
        "counter_proposal",
        "signed_off_revision",
        "sales_lead",
        "marketing_lead",
        "csfs",
        "aligned",
        "actuals",
        "overdue_months",
        "reviews_due",
        "period_end_reached",
        "deviations",
        "reports",
        "reviews",
        "evidence",
        "score",
        "lessons",
    ]
    return {
        **{name: getattr(fresh, name) for name in reset},
        "phase": Phase.DRAFTING,
        "iteration": e.iteration,
        "calendar": e.calendar,
        "history": (*s.history, summary),
    }


_HANDLERS: dict[str, Callable[[PlanState, Any], Updates]] = {
    "PlanOpened": _opened,
    "RevisionRecorded": _revision,
    "PlanReopened": _reopened,
    "PlanCancelled": lambda s, e: {"phase": Phase.CANCELLED, "end_reason": e.reason},
    "PlanClosed": lambda s, e: {"phase": Phase.CLOSED, "end_reason": e.reason},
    "PlanSubmitted": _submitted,
    "ApprovalRecorded": _approved,
    "GatePassed": _gate_passed,
    "PlanSignedOff": _signed_off,
    "ChangesRequested": _changes_requested,
    "PlanRejected": _rejected,
    "ApprovalDelegated": lambda s, e: {
        "delegations": (*s.delegations, _delegation(e)),
    },
    "GateReminderSent": _gate_flag("reminded"),
    "GateEscalated": _gate_flag("escalated"),
    "ExecutionPlanningStarted": lambda s, e: {
        "phase": Phase.EXECUTION_PLANNING,
        "sales_lead": e.sales_lead,
        "marketing_lead": e.marketing_lead,
    },
    # Any change to the CSFs voids earlier confirmations: the leads confirmed a different joint plan.
    "CsfDefined": lambda s, e: {"csfs": (*s.csfs, e.csf), "aligned": ()},
    "CsfRemoved": lambda s, e: {"csfs": tuple(c for c in s.csfs if c.csf_id != e.csf_id), "aligned": ()},
    "CsfOwnerAssigned": _csf_owner,
    "AlignmentConfirmed": lambda s, e: {"aligned": (*s.aligned, e.team)},
    "ExecutionStarted": lambda s, e: {"phase": Phase.EXECUTING},
    "ActualRecorded": _actual,
    "ActualCorrected": _actual,
    "DeviationOpened": _deviation_opened,
    "DeviationExplained": lambda s, e: _update_deviation(
        s, e.deviation_id, explanation=e.explanation, explained_at=e.at
    ),
    "ActualsOverdue": lambda s, e: {"overdue_months": (*s.overdue_months, e.month)},
    "ExplanationOverdue": lambda s, e: _update_deviation(s, e.deviation_id, overdue_flagged=True),
    "QuarterlyReviewDue": lambda s, e: {"reviews_due": (*s.reviews_due, e.quarter)},
    "PeriodEndReached": lambda s, e: {"period_end_reached": True},
    "MonthlyReportIssued": lambda s, e: {"reports": (*s.reports, e.report)},
    "QuarterlyReviewHeld": lambda s, e: {"reviews": (*s.reviews, e.review)},
    "ExecutionPeriodClosed": lambda s, e: {"phase": Phase.LEARNING, "evidence": e.evidence},
    "PlanScored": lambda s, e: {"score": _score(e)},
    "LessonRecorded": lambda s, e: {"lessons": (*s.lessons, _lesson(e))},
    "StrategyRefined": _refined,
}


def _delegation(e: ev.ApprovalDelegated) -> Delegation:
    return Delegation(approver=e.approver, delegate=e.delegate, starts=e.starts, ends=e.ends)


def _score(e: ev.PlanScored) -> PlanScore:
    return PlanScore(
        plan_quality=e.plan_quality,
        execution_effectiveness=e.execution_effectiveness,
        results=e.results,
        rationale=e.rationale,
    )


def _lesson(e: ev.LessonRecorded) -> Lesson:
    return Lesson(lesson_id=e.lesson_id, text=e.text, category=e.category)


def evolve(state: PlanState, event: Event) -> PlanState:
    updates = _HANDLERS[event.type](state, event)
    return state.model_copy(update={**updates, "version": state.version + 1})


def replay(events: Iterable[Event], initial: PlanState | None = None) -> PlanState:
    state = initial if initial is not None else PlanState.empty()
    for event in events:
        state = evolve(state, event)
    return state
