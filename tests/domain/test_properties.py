"""Property tests: random command sequences, from several starting points, never break the plan's invariants.

Commands are drawn with a bias towards what the current phase allows (so hypothesis reaches execution and
refining), mixed with arbitrary ones that must be refused cleanly. After every accepted command the invariants
of the issue are checked; at the end the whole stream must replay, and survive the storage encoding.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import (
    BudgetCut,
    CounterProposal,
    DomainError,
    ErrorCode,
    LessonLink,
    Phase,
    PlanState,
    TargetChange,
    Team,
    decide,
    decode_event,
    encode_event,
    extrapolate_year_end,
    next_deadlines,
    replay,
)
from domain import commands as cmd
from domain import events as ev
from domain.execution import MAX_CSFS_PER_TEAM
from domain.strategy import ForecastLine, StrategyChoices
from tests.domain.factory import (
    AUTHOR,
    COUNTRY,
    GLOBAL,
    MARKETING_LEAD,
    MONTHS,
    PROFILE,
    REGION,
    SALES_LEAD,
    Harness,
    content,
    csf,
    drafted,
    eur,
    executing,
    in_execution_planning,
    signed_off,
    submitted,
)

APPROVERS = (COUNTRY, *REGION, *GLOBAL, "de-country-deputy", "eu-president", "board-chair")
PEOPLE = (AUTHOR, "controller", "deputy", SALES_LEAD, MARKETING_LEAD, "anna", "mark", "intern", *APPROVERS)
CONTENTS = [content(scale=s) for s in (900, 1000, 1100, 1250)] + [
    content(programs=content().programs[:2]),
    content(choices=StrategyChoices(how_to_win="word " * 501)),
]
NEXT_MONTHS = tuple(f"2028-{m:02d}" for m in range(1, 13))
NEXT_FORECAST = tuple(
    ForecastLine(month=m, amount=eur(p * 1000)) for m, p in zip(NEXT_MONTHS, PROFILE, strict=True)
)
STARTS: dict[str, Callable[[], Harness]] = {
    "drafted": drafted,
    "submitted": submitted,
    "signed_off": signed_off,
    "execution_planning": in_execution_planning,
    "executing": executing,
}

Build = Callable[[PlanState, st.DataObject], tuple[type[cmd.CommandBase], str, dict[str, Any]]]


def _hash(state: PlanState, data: st.DataObject) -> str:
    if state.submission is not None and data.draw(st.integers(0, 9)) > 0:
        return state.submission.content_hash
    return data.draw(st.sampled_from(["0" * 64, *(r.content_hash for r in state.revisions)]))


def _revise(state: PlanState, data: st.DataObject) -> tuple[Any, str, dict[str, Any]]:
    actor = data.draw(st.sampled_from((AUTHOR, AUTHOR, "controller", COUNTRY)))
    return cmd.ReviseStrategy, actor, {"content": data.draw(st.sampled_from(CONTENTS)), "reason": "revise"}


def _decision(kind: type[cmd.CommandBase]) -> Build:
    def build(state: PlanState, data: st.DataObject) -> tuple[Any, str, dict[str, Any]]:
        gate = state.current_gate
        seats = (*gate.approvers, gate.fallback_approver) if gate is not None else APPROVERS
        actor = data.draw(
            st.sampled_from(seats if data.draw(st.integers(0, 3)) else (*APPROVERS, "deputy", AUTHOR))
        )
        fields: dict[str, Any] = {"content_hash": _hash(state, data)}
        if kind is cmd.RequestChanges:
            fields["comment"] = "please change"
            if data.draw(st.booleans()):
                fields["counter_proposal"] = CounterProposal(
                    target_changes=(
                        TargetChange(goal_id="G-REV", percent=Decimal(data.draw(st.integers(1, 20)))),
                    ),
                    budget_cuts=(BudgetCut(line_id="B-TRAVEL", percent=Decimal(10)),),
                    programs_to_drop=data.draw(st.sampled_from(((), ("P-FAIR",)))),
                )
        elif kind is cmd.RejectPlan:
            fields["reason"] = "no"
        return kind, actor, fields

    return build


def _delegate(state: PlanState, data: st.DataObject) -> tuple[Any, str, dict[str, Any]]:
    actor = data.draw(st.sampled_from(APPROVERS))
    days = data.draw(st.integers(0, 20))
    return (
        cmd.DelegateApproval,
        actor,
        {
            "delegate": data.draw(st.sampled_from(("deputy", AUTHOR, actor))),
            "starts": datetime(2026, 9, 1, tzinfo=UTC),
            "ends": datetime(2026, 9, 1, tzinfo=UTC) + timedelta(days=days * 10),
        },
    )


def _define_csf(state: PlanState, data: st.DataObject) -> tuple[Any, str, dict[str, Any]]:
    team = data.draw(st.sampled_from(list(Team)))
    lead = SALES_LEAD if team is Team.SALES else MARKETING_LEAD
    csf_id = f"{team.value[0].upper()}{data.draw(st.integers(1, 5))}"
    return cmd.DefineCsf, lead, {"csf": csf(csf_id, team, data.draw(st.sampled_from(("anna", "mark"))))}


def _actual(state: PlanState, data: st.DataObject) -> tuple[Any, str, dict[str, Any]]:
    measure = data.draw(st.sampled_from(["revenue", "S1", "S2", "M1", "M2"]))
    kind = data.draw(st.sampled_from((cmd.RecordActual, cmd.RecordActual, cmd.CorrectActual)))
    month = data.draw(st.sampled_from(MONTHS))
    if kind is cmd.CorrectActual and state.actuals and data.draw(st.booleans()):
        entry = data.draw(st.sampled_from(state.actuals))
        measure, month = entry.measure, entry.month
    fields: dict[str, Any] = {
        "measure": measure,
        "month": month,
        "value": Decimal(data.draw(st.sampled_from((2, 9, 10, 60000, 100000)))),
        "source": "erp",
        "currency": "EUR" if measure == "revenue" else None,
    }
    if kind is cmd.CorrectActual:
        fields["reason"] = "correction"
    return kind, "erp", fields


def _explain(state: PlanState, data: st.DataObject) -> tuple[Any, str, dict[str, Any]]:
    ids = [d.deviation_id for d in state.deviations] or ["D1"]
    owner = data.draw(st.sampled_from([d.owner for d in state.deviations] + ["intern"]))
    return (
        cmd.ExplainDeviation,
        owner,
        {"deviation_id": data.draw(st.sampled_from(ids)), "explanation": "because"},
    )


def _refine(state: PlanState, data: st.DataObject) -> tuple[Any, str, dict[str, Any]]:
    last = state.latest_revision.content if state.latest_revision else content()
    changed = last.model_copy(
        update={
            "forecast": NEXT_FORECAST,
            "choices": last.choices.model_copy(update={"how_to_win": f"{last.choices.how_to_win} Faster."}),
        }
    )
    links = tuple(
        LessonLink(changed_field="choices.how_to_win", lesson_id=lesson.lesson_id)
        for lesson in state.lessons[:1]
    )
    return cmd.RefineStrategy, AUTHOR, {"content": changed, "reason": "refine", "lesson_links": links}


def _simple(kind: type[cmd.CommandBase], actors: tuple[str, ...], **fields: Any) -> Build:
    def build(state: PlanState, data: st.DataObject) -> tuple[Any, str, dict[str, Any]]:
        return kind, data.draw(st.sampled_from(actors)), dict(fields)

    return build


BUILDERS: dict[str, Build] = {
    "revise": _revise,
    "submit": _simple(cmd.SubmitForApproval, (AUTHOR, AUTHOR, "intern")),
    "approve": _decision(cmd.ApprovePlan),
    "request_changes": _decision(cmd.RequestChanges),
    "reject": _decision(cmd.RejectPlan),
    "accept": _simple(cmd.AcceptCounterProposal, (AUTHOR,)),
    "delegate": _delegate,
    "reopen": _simple(cmd.ReopenPlan, (GLOBAL[0], COUNTRY), reason="reopen"),
    "cancel": _simple(cmd.CancelPlan, (AUTHOR, "intern", "intern", "intern"), reason="cancel"),
    "plan": _simple(
        cmd.StartExecutionPlanning, (AUTHOR,), sales_lead=SALES_LEAD, marketing_lead=MARKETING_LEAD
    ),
    "define_csf": _define_csf,
    "remove_csf": _simple(cmd.RemoveCsf, (SALES_LEAD,), csf_id="S1"),
    "confirm_sales": _simple(cmd.ConfirmAlignment, (SALES_LEAD,), team=Team.SALES),
    "confirm_marketing": _simple(cmd.ConfirmAlignment, (MARKETING_LEAD,), team=Team.MARKETING),
    "start": _simple(cmd.StartExecution, (AUTHOR,)),
    "actual": _actual,
    "explain": _explain,
    "close": _simple(cmd.CloseExecutionPeriod, (AUTHOR,)),
    "score": _simple(cmd.ScorePlan, ("review",), plan_quality=6, execution_effectiveness=8),
    "lesson": _simple(cmd.RecordLesson, (AUTHOR,), text="a lesson"),
    "refine": _refine,
    "tick": _simple(cmd.Tick, ("system:clock",)),
}
LIKELY: dict[Phase, tuple[str, ...]] = {
    Phase.DRAFTING: ("revise", "submit", "delegate"),
    Phase.REJECTED: ("revise",),
    Phase.REOPENED: ("revise", "submit"),
    Phase.CHANGES_REQUESTED: ("accept", "accept", "revise", "submit"),
    Phase.IN_REVIEW: (
        "approve",
        "approve",
        "approve",
        "request_changes",
        "request_changes",
        "tick",
        "delegate",
    ),
    Phase.APPROVED: ("plan", "reopen"),
    Phase.EXECUTION_PLANNING: (
        "define_csf",
        "define_csf",
        "confirm_sales",
        "confirm_marketing",
        "start",
        "remove_csf",
    ),
    Phase.EXECUTING: ("actual", "actual", "actual", "explain", "tick", "lesson", "close"),
    Phase.LEARNING: ("score", "lesson", "refine", "explain"),
}


def check_step(before: PlanState, after: PlanState, command: cmd.CommandBase, events: list[Any]) -> None:
    # No approval without a submission, bound to the submitted hash, at the gate in review, by an independent.
    for event in events:
        if isinstance(event, ev.ApprovalRecorded):
            assert (
                before.phase is Phase.IN_REVIEW and before.submission is not None and before.gate is not None
            )
            assert event.content_hash == before.submission.content_hash
            assert event.gate_index == before.gate.index
            editors = {*before.authors, *before.iteration_editors}
            assert event.approver not in editors and event.actor not in editors
    # No gate skipped: gates pass one after another, and only the last one signs off.
    passed = [e for e in events if isinstance(e, ev.GatePassed)]
    for event in passed:
        last = event.gate_index == len(before.approval_chain) - 1
        assert event.next_gate_index == (None if last else event.gate_index + 1)
    if any(isinstance(e, ev.PlanSignedOff) for e in events):
        assert passed and passed[-1].gate_index == len(before.approval_chain) - 1
        assert before.submission is not None
        this_round = {
            d.gate_index
            for d in after.decisions
            if d.revision == after.signed_off_revision and d.at >= before.submission.submitted_at
        }
        assert this_round == set(range(len(before.approval_chain)))
    if after.phase is Phase.IN_REVIEW:
        assert after.submission is not None and after.gate is not None
    # Never more than three CSFs per team.
    for team in Team:
        assert len(after.csfs_of(team)) <= MAX_CSFS_PER_TEAM
    # The strategy never changes while executing.
    if before.phase is Phase.EXECUTING:
        assert after.revisions == before.revisions and after.signed_off_revision == before.signed_off_revision
    # Revision numbers rise by one.
    assert [r.number for r in after.revisions] == list(range(1, len(after.revisions) + 1))
    assert after.version == before.version + len(events)
    # Time is idempotent: the same tick again changes nothing, and no passed deadline is left behind.
    if isinstance(command, cmd.Tick):
        assert decide(after, command) == []
        assert all(d.at > command.at for d in next_deadlines(after))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.sampled_from(sorted(STARTS)), data=st.data())
def test_random_command_sequences_keep_the_invariants(start: str, data: st.DataObject) -> None:
    h = STARTS[start]()
    for _ in range(data.draw(st.integers(1, 40), label="steps")):
        state = h.state
        assert state.phase is not None
        likely = LIKELY.get(state.phase, ())
        name = data.draw(
            st.sampled_from(likely)
            if likely and data.draw(st.integers(0, 3))
            else st.sampled_from(sorted(BUILDERS))
        )
        kind, actor, fields = BUILDERS[name](state, data)
        step = data.draw(st.sampled_from((0, 1, 24, 24 * 7, 24 * 30)), label="hours")
        now = h.now + timedelta(hours=step)
        if kind is cmd.CloseExecutionPeriod and data.draw(st.booleans()):
            now = max(now, datetime(2028, 1, 2, tzinfo=UTC))
        if kind is cmd.Tick:
            fields = {}
        h.at(now)
        command = kind(actor=actor, at=now, **fields)
        try:
            events = decide(state, command)  # type: ignore[arg-type]
        except DomainError as error:
            assert error.code in set(ErrorCode) and error.message
            continue
        h.run(command)
        check_step(state, h.state, command, events)
    assert replay(h.events) == h.state
    stored = [(e.type, e.schema_version, encode_event(e)) for e in h.events]
    assert [decode_event(t, v, d) for t, v, d in stored] == h.events


@settings(max_examples=150, deadline=None)
@given(
    months=st.lists(st.sampled_from(MONTHS), unique=True, max_size=12),
    factor=st.decimals(min_value=Decimal("0.1"), max_value=Decimal("3"), places=2),
)
def test_extrapolation_hits_the_forecast_when_actuals_run_at_a_constant_rate(
    months: list[str], factor: Decimal
) -> None:
    forecast = {m: Decimal(p * 1000) for m, p in zip(MONTHS, PROFILE, strict=True)}
    actuals = {m: forecast[m] * factor for m in months}
    expected = sum(forecast.values()) * (factor if months else 1)
    assert extrapolate_year_end(forecast, actuals, MONTHS) == expected.quantize(Decimal("0.01"))
