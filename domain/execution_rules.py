"""Rules after sign-off: execution planning, tracking during execution, learning and refining."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from domain import commands as cmd
from domain import events as ev
from domain.errors import DomainError, ErrorCode
from domain.events import Event
from domain.evolve import replay
from domain.execution import Csf, Team, check_csf
from domain.rules import (
    calendar_of,
    meta,
    refuse_strategy_edit,
    require_author,
    require_phase,
    require_text,
    revision_event,
)
from domain.scoring import MAX_SCORE, compute_evidence, results
from domain.state import Phase, PlanState
from domain.strategy import CHOICE_NAMES, RevisionSource, StrategyComponents, diff_content
from domain.tracking import (
    REVENUE,
    MeasureStatus,
    MonthlyReport,
    QuarterlyReview,
    assess,
    build_monthly_report,
    measure_line,
)

TRACKING_PHASES = (Phase.EXECUTING, Phase.LEARNING)

# Changes of these fields are strategy changes and must each be motivated by a lesson when refining. Goals,
# forecast and budget are re-planned for the new period anyway and go through the gates again.
STRATEGY_FIELDS = frozenset(
    [f"choices.{name}" for name in CHOICE_NAMES]
    + [f"components.{name}" for name in StrategyComponents.model_fields]
    + ["programs"]
)


# -- execution planning --------------------------------------------------------------------------------------


def _start_planning(state: PlanState, c: cmd.StartExecutionPlanning) -> list[Event]:
    require_phase(state, c, (Phase.APPROVED,), "execution planning starts once the plan is signed off")
    require_author(state, c, "start execution planning")
    require_text(c.sales_lead, "the sales team lead", ErrorCode.INVALID_COMMAND)
    require_text(c.marketing_lead, "the marketing team lead", ErrorCode.INVALID_COMMAND)
    return [ev.ExecutionPlanningStarted(**meta(c), sales_lead=c.sales_lead, marketing_lead=c.marketing_lead)]


def _lead_of(state: PlanState, team: Team) -> str | None:
    return state.sales_lead if team is Team.SALES else state.marketing_lead


def _require_lead_or_author(state: PlanState, c: cmd.CommandBase, team: Team) -> None:
    if c.actor != _lead_of(state, team) and c.actor not in state.authors:
        raise DomainError(
            ErrorCode.NOT_TEAM_LEAD,
            f"only the {team.value} lead ({_lead_of(state, team)}) or the plan's authors can change "
            f"{team.value} CSFs; ask them",
        )


def _existing_csf(state: PlanState, csf_id: str) -> Csf:
    csf = state.csf(csf_id)
    if csf is None:
        known = ", ".join(c.csf_id for c in state.csfs) or "none yet"
        raise DomainError(
            ErrorCode.UNKNOWN_CSF, f"there is no CSF '{csf_id}' (known: {known}); use one of those"
        )
    return csf


def _planning_only(state: PlanState, c: cmd.CommandBase) -> None:
    require_phase(
        state,
        c,
        (Phase.EXECUTION_PLANNING,),
        "CSFs are agreed during execution planning, before the period starts; while executing only owners "
        "and coaches can change (AssignCsfOwner)",
    )


def _define_csf(state: PlanState, c: cmd.DefineCsf) -> list[Event]:
    _planning_only(state, c)
    _require_lead_or_author(state, c, c.csf.team)
    check_csf(c.csf, state.csfs, calendar_of(state).months())
    return [ev.CsfDefined(**meta(c), csf=c.csf)]


def _remove_csf(state: PlanState, c: cmd.RemoveCsf) -> list[Event]:
    _planning_only(state, c)
    csf = _existing_csf(state, c.csf_id)
    _require_lead_or_author(state, c, csf.team)
    return [ev.CsfRemoved(**meta(c), csf_id=c.csf_id)]


def _assign_owner(state: PlanState, c: cmd.AssignCsfOwner) -> list[Event]:
    require_phase(
        state,
        c,
        (Phase.EXECUTION_PLANNING, Phase.EXECUTING),
        "owners are assigned to CSFs of a plan in execution",
    )
    csf = _existing_csf(state, c.csf_id)
    _require_lead_or_author(state, c, csf.team)
    require_text(c.owner, "an owner", ErrorCode.INVALID_CSF)
    if c.coach is not None and c.coach == c.owner:
        raise DomainError(
            ErrorCode.INVALID_CSF, "the coach holds the owner accountable; name someone else as coach"
        )
    return [ev.CsfOwnerAssigned(**meta(c), csf_id=c.csf_id, owner=c.owner, coach=c.coach)]


def _confirm_alignment(state: PlanState, c: cmd.ConfirmAlignment) -> list[Event]:
    require_phase(state, c, (Phase.EXECUTION_PLANNING,), "alignment is confirmed during execution planning")
    lead = _lead_of(state, c.team)
    if c.actor != lead:
        raise DomainError(
            ErrorCode.NOT_TEAM_LEAD,
            f"only the {c.team.value} lead ({lead}) confirms the joint plan for that team",
        )
    empty = [t.value for t in Team if not state.csfs_of(t)]
    if empty:
        raise DomainError(
            ErrorCode.NO_CSFS,
            f"{' and '.join(empty)} has no CSF yet; both teams share their CSFs before the leads confirm",
        )
    if c.team in state.aligned:
        raise DomainError(
            ErrorCode.ALREADY_DECIDED,
            f"the {c.team.value} lead already confirmed this set of CSFs; nothing to do",
        )
    return [ev.AlignmentConfirmed(**meta(c), team=c.team)]


def _start_execution(state: PlanState, c: cmd.StartExecution) -> list[Event]:
    require_phase(state, c, (Phase.EXECUTION_PLANNING,), "execution starts after execution planning")
    if c.actor not in state.authors and c.actor not in (state.sales_lead, state.marketing_lead):
        require_author(state, c, "start execution")
    missing = [t.value for t in Team if t not in state.aligned]
    if missing:
        raise DomainError(
            ErrorCode.ALIGNMENT_MISSING,
            f"the {' and '.join(missing)} lead has not confirmed the joint CSFs; both leads confirm "
            "(ConfirmAlignment) before execution starts",
        )
    return [ev.ExecutionStarted(**meta(c), csf_ids=tuple(c.csf_id for c in state.csfs))]


# -- tracking --------------------------------------------------------------------------------------


def _measure_target(
    state: PlanState, c: cmd.RecordActual | cmd.CorrectActual
) -> tuple[Decimal | None, bool, str]:
    """The month's target of the measure, whether higher is better, and who owns a deviation."""
    if not calendar_of(state).contains(c.month):
        months = calendar_of(state).months()
        raise DomainError(
            ErrorCode.MONTH_OUTSIDE_PERIOD,
            f"{c.month} is outside the execution period {months[0]}..{months[-1]}; report a month of the "
            "period",
        )
    if c.measure == REVENUE:
        if c.currency != state.currency:
            raise DomainError(
                ErrorCode.CURRENCY_MISMATCH,
                f"revenue is tracked in {state.currency}; send the amount in {state.currency} with its "
                "currency",
            )
        assert state.strategy is not None
        return state.strategy.forecast_by_month().get(c.month), True, state.authors[0]
    csf = state.csf(c.measure)
    if csf is None:
        raise DomainError(
            ErrorCode.UNKNOWN_MEASURE,
            f"'{c.measure}' is neither revenue nor a CSF of this plan; use 'revenue' or one of "
            f"{', '.join(x.csf_id for x in state.csfs)}",
        )
    return csf.target_for(c.month), csf.higher_is_better, csf.owner


def _tracking_events(
    state: PlanState, c: cmd.RecordActual | cmd.CorrectActual, corrects: str | None
) -> list[Event]:
    target, higher_is_better, owner = _measure_target(state, c)
    status = (
        MeasureStatus.NO_DATA
        if target is None
        else assess(c.value, target, state.thresholds, higher_is_better)
    )
    entry_id = f"A{len(state.actuals) + 1}"
    out: list[Event] = []
    if corrects is None:
        out.append(
            ev.ActualRecorded(
                **meta(c),
                entry_id=entry_id,
                measure=c.measure,
                month=c.month,
                value=c.value,
                source=c.source,
                target=target,
                status=status,
            )
        )
    else:
        assert isinstance(c, cmd.CorrectActual)
        out.append(
            ev.ActualCorrected(
                **meta(c),
                entry_id=entry_id,
                corrects=corrects,
                measure=c.measure,
                month=c.month,
                value=c.value,
                source=c.source,
                reason=c.reason,
                target=target,
                status=status,
            )
        )
    already = any(d.measure == c.measure and d.month == c.month for d in state.deviations)
    if status is MeasureStatus.OFF_TRACK and target is not None and not already:
        out.append(
            ev.DeviationOpened(
                **meta(c),
                deviation_id=f"D{len(state.deviations) + 1}",
                measure=c.measure,
                month=c.month,
                owner=owner,
                actual=c.value,
                target=target,
                due_at=c.at + state.thresholds.explanation_due_after,
            )
        )
    return out


def _latest_entry(state: PlanState, measure: str, month: str) -> str | None:
    matching = [e.entry_id for e in state.actuals if e.measure == measure and e.month == month]
    return matching[-1] if matching else None


def _record_actual(state: PlanState, c: cmd.RecordActual) -> list[Event]:
    require_phase(state, c, (Phase.EXECUTING,), "actuals are recorded while the plan executes")
    if _latest_entry(state, c.measure, c.month) is not None:
        raise DomainError(
            ErrorCode.ACTUAL_EXISTS,
            f"{c.measure} for {c.month} is already recorded; send CorrectActual with a reason to correct it",
        )
    return _tracking_events(state, c, None)


def _correct_actual(state: PlanState, c: cmd.CorrectActual) -> list[Event]:
    require_phase(state, c, TRACKING_PHASES, "actuals are corrected while executing or learning")
    original = _latest_entry(state, c.measure, c.month)
    if original is None:
        raise DomainError(
            ErrorCode.NO_ACTUAL_TO_CORRECT,
            f"there is no actual of {c.measure} for {c.month} to correct; record it with RecordActual",
        )
    require_text(c.reason, "a reason for the correction")
    if state.current_actuals()[c.measure][c.month] == c.value:
        raise DomainError(
            ErrorCode.NO_CHANGE, f"{c.measure} for {c.month} already is {c.value}; nothing to correct"
        )
    return _tracking_events(state, c, original)


def _record_actuals(state: PlanState, c: cmd.RecordActuals) -> list[Event]:
    """All the actuals' events, or none: the first refused actual refuses the command, naming it."""
    out: list[Event] = []
    for number, actual in enumerate(c.actuals, start=1):
        single = actual.as_command(**meta(c))
        try:
            if isinstance(single, cmd.CorrectActual):
                events = _correct_actual(state, single)
            else:
                events = _record_actual(state, single)
        except DomainError as err:
            message = err.message
            if err.code == ErrorCode.ACTUAL_EXISTS:
                message = (
                    f"{actual.measure} for {actual.month} is already recorded; to correct it, mark this "
                    "actual as a correction and give a reason"
                )
            raise DomainError(
                err.code,
                f"actual {number} of {len(c.actuals)} ({actual.measure} for {actual.month}): {message}; "
                "none of the command's actuals were recorded",
            ) from None
        # The next actual is decided on the plan as this one leaves it (entry and deviation ids count on).
        state = replay(events, state)
        out.extend(events)
    return out


def _explain(state: PlanState, c: cmd.ExplainDeviation) -> list[Event]:
    require_phase(state, c, TRACKING_PHASES, "deviations are explained while executing or learning")
    deviation = state.deviation(c.deviation_id)
    if deviation is None:
        raise DomainError(
            ErrorCode.UNKNOWN_DEVIATION,
            f"there is no deviation '{c.deviation_id}'; use the id of an open deviation",
        )
    if c.actor != deviation.owner:
        raise DomainError(
            ErrorCode.NOT_DEVIATION_OWNER,
            f"the deviation is explained by its owner, {deviation.owner}; ask them to write the explanation",
        )
    if deviation.explanation is not None:
        raise DomainError(
            ErrorCode.ALREADY_EXPLAINED,
            f"deviation {c.deviation_id} is already explained; add further insight as a lesson "
            "(RecordLesson)",
        )
    require_text(c.explanation, "a written explanation of the deviation", ErrorCode.EXPLANATION_REQUIRED)
    return [ev.DeviationExplained(**meta(c), deviation_id=c.deviation_id, explanation=c.explanation)]


def monthly_report_of(state: PlanState, month: str) -> MonthlyReport:
    """The monthly report as it stands now: a pure query, also what IssueMonthlyReport records."""
    assert state.strategy is not None
    actuals = state.current_actuals()
    csf_lines = [
        measure_line(
            c.csf_id,
            c.target_for(month),
            actuals.get(c.csf_id, {}).get(month),
            state.thresholds,
            c.higher_is_better,
        )
        for c in state.csfs
    ]
    return build_monthly_report(
        month,
        state.currency,
        calendar_of(state).months(),
        state.strategy.forecast_by_month(),
        actuals,
        csf_lines,
        state.thresholds,
        [d.deviation_id for d in state.deviations if d.explanation is None],
    )


def _issue_report(state: PlanState, c: cmd.IssueMonthlyReport) -> list[Event]:
    require_phase(state, c, TRACKING_PHASES, "monthly reports are issued while executing or learning")
    if not calendar_of(state).contains(c.month):
        raise DomainError(
            ErrorCode.MONTH_OUTSIDE_PERIOD, f"{c.month} is outside the execution period; report a month of it"
        )
    return [ev.MonthlyReportIssued(**meta(c), report=monthly_report_of(state, c.month))]


def _hold_review(state: PlanState, c: cmd.HoldQuarterlyReview) -> list[Event]:
    require_phase(state, c, TRACKING_PHASES, "quarterly reviews are held while executing or learning")
    calendar = calendar_of(state)
    if not 1 <= c.quarter <= calendar.quarter_count():
        raise DomainError(
            ErrorCode.QUARTER_OUT_OF_RANGE,
            f"the execution period has quarters 1..{calendar.quarter_count()}; review one of those",
        )
    if any(r.quarter == c.quarter for r in state.reviews):
        raise DomainError(
            ErrorCode.REVIEW_EXISTS,
            f"quarter {c.quarter} has been reviewed; record later insights as lessons or in the next review",
        )
    if not calendar.quarter_ended(c.quarter, c.at):
        raise DomainError(
            ErrorCode.QUARTER_NOT_ENDED,
            f"quarter {c.quarter} ends with {calendar.quarter_months(c.quarter)[-1]}; hold its review "
            "afterwards",
        )
    if not c.attendees:
        raise DomainError(ErrorCode.INVALID_REVIEW, "a review needs its attendees; list who took part")
    actuals = state.current_actuals()
    months = calendar.quarter_months(c.quarter)
    lines = []
    for csf in state.csfs:
        reported = [m for m in months if m in actuals.get(csf.csf_id, {})]
        target = sum((csf.target_for(m) or Decimal(0) for m in reported), Decimal(0)) if reported else None
        actual = sum((actuals[csf.csf_id][m] for m in reported), Decimal(0)) if reported else None
        lines.append(measure_line(csf.csf_id, target, actual, state.thresholds, csf.higher_is_better))
    review = QuarterlyReview(
        quarter=c.quarter,
        held_at=c.at,
        attendees=c.attendees,
        csf_status=tuple(lines),
        decisions=c.decisions,
        improvement_actions=c.improvement_actions,
    )
    return [ev.QuarterlyReviewHeld(**meta(c), review=review)]


# -- learning and refining -------------------------------------------------------------------------


def close_execution_period(state: PlanState, c: cmd.CloseExecutionPeriod) -> list[Event]:
    require_phase(state, c, (Phase.EXECUTING,), "only an executing plan's period can be closed")
    end = calendar_of(state).period_end()
    if c.at < end:
        raise DomainError(
            ErrorCode.PERIOD_NOT_OVER,
            f"the execution period runs until {end.isoformat()}; close it after that",
        )
    assert state.strategy is not None
    actuals = state.current_actuals()
    csf_targets = [
        (value, target, csf.higher_is_better)
        for csf in state.csfs
        for month, value in sorted(actuals.get(csf.csf_id, {}).items())
        if (target := csf.target_for(month)) is not None
    ]
    evidence = compute_evidence(csf_targets, state.strategy.forecast_by_month(), actuals.get(REVENUE, {}))
    return [ev.ExecutionPeriodClosed(**meta(c), evidence=evidence)]


def _score(state: PlanState, c: cmd.ScorePlan) -> list[Event]:
    require_phase(state, c, (Phase.LEARNING,), "the plan is scored after its execution period is closed")
    if state.score is not None:
        raise DomainError(
            ErrorCode.ALREADY_SCORED, "this iteration is already scored; record lessons instead"
        )
    # As with approvals, nobody judges their own plan.
    if c.actor in state.authors or c.on_behalf_of in state.authors:
        raise DomainError(
            ErrorCode.SEGREGATION_OF_DUTIES,
            "the plan's authors cannot score their own plan; the review (leadership or a coach) scores it",
        )
    for name, value in (
        ("plan quality", c.plan_quality),
        ("execution effectiveness", c.execution_effectiveness),
    ):
        if not 0 <= value <= MAX_SCORE:
            raise DomainError(
                ErrorCode.SCORE_OUT_OF_RANGE,
                f"{name} is scored from 0 to {MAX_SCORE}, not {value}; pick a score",
            )
    return [
        ev.PlanScored(
            **meta(c),
            plan_quality=c.plan_quality,
            execution_effectiveness=c.execution_effectiveness,
            results=results(c.plan_quality, c.execution_effectiveness),
            rationale=c.rationale,
        )
    ]


def _lesson(state: PlanState, c: cmd.RecordLesson) -> list[Event]:
    require_phase(state, c, TRACKING_PHASES, "lessons are recorded while executing or learning")
    require_text(c.text, "the lesson's text", ErrorCode.INVALID_COMMAND)
    lesson_id = f"I{state.iteration}-L{len(state.lessons) + 1}"
    return [ev.LessonRecorded(**meta(c), lesson_id=lesson_id, text=c.text, category=c.category)]


def _refine(state: PlanState, c: cmd.RefineStrategy) -> list[Event]:
    if state.phase is Phase.EXECUTING:
        refuse_strategy_edit(state)
    require_phase(state, c, (Phase.LEARNING,), "refine after the execution period is closed and scored")
    require_author(state, c, "refine the strategy")
    if state.score is None:
        raise DomainError(
            ErrorCode.NOT_SCORED,
            "score the iteration (ScorePlan) before refining; the lessons need the score",
        )
    lessons = {lesson.lesson_id for lesson in state.lessons}
    unknown = [link.lesson_id for link in c.lesson_links if link.lesson_id not in lessons]
    if unknown:
        raise DomainError(
            ErrorCode.UNKNOWN_LESSON,
            f"lessons {', '.join(unknown)} were not recorded in this iteration; record them first "
            "(RecordLesson)",
        )
    latest = state.latest_revision
    assert latest is not None
    diff = diff_content(latest.content, c.content)
    linked = {link.changed_field for link in c.lesson_links}
    unlinked = [f for f in diff.changed_fields if f in STRATEGY_FIELDS and f not in linked]
    stray = sorted(linked - set(diff.changed_fields))
    if unlinked or stray:
        problem = (
            f"the strategy changes {', '.join(unlinked)} without a lesson"
            if unlinked
            else f"lessons are linked to {', '.join(stray)}, which did not change"
        )
        raise DomainError(
            ErrorCode.UNLINKED_CHANGE,
            f"{problem}; link each changed strategy field to the lesson that motivated it",
        )
    calendar = c.calendar if c.calendar is not None else calendar_of(state).shifted()
    refined = ev.StrategyRefined(
        **meta(c), iteration=state.iteration + 1, calendar=calendar, lesson_links=c.lesson_links
    )
    revision = revision_event(
        state,
        c,
        c.content,
        c.reason,
        calendar.months(),
        iteration=state.iteration + 1,
        source=RevisionSource.REFINE,
        lesson_links=c.lesson_links,
    )
    return [refined, revision]


EXECUTION_DECIDERS: dict[str, Callable[[PlanState, Any], list[Event]]] = {
    "StartExecutionPlanning": _start_planning,
    "DefineCsf": _define_csf,
    "RemoveCsf": _remove_csf,
    "AssignCsfOwner": _assign_owner,
    "ConfirmAlignment": _confirm_alignment,
    "StartExecution": _start_execution,
    "RecordActual": _record_actual,
    "CorrectActual": _correct_actual,
    "RecordActuals": _record_actuals,
    "ExplainDeviation": _explain,
    "IssueMonthlyReport": _issue_report,
    "HoldQuarterlyReview": _hold_review,
    "CloseExecutionPeriod": close_execution_period,
    "ScorePlan": _score,
    "RecordLesson": _lesson,
    "RefineStrategy": _refine,
}
