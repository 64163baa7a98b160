"""Time, fed in from outside: Tick turns passed deadlines into events; next_deadlines tells the workflow when
to tick.

The two agree by construction: every deadline next_deadlines lists is one a Tick at (or after) its time turns
into an event, after which it is no longer listed. That keeps Tick idempotent and lets a workflow sleep on a
durable timer until the earliest deadline, then tick.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from domain import commands as cmd
from domain import events as ev
from domain.base import DomainModel, UtcDateTime
from domain.events import Event
from domain.execution_rules import close_execution_period, monthly_report_of
from domain.rules import calendar_of, meta
from domain.state import Phase, PlanState
from domain.tracking import REVENUE


class DeadlineKind(StrEnum):
    GATE_REMINDER = "gate_reminder"
    GATE_ESCALATION = "gate_escalation"
    MONTHLY_CLOSE = "monthly_close"
    EXPLANATION_DUE = "explanation_due"
    QUARTERLY_REVIEW = "quarterly_review"
    PERIOD_END = "period_end"


_KIND_ORDER = {kind: index for index, kind in enumerate(DeadlineKind)}


class Deadline(DomainModel):
    at: UtcDateTime
    kind: DeadlineKind
    detail: str


def pending_approvers(state: PlanState) -> tuple[str, ...]:
    """The approver seats at the current gate that have not approved yet (none outside review)."""
    gate, progress = state.current_gate, state.gate
    if state.phase is not Phase.IN_REVIEW or gate is None or progress is None:
        return ()
    return tuple(a for a in gate.approvers if a not in progress.approved_by)


def missing_actuals(state: PlanState, month: str) -> tuple[str, ...]:
    """The measures (revenue and every CSF) that have no actual for `month` yet."""
    actuals = state.current_actuals()
    measures = (REVENUE, *(c.csf_id for c in state.csfs))
    return tuple(m for m in measures if month not in actuals.get(m, {}))


def _due_at_close(state: PlanState, month: str, reported: set[str]) -> bool:
    """A month's close still has work: its report is not issued, or missing actuals are not flagged."""
    return month not in reported or (
        month not in state.overdue_months and bool(missing_actuals(state, month))
    )


def next_deadlines(state: PlanState) -> list[Deadline]:
    """Upcoming deadlines, earliest first, each one a Tick will act on."""
    found: list[Deadline] = []
    if state.phase is Phase.IN_REVIEW and state.gate is not None:
        gate = state.approval_chain[state.gate.index]
        if not state.gate.escalated:
            if not state.gate.reminded:
                found.append(
                    Deadline(
                        at=state.gate.due_at - gate.remind_before,
                        kind=DeadlineKind.GATE_REMINDER,
                        detail=gate.gate_id,
                    )
                )
            found.append(
                Deadline(at=state.gate.due_at, kind=DeadlineKind.GATE_ESCALATION, detail=gate.gate_id)
            )
    if state.phase is Phase.EXECUTING:
        calendar = calendar_of(state)
        reported = {r.month for r in state.reports}
        for month in calendar.months():
            if _due_at_close(state, month, reported):
                found.append(
                    Deadline(at=calendar.close_at(month), kind=DeadlineKind.MONTHLY_CLOSE, detail=month)
                )
        held = {r.quarter for r in state.reviews}
        for quarter in range(1, calendar.quarter_count() + 1):
            if quarter not in held and quarter not in state.reviews_due:
                found.append(
                    Deadline(
                        at=calendar.quarter_review_due(quarter),
                        kind=DeadlineKind.QUARTERLY_REVIEW,
                        detail=f"Q{quarter}",
                    )
                )
        # The period's books close with its last month's actuals, not on its last day; the Tick then
        # closes the period, so an executing plan always has this deadline ahead.
        last_close = calendar.close_at(calendar.months()[-1])
        found.append(Deadline(at=last_close, kind=DeadlineKind.PERIOD_END, detail=state.unit_id))
    if state.phase in (Phase.EXECUTING, Phase.LEARNING):
        for deviation in state.deviations:
            if deviation.explanation is None and not deviation.overdue_flagged:
                found.append(
                    Deadline(
                        at=deviation.due_at, kind=DeadlineKind.EXPLANATION_DUE, detail=deviation.deviation_id
                    )
                )
    # At equal times, deadlines act in the order their kinds are declared: the period ends last.
    return sorted(found, key=lambda d: (d.at, _KIND_ORDER[d.kind], d.detail))


def decide_tick(state: PlanState, c: cmd.Tick) -> list[Event]:
    return [
        event
        for deadline in next_deadlines(state)
        if deadline.at <= c.at
        for event in _on_deadline(state, c, deadline, c.at)
    ]


def _on_deadline(state: PlanState, c: cmd.Tick, deadline: Deadline, at: datetime) -> list[Event]:
    kind = deadline.kind
    if kind is DeadlineKind.GATE_REMINDER or kind is DeadlineKind.GATE_ESCALATION:
        gate, progress = state.current_gate, state.gate
        assert gate is not None and progress is not None
        if kind is DeadlineKind.GATE_REMINDER:
            # Past the deadline a reminder is moot: the escalation below replaces it.
            if at >= progress.due_at:
                return []
            return [
                ev.GateReminderSent(
                    **meta(c),
                    gate_index=progress.index,
                    gate_id=gate.gate_id,
                    due_at=progress.due_at,
                    pending=pending_approvers(state),
                )
            ]
        return [
            ev.GateEscalated(
                **meta(c),
                gate_index=progress.index,
                gate_id=gate.gate_id,
                due_at=progress.due_at,
                fallback_approver=gate.fallback_approver,
                pending=pending_approvers(state),
            )
        ]
    if kind is DeadlineKind.MONTHLY_CLOSE:
        # At the close the month's report is issued; any actuals still missing are flagged overdue first.
        month = deadline.detail
        missing = missing_actuals(state, month)
        issued: list[Event] = []
        if missing and month not in state.overdue_months:
            issued.append(ev.ActualsOverdue(**meta(c), month=month, missing=missing, due_at=deadline.at))
        if all(r.month != month for r in state.reports):
            issued.append(ev.MonthlyReportIssued(**meta(c), report=monthly_report_of(state, month)))
        return issued
    if kind is DeadlineKind.QUARTERLY_REVIEW:
        return [ev.QuarterlyReviewDue(**meta(c), quarter=int(deadline.detail[1:]), due_at=deadline.at)]
    if kind is DeadlineKind.PERIOD_END:
        # With the last month's actuals due, the period is closed and the plan moves on to learning.
        closing = close_execution_period(state, cmd.CloseExecutionPeriod(actor=c.actor, at=c.at))
        return [ev.PeriodEndReached(**meta(c), period_end=calendar_of(state).period_end()), *closing]
    deviation = state.deviation(deadline.detail)
    assert deviation is not None
    return [
        ev.ExplanationOverdue(
            **meta(c), deviation_id=deviation.deviation_id, owner=deviation.owner, due_at=deviation.due_at
        )
    ]
