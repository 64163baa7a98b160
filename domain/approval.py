"""Approval gates, delegation and leadership's structured counter-proposal."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from pydantic import Field

from domain.base import Amount, DomainModel, UtcDateTime
from domain.errors import DomainError, ErrorCode
from domain.money import HUNDRED, Money, quantize_like
from domain.strategy import BudgetLine, ForecastLine, PlanContent, SmartGoal


class GateMode(StrEnum):
    SINGLE = "single"  # any one of the approvers decides
    ALL = "all"  # parallel: every approver must approve
    QUORUM = "quorum"  # `quorum` of the approvers must approve


class Gate(DomainModel):
    gate_id: str = Field(min_length=1)
    name: str
    approvers: tuple[str, ...]
    mode: GateMode = GateMode.SINGLE
    quorum: int | None = None
    deadline: UtcDateTime
    fallback_approver: str
    remind_before: timedelta = timedelta(days=2)
    # A plan resubmitted after the calendar deadline still gives the gate this long to decide.
    grace: timedelta = timedelta(days=5)

    def required_approvals(self) -> int:
        if self.mode is GateMode.SINGLE:
            return 1
        if self.mode is GateMode.ALL:
            return len(self.approvers)
        return self.quorum or 0

    def due_at(self, opened_at: datetime) -> datetime:
        return self.deadline if self.deadline > opened_at else opened_at + self.grace


def gate_problem(gate: Gate) -> str | None:
    """Why a gate cannot work, or None. Checked when a plan or cycle is opened, not at the first decision."""
    if not gate.approvers:
        return f"gate '{gate.gate_id}' has no approvers"
    if len(set(gate.approvers)) != len(gate.approvers):
        return f"gate '{gate.gate_id}' lists an approver twice"
    if gate.mode is GateMode.QUORUM and not (gate.quorum and 1 <= gate.quorum <= len(gate.approvers)):
        return f"gate '{gate.gate_id}' needs a quorum between 1 and {len(gate.approvers)}"
    if gate.mode is not GateMode.QUORUM and gate.quorum is not None:
        return f"gate '{gate.gate_id}' sets a quorum but its mode is {gate.mode.value}"
    if gate.remind_before <= timedelta(0) or gate.grace <= timedelta(0):
        return f"gate '{gate.gate_id}' needs a positive reminder lead time and grace period"
    return None


class Delegation(DomainModel):
    """An approver out of office hands their decisions to a delegate for [starts, ends)."""

    approver: str
    delegate: str
    starts: UtcDateTime
    ends: UtcDateTime

    def active_at(self, at: datetime) -> bool:
        return self.starts <= at < self.ends


class Decision(StrEnum):
    APPROVED = "approved"
    CHANGES_REQUESTED = "changes_requested"
    REJECTED = "rejected"


class GateDecisionRecord(DomainModel):
    """One decision at a gate, keeping both the approver whose seat it was and who actually acted."""

    gate_index: int
    gate_id: str
    approver: str
    actor: str
    decision: Decision
    revision: int
    content_hash: str
    at: UtcDateTime


class TargetChange(DomainModel):
    """Stretch (or cut) one goal's target, either by a percentage or by an absolute amount."""

    goal_id: str
    percent: Amount | None = None
    absolute: Amount | None = None


class BudgetCut(DomainModel):
    """Cut one expense line by a percentage or by an amount (positive numbers cut)."""

    line_id: str
    percent: Amount | None = None
    amount: Money | None = None


class CounterProposal(DomainModel):
    target_changes: tuple[TargetChange, ...] = ()
    forecast_change_pct: Amount | None = None
    budget_cuts: tuple[BudgetCut, ...] = ()
    programs_to_drop: tuple[str, ...] = ()
    comment: str = ""


def _by_percent(value: Decimal, percent: Decimal) -> Decimal:
    return quantize_like(value * (HUNDRED + percent) / HUNDRED, value)


def _refuse(message: str) -> DomainError:
    return DomainError(ErrorCode.INVALID_COUNTER_PROPOSAL, message)


def check_counter_proposal(proposal: CounterProposal, content: PlanContent) -> None:
    """References must exist in the revision under review, and each change must say how much, exactly once."""
    unknown = [t.goal_id for t in proposal.target_changes if content.goal(t.goal_id) is None]
    lines = {b.line_id: b for b in content.budget}
    unknown += [c.line_id for c in proposal.budget_cuts if c.line_id not in lines]
    programs = {p.program_id for p in content.programs}
    unknown += [p for p in proposal.programs_to_drop if p not in programs]
    if unknown:
        raise DomainError(
            ErrorCode.UNKNOWN_REFERENCE,
            f"the counter-proposal refers to {', '.join(unknown)}, which the submitted revision does not "
            "contain; refer to goal, budget line and program ids of that revision",
        )
    for change in proposal.target_changes:
        if (change.percent is None) == (change.absolute is None):
            raise _refuse(
                f"target change of '{change.goal_id}' must give either percent or absolute, not both"
            )
    for cut in proposal.budget_cuts:
        if (cut.percent is None) == (cut.amount is None):
            raise _refuse(f"budget cut of '{cut.line_id}' must give either percent or amount, not both")
        if cut.amount is not None and cut.amount.currency != lines[cut.line_id].amount.currency:
            raise _refuse(f"budget cut of '{cut.line_id}' must be in {lines[cut.line_id].amount.currency}")
    empty = not (proposal.target_changes or proposal.budget_cuts or proposal.programs_to_drop)
    if empty and proposal.forecast_change_pct is None:
        raise _refuse(
            "a counter-proposal needs at least one target change, forecast change, budget cut or program to "
            "drop; to send only a comment, request changes without a counter-proposal"
        )


def apply_counter_proposal(content: PlanContent, proposal: CounterProposal) -> PlanContent:
    """The content leadership proposes: what the author gets when accepting it."""
    changes = {c.goal_id: c for c in proposal.target_changes}
    goals: list[SmartGoal] = []
    for goal in content.goals:
        change = changes.get(goal.goal_id)
        if change is not None:
            target = (
                _by_percent(goal.target, change.percent)
                if change.percent is not None
                else goal.target + (change.absolute or Decimal(0))
            )
            goal = goal.model_copy(update={"target": target})
        goals.append(goal)
    forecast = content.forecast
    if proposal.forecast_change_pct is not None:
        pct = proposal.forecast_change_pct
        forecast = tuple(
            ForecastLine(
                month=line.month,
                amount=Money(amount=_by_percent(line.amount.amount, pct), currency=line.amount.currency),
            )
            for line in forecast
        )
    cuts = {c.line_id: c for c in proposal.budget_cuts}
    budget: list[BudgetLine] = []
    for line in content.budget:
        cut = cuts.get(line.line_id)
        if cut is not None:
            amount = (
                line.amount.amount - cut.amount.amount
                if cut.amount is not None
                else _by_percent(line.amount.amount, -(cut.percent or Decimal(0)))
            )
            line = line.model_copy(update={"amount": Money(amount=amount, currency=line.amount.currency)})
        budget.append(line)
    dropped = set(proposal.programs_to_drop)
    return content.model_copy(
        update={
            "goals": tuple(goals),
            "forecast": forecast,
            "budget": tuple(budget),
            "programs": tuple(p for p in content.programs if p.program_id not in dropped),
        }
    )


def check_chain(chain: tuple[Gate, ...], authors: tuple[str, ...]) -> None:
    """Why a unit's approval chain could never sign its plan off, as a DomainError; else nothing."""

    def refuse(problem: str) -> DomainError:
        return DomainError(
            ErrorCode.INVALID_CHAIN, f"{problem}; fix the unit's approval chain and open again"
        )

    if not chain:
        raise refuse("the approval chain has no gates, so nobody could sign the plan off")
    ids = [g.gate_id for g in chain]
    if len(set(ids)) != len(ids):
        raise refuse("gate ids repeat in the approval chain")
    for gate in chain:
        problem = gate_problem(gate)
        if problem:
            raise refuse(problem)
        # Authors can never approve their own plan, so a gate must be passable without them.
        independent = [a for a in gate.approvers if a not in authors]
        if len(independent) < gate.required_approvals() or gate.fallback_approver in authors:
            raise refuse(f"gate '{gate.gate_id}' cannot pass without the plan's own authors approving")
