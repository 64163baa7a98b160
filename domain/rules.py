"""Small guards shared by the decider modules: each raises a DomainError that says what to do instead."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from domain import events as ev
from domain.calendar import CycleCalendar
from domain.commands import CommandBase
from domain.errors import DomainError, ErrorCode
from domain.scoring import LessonLink
from domain.state import EDITABLE_PHASES, Phase, PlanState
from domain.strategy import PlanContent, RevisionSource, check_content, content_hash, diff_content


def meta(command: CommandBase, on_behalf_of: str | None = None) -> dict[str, Any]:
    """The envelope every event copies from its command."""
    return {
        "actor": command.actor,
        "at": command.at,
        "on_behalf_of": on_behalf_of if on_behalf_of is not None else command.on_behalf_of,
    }


def phases_text(phases: Collection[Phase]) -> str:
    return " or ".join(sorted(p.value for p in phases))


def require_phase(state: PlanState, command: CommandBase, allowed: Collection[Phase], todo: str) -> None:
    if state.phase not in allowed:
        current = state.phase.value if state.phase is not None else "not opened"
        raise DomainError(
            ErrorCode.WRONG_PHASE,
            f"{type(command).__name__} needs the plan to be {phases_text(allowed)}, but it is {current}; "
            f"{todo}",
        )


def require_text(value: str, what: str, code: ErrorCode = ErrorCode.REASON_REQUIRED) -> None:
    if not value.strip():
        raise DomainError(code, f"{what} is required; say it in a sentence so the history explains itself")


def require_author(state: PlanState, command: CommandBase, action: str) -> None:
    if command.actor not in state.authors:
        raise DomainError(
            ErrorCode.NOT_PLAN_AUTHOR,
            f"only the plan's authors ({', '.join(state.authors)}) can {action}; ask one of them to do it",
        )


def calendar_of(state: PlanState) -> CycleCalendar:
    assert state.calendar is not None, "an opened plan always has a calendar"
    return state.calendar


def leadership(state: PlanState) -> frozenset[str]:
    """The last gate's approvers and fallback: they sign off, and only they may reopen."""
    gate = state.last_gate
    assert gate is not None, "an opened plan always has an approval chain"
    return frozenset((*gate.approvers, gate.fallback_approver))


def refuse_strategy_edit(state: PlanState) -> None:
    """Why the strategy cannot be edited in the current phase, if it cannot."""
    if state.phase in EDITABLE_PHASES:
        return
    if state.phase in (Phase.EXECUTING, Phase.LEARNING):
        raise DomainError(
            ErrorCode.STRATEGY_FROZEN,
            "the strategy is frozen while the plan executes; adjust execution (CSF owners, actuals), record "
            "lessons, and change the strategy through RefineStrategy after the period closes",
        )
    if state.phase is Phase.IN_REVIEW:
        raise DomainError(
            ErrorCode.PLAN_IN_REVIEW,
            "the plan is in review at a gate; wait for the decision, or ask the approver to request changes",
        )
    raise DomainError(
        ErrorCode.PLAN_SIGNED_OFF,
        "the plan is signed off; ask leadership to reopen it (ReopenPlan, with a reason) before revising",
    )


def revision_event(
    state: PlanState,
    c: CommandBase,
    content: PlanContent,
    reason: str,
    months: tuple[str, ...],
    *,
    iteration: int | None = None,
    source: RevisionSource = RevisionSource.AUTHOR,
    counter_proposal_by: str | None = None,
    lesson_links: tuple[LessonLink, ...] = (),
) -> ev.RevisionRecorded:
    require_text(reason, "a reason for the revision")
    check_content(content, state.currency, months)
    latest = state.latest_revision
    digest = content_hash(content)
    if latest is not None and latest.content_hash == digest:
        raise DomainError(
            ErrorCode.NO_CHANGE,
            f"the content is identical to revision {latest.number}; change something or submit that revision",
        )
    return ev.RevisionRecorded(
        **meta(c),
        revision=(latest.number + 1) if latest is not None else 1,
        iteration=iteration if iteration is not None else state.iteration,
        reason=reason,
        content=content,
        content_hash=digest,
        diff=diff_content(latest.content if latest is not None else None, content),
        source=source,
        counter_proposal_by=counter_proposal_by,
        lesson_links=lesson_links,
    )
