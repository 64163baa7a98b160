"""decide(state, command) -> events: the plan's rules. Pure: no I/O, no clock, no randomness.

This module holds the dispatch and the strategy and approval rules; execution, tracking and learning rules
live in domain.execution_rules, the clock in domain.clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from domain import commands as cmd
from domain import events as ev
from domain.approval import Decision, Gate, apply_counter_proposal, check_chain, check_counter_proposal
from domain.clock import decide_tick
from domain.commands import Command
from domain.errors import DomainError, ErrorCode
from domain.events import Event
from domain.execution_rules import EXECUTION_DECIDERS
from domain.rules import (
    calendar_of,
    leadership,
    meta,
    refuse_strategy_edit,
    require_author,
    require_phase,
    require_text,
    revision_event,
)
from domain.state import TERMINAL_PHASES, Phase, PlanState
from domain.strategy import RevisionSource, missing_for_submission


def decide(state: PlanState, command: Command) -> list[Event]:
    """The events `command` produces against `state`, or a DomainError saying why not and what to do
    instead."""
    if isinstance(command, cmd.OpenPlan):
        return _open_plan(state, command)
    if state.phase is None:
        raise DomainError(
            ErrorCode.PLAN_NOT_OPENED, "this plan has not been opened yet; send OpenPlan with its cycle first"
        )
    if state.phase in TERMINAL_PHASES:
        raise DomainError(
            ErrorCode.PLAN_CLOSED,
            f"the plan is {state.phase.value} ({state.end_reason}); it takes no further commands. Work on "
            "the plan of the next cycle instead",
        )
    handler = _DECIDERS.get(command.type) or EXECUTION_DECIDERS[command.type]
    return handler(state, command)


# -- opening and lifecycle -----------------------------------------------------------------------------------


def _open_plan(state: PlanState, c: cmd.OpenPlan) -> list[Event]:
    if state.phase is not None:
        raise DomainError(
            ErrorCode.PLAN_ALREADY_OPENED,
            f"the plan of {state.unit_id} in {state.cycle_id} is already open; send commands to it instead",
        )
    if not c.authors or any(not a.strip() for a in c.authors):
        raise DomainError(
            ErrorCode.INVALID_COMMAND, "a plan needs at least one named author; name the unit head"
        )
    if c.calendar.cycle_id != c.cycle_id:
        raise DomainError(
            ErrorCode.INVALID_COMMAND,
            f"the calendar belongs to cycle {c.calendar.cycle_id}, not {c.cycle_id}; send the cycle's own "
            "calendar",
        )
    check_chain(c.approval_chain, c.authors)
    return [
        ev.PlanOpened(
            **meta(c),
            cycle_id=c.cycle_id,
            unit_id=c.unit_id,
            authors=c.authors,
            currency=c.currency,
            calendar=c.calendar,
            approval_chain=c.approval_chain,
            thresholds=c.thresholds,
        )
    ]


def _reopen(state: PlanState, c: cmd.ReopenPlan) -> list[Event]:
    if state.phase in (Phase.EXECUTING, Phase.LEARNING):
        raise DomainError(
            ErrorCode.STRATEGY_FROZEN,
            "the plan is executing, so its strategy is frozen and cannot be reopened; record lessons and "
            "change the strategy through RefineStrategy after the period closes",
        )
    require_phase(
        state, c, (Phase.APPROVED, Phase.EXECUTION_PLANNING), "only a signed-off plan can be reopened"
    )
    if c.actor not in leadership(state):
        raise DomainError(
            ErrorCode.NOT_LEADERSHIP,
            f"only the signing-off leadership ({', '.join(sorted(leadership(state)))}) can reopen a "
            "signed-off "
            "plan; ask them to",
        )
    require_text(c.reason, "a reason for reopening")
    assert state.signed_off_revision is not None
    return [ev.PlanReopened(**meta(c), reason=c.reason, revision=state.signed_off_revision)]


def _cancel(state: PlanState, c: cmd.CancelPlan) -> list[Event]:
    if c.actor not in state.authors and c.actor not in leadership(state):
        raise DomainError(
            ErrorCode.NOT_PLAN_AUTHOR,
            "only the plan's authors or its signing-off leadership can cancel it; ask one of them",
        )
    require_text(c.reason, "a reason for cancelling")
    return [ev.PlanCancelled(**meta(c), reason=c.reason)]


def _close(state: PlanState, c: cmd.ClosePlan) -> list[Event]:
    require_text(c.reason, "a reason for closing")
    return [ev.PlanClosed(**meta(c), reason=c.reason)]


# -- strategy revisions --------------------------------------------------------------------------------------


def _revise(state: PlanState, c: cmd.ReviseStrategy) -> list[Event]:
    refuse_strategy_edit(state)
    return [revision_event(state, c, c.content, c.reason, calendar_of(state).months())]


def _accept_counter_proposal(state: PlanState, c: cmd.AcceptCounterProposal) -> list[Event]:
    pending = state.counter_proposal
    if state.phase is not Phase.CHANGES_REQUESTED or pending is None:
        raise DomainError(
            ErrorCode.NO_COUNTER_PROPOSAL,
            "there is no open counter-proposal to accept; revise the plan yourself with ReviseStrategy",
        )
    require_author(state, c, "accept a counter-proposal")
    base = state.revision(pending.revision)
    assert base is not None
    content = apply_counter_proposal(base.content, pending.proposal)
    reason = c.reason or f"accepted the counter-proposal of {pending.proposed_by}: {pending.proposal.comment}"
    return [
        revision_event(
            state,
            c,
            content,
            reason,
            calendar_of(state).months(),
            source=RevisionSource.COUNTER_PROPOSAL,
            counter_proposal_by=pending.proposed_by,
        )
    ]


# -- approval --------------------------------------------------------------------------------------


def _submit(state: PlanState, c: cmd.SubmitForApproval) -> list[Event]:
    if state.phase is Phase.IN_REVIEW:
        raise DomainError(
            ErrorCode.PLAN_IN_REVIEW, "the plan is already in review; wait for the current gate's decision"
        )
    require_phase(
        state,
        c,
        (Phase.DRAFTING, Phase.CHANGES_REQUESTED, Phase.REOPENED),
        "a plan is submitted from a draft, after changes were requested, or after it was reopened",
    )
    require_author(state, c, "submit the plan")
    latest = state.latest_revision
    if latest is None:
        raise DomainError(
            ErrorCode.NO_REVISION, "there is no revision to submit; record one with ReviseStrategy"
        )
    if c.revision is not None and c.revision != latest.number:
        raise DomainError(
            ErrorCode.STALE_REVISION,
            f"revision {c.revision} is not the latest (revision {latest.number} is); review it and submit "
            "that",
        )
    sent_back = [
        d.revision
        for d in state.decisions
        if d.revision == latest.number and d.decision is not Decision.APPROVED
    ]
    if state.phase is Phase.CHANGES_REQUESTED and sent_back:
        raise DomainError(
            ErrorCode.NO_CHANGE,
            f"revision {latest.number} was sent back with requested changes; revise it or accept the "
            "counter-proposal before submitting again",
        )
    months = calendar_of(state).months()
    missing = missing_for_submission(latest.content, months)
    if missing:
        raise DomainError(
            ErrorCode.INCOMPLETE_PLAN,
            f"revision {latest.number} cannot be submitted yet, it lacks: {'; '.join(missing)}. Complete it "
            "with ReviseStrategy",
        )
    first = state.approval_chain[0]
    return [
        ev.PlanSubmitted(
            **meta(c),
            revision=latest.number,
            content_hash=latest.content_hash,
            gate_index=0,
            gate_id=first.gate_id,
            due_at=first.due_at(c.at),
        )
    ]


def _seat(state: PlanState, c: cmd.ApprovePlan | cmd.RequestChanges | cmd.RejectPlan) -> tuple[Gate, str]:
    """The gate in review and the approver seat the actor decides for (their own, or a delegated one)."""
    if state.phase is not Phase.IN_REVIEW or state.gate is None or state.submission is None:
        raise DomainError(
            ErrorCode.NOT_IN_REVIEW,
            "no revision is awaiting approval, so there is nothing to decide; the author must submit first",
        )
    if c.content_hash != state.submission.content_hash:
        raise DomainError(
            ErrorCode.STALE_REVISION,
            f"you decided on content {c.content_hash[:12]}, but revision {state.submission.revision} "
            f"({state.submission.content_hash[:12]}) is the one in review; open it and decide on that",
        )
    gate = state.approval_chain[state.gate.index]
    seats = list(gate.approvers)
    if state.gate.escalated and gate.fallback_approver not in seats:
        seats.append(gate.fallback_approver)
    delegated = {d.approver for d in state.active_delegations(c.at) if d.delegate == c.actor}
    if c.on_behalf_of is not None:
        seat = (
            c.on_behalf_of
            if c.on_behalf_of in seats and (c.on_behalf_of == c.actor or c.on_behalf_of in delegated)
            else None
        )
    elif c.actor in seats:
        seat = c.actor
    else:
        open_seats = [s for s in seats if s in delegated and s not in state.gate.approved_by]
        seat = open_seats[0] if open_seats else next((s for s in seats if s in delegated), None)
    if seat is None:
        later = [g.name for g in state.approval_chain[state.gate.index + 1 :] if c.actor in g.approvers]
        hint = f"you decide later, at {later[0]}, once this gate passes" if later else "ask one of them"
        raise DomainError(
            ErrorCode.NOT_YOUR_GATE,
            f"the plan is at gate '{gate.name}', decided by {', '.join(seats)}; {hint}",
        )
    editors = set(state.authors) | set(state.iteration_editors)
    if seat in editors or c.actor in editors:
        raise DomainError(
            ErrorCode.SEGREGATION_OF_DUTIES,
            "you wrote or edited this plan, so you cannot decide on it (segregation of duties); ask another "
            f"approver of '{gate.name}' or delegate your seat to someone independent",
        )
    return gate, seat


def _approve(state: PlanState, c: cmd.ApprovePlan) -> list[Event]:
    gate, seat = _seat(state, c)
    progress, submission = state.gate, state.submission
    assert progress is not None and submission is not None
    if seat in progress.approved_by:
        raise DomainError(
            ErrorCode.ALREADY_DECIDED,
            f"{seat} already approved revision {submission.revision} at '{gate.name}'; wait for the other "
            "approvers",
        )
    envelope = meta(c, on_behalf_of=seat if seat != c.actor else None)
    out: list[Event] = [
        ev.ApprovalRecorded(
            **envelope,
            gate_index=progress.index,
            gate_id=gate.gate_id,
            approver=seat,
            revision=submission.revision,
            content_hash=submission.content_hash,
        )
    ]
    # An escalated gate's fallback approver stands in for the whole gate.
    fallback_decides = progress.escalated and seat == gate.fallback_approver
    if not fallback_decides and len(progress.approved_by) + 1 < gate.required_approvals():
        return out
    following = progress.index + 1
    if following < len(state.approval_chain):
        next_gate = state.approval_chain[following]
        out.append(
            ev.GatePassed(
                **envelope,
                gate_index=progress.index,
                gate_id=gate.gate_id,
                next_gate_index=following,
                next_gate_id=next_gate.gate_id,
                next_due_at=next_gate.due_at(c.at),
            )
        )
        return out
    out.append(
        ev.GatePassed(
            **envelope,
            gate_index=progress.index,
            gate_id=gate.gate_id,
            next_gate_index=None,
            next_gate_id=None,
            next_due_at=None,
        )
    )
    out.append(
        ev.PlanSignedOff(**envelope, revision=submission.revision, content_hash=submission.content_hash)
    )
    return out


def _request_changes(state: PlanState, c: cmd.RequestChanges) -> list[Event]:
    gate, seat = _seat(state, c)
    progress, submission = state.gate, state.submission
    assert progress is not None and submission is not None
    require_text(c.comment, "a comment saying what should change")
    if c.counter_proposal is not None:
        submitted = state.revision(submission.revision)
        assert submitted is not None
        check_counter_proposal(c.counter_proposal, submitted.content)
    return [
        ev.ChangesRequested(
            **meta(c, on_behalf_of=seat if seat != c.actor else None),
            gate_index=progress.index,
            gate_id=gate.gate_id,
            approver=seat,
            revision=submission.revision,
            content_hash=submission.content_hash,
            comment=c.comment,
            counter_proposal=c.counter_proposal,
        )
    ]


def _reject(state: PlanState, c: cmd.RejectPlan) -> list[Event]:
    gate, seat = _seat(state, c)
    progress, submission = state.gate, state.submission
    assert progress is not None and submission is not None
    require_text(c.reason, "a reason for rejecting")
    return [
        ev.PlanRejected(
            **meta(c, on_behalf_of=seat if seat != c.actor else None),
            gate_index=progress.index,
            gate_id=gate.gate_id,
            approver=seat,
            revision=submission.revision,
            content_hash=submission.content_hash,
            reason=c.reason,
        )
    ]


def _delegate(state: PlanState, c: cmd.DelegateApproval) -> list[Event]:
    seats = {a for g in state.approval_chain for a in (*g.approvers, g.fallback_approver)}
    if c.actor not in seats:
        raise DomainError(
            ErrorCode.INVALID_DELEGATION,
            "only an approver of this plan's chain can delegate their seat; the delegate acts for you, "
            "so ask the approver to delegate",
        )
    problem = None
    if c.delegate == c.actor or not c.delegate.strip():
        problem = "name someone other than yourself as delegate"
    elif c.ends <= c.starts:
        problem = "the delegation must end after it starts"
    elif c.delegate in state.authors or c.delegate in state.iteration_editors:
        problem = (
            f"{c.delegate} wrote or edited this plan and cannot decide on it; choose someone independent"
        )
    if problem:
        raise DomainError(ErrorCode.INVALID_DELEGATION, problem)
    return [
        ev.ApprovalDelegated(**meta(c), approver=c.actor, delegate=c.delegate, starts=c.starts, ends=c.ends)
    ]


_DECIDERS: dict[str, Callable[[PlanState, Any], list[Event]]] = {
    "ReviseStrategy": _revise,
    "SubmitForApproval": _submit,
    "ApprovePlan": _approve,
    "RequestChanges": _request_changes,
    "RejectPlan": _reject,
    "AcceptCounterProposal": _accept_counter_proposal,
    "DelegateApproval": _delegate,
    "ReopenPlan": _reopen,
    "CancelPlan": _cancel,
    "ClosePlan": _close,
    "Tick": decide_tick,
}
