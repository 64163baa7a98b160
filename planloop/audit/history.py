"""A plan's history, as an auditor reads it: every stored event of the plan's stream with who acted (and on
whose behalf), when (the store's time and the business time), from where, why, and, for decisions, the exact
revision and content hash they were bound to; filterable by event type, actor, time and version.

Everything comes from the event store: the rows as stored, decoded (and upcast) by the domain's own codec.
Nothing is taken from read models, which could lag or be rebuilt differently.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, get_args
from uuid import UUID

from pydantic import BaseModel

from domain import Event, decode_event
from domain import events as ev
from eventstore import EventStore
from eventstore.types import RecordedEvent
from workflows import plan_id

# Stable codes of the questions that cannot be answered as asked (the API's 4xx ``code``).
PLAN_NOT_FOUND = "plan_not_found"
TIME_ZONE_MISSING = "time_zone_missing"
INVALID_TIME = "invalid_time"
VERSION_OUT_OF_RANGE = "version_out_of_range"
INVALID_RANGE = "invalid_range"
UNKNOWN_EVENT_TYPE = "unknown_event_type"


class AuditError(Exception):
    """A history question that cannot be answered as asked: ``code`` is stable, ``message`` says what to do.

    ``not_found`` marks what does not exist (a plan, a revision at a moment) as opposed to a malformed
    question (a time without a time zone, a range the wrong way round)."""

    def __init__(self, code: str, message: str, *, not_found: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.not_found = not_found


def event_types() -> tuple[str, ...]:
    """Every event type a plan's stream can hold, in the order the domain declares them."""
    members = get_args(get_args(Event)[0])
    return tuple(m.model_fields["type"].default for m in members)


# An offset's "+" arrives as a space when a query string was not URL-encoded (…T10:00:00 02:00).
_LOST_PLUS = re.compile(r"^(.*\d) (\d{2}(?::?\d{2})?)$")


def parse_time(text: str, name: str) -> datetime:
    """An ISO 8601 time with a time zone (``Z`` or an offset); else an AuditError naming ``name``."""
    cleaned = _LOST_PLUS.sub(r"\1+\2", text.strip())
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise AuditError(
            INVALID_TIME,
            f"{name} {text!r} is not a time; write it in ISO 8601 with a time zone, "
            "e.g. 2027-03-31T18:00:00Z or 2027-03-31T20:00:00+02:00",
        ) from None
    if moment.tzinfo is None:
        raise AuditError(
            TIME_ZONE_MISSING,
            f"{name} {text!r} has no time zone, so it could name any of 24 moments; add one, "
            f"e.g. {moment.isoformat()}Z or {moment.isoformat()}+02:00",
        )
    return moment


class HistoryEntry(BaseModel):
    """One event of a plan's history, as an auditor reads it."""

    version: int  # the event's place in the plan's stream (1 is the opening)
    position: int  # its place in the whole store's log
    event_id: UUID
    type: str
    schema_version: int
    recorded_at: datetime  # when the store wrote it (covered by the hash chain)
    at: datetime  # the business time of the decision (the workflow's clock when the command was applied)
    actor: str  # who acted: a person, a delegate, another system, or the plan's clock
    on_behalf_of: str | None  # whose seat or authority the actor used, e.g. the approver who delegated
    source: str | None  # how it came in: api, cycle, clock, ...
    request_id: str | None  # the caller's request (Idempotency-Key) that caused it
    correlation_id: str | None
    workflow_run_id: str | None  # the Temporal run that wrote it (see the workflow replay)
    reason: str | None  # the why, where the event carries one: a revision's reason, a pushback's comment, ...
    revision: int | None  # the revision the event is about; for decisions, the one they were bound to
    content_hash: str | None  # that revision's content hash (what the approver saw)
    summary: str  # one line for people


@dataclass(frozen=True)
class HistoryFilter:
    """Which events of the history to show; every part is optional and they combine (AND).

    ``actor`` matches who acted and on whose behalf. ``since``/``until`` bound the store's time
    (``recorded_at``), inclusive; ``from_version``/``to_version`` the stream version, inclusive."""

    types: frozenset[str] = frozenset()
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    from_version: int | None = None
    to_version: int | None = None

    def check(self, stream_version: int) -> None:
        """Refuse a filter that can only be a mistake, before anything is read."""
        unknown = sorted(self.types - set(event_types()))
        if unknown:
            raise AuditError(
                UNKNOWN_EVENT_TYPE,
                f"unknown event type {', '.join(unknown)}; a plan's events are: {', '.join(event_types())}",
            )
        for name, moment in (("since", self.since), ("until", self.until)):
            if moment is not None and moment.tzinfo is None:
                raise AuditError(TIME_ZONE_MISSING, f"{name} has no time zone; add one (Z or +hh:mm)")
        if self.since is not None and self.until is not None and self.since > self.until:
            raise AuditError(
                INVALID_RANGE,
                f"since ({self.since.isoformat()}) is after until ({self.until.isoformat()}); swap them",
            )
        for name, version in (("from_version", self.from_version), ("to_version", self.to_version)):
            check_version(name, version, stream_version, lowest=1)
        if (
            self.from_version is not None
            and self.to_version is not None
            and self.from_version > self.to_version
        ):
            raise AuditError(
                INVALID_RANGE,
                f"from_version {self.from_version} is after to_version {self.to_version}; swap them",
            )

    def admits(self, entry: HistoryEntry) -> bool:
        if self.types and entry.type not in self.types:
            return False
        if self.actor is not None and self.actor not in (entry.actor, entry.on_behalf_of):
            return False
        return self.since is None or entry.recorded_at >= self.since


def check_version(name: str, version: int | None, stream_version: int, *, lowest: int) -> None:
    """Refuse a version the plan's stream does not have (versions run from ``lowest`` to the head)."""
    if version is not None and not lowest <= version <= stream_version:
        raise AuditError(
            VERSION_OUT_OF_RANGE,
            f"{name} {version} is outside the plan's stream, which has versions 1 to {stream_version}; "
            f"pass a version from {lowest} to {stream_version}",
        )


async def plan_stream_version(store: EventStore, cycle_id: str, unit_id: str) -> int:
    """The version of the plan's stream; an AuditError when the plan has no events at all."""
    version = await store.stream_version(plan_id(cycle_id, unit_id))
    if version == 0:
        raise AuditError(
            PLAN_NOT_FOUND,
            f"there is no plan of unit {unit_id} in cycle {cycle_id}; check both ids "
            f"(GET /cycles/{cycle_id}/plans lists the cycle's plans)",
            not_found=True,
        )
    return version


async def plan_history(
    store: EventStore, cycle_id: str, unit_id: str, filters: HistoryFilter = HistoryFilter()
) -> list[HistoryEntry]:
    """The plan's history, oldest first, narrowed by ``filters``."""
    stream_version = await plan_stream_version(store, cycle_id, unit_id)
    filters.check(stream_version)
    recorded = await store.read_stream(
        plan_id(cycle_id, unit_id),
        after_version=(filters.from_version or 1) - 1,
        up_to_version=filters.to_version,
        as_of=filters.until,
    )
    return [entry for entry in entries_of(recorded) if filters.admits(entry)]


def entries_of(recorded: Iterable[RecordedEvent]) -> list[HistoryEntry]:
    return [entry_of(r) for r in recorded]


def entry_of(recorded: RecordedEvent) -> HistoryEntry:
    """The history entry of one stored event, decoded (and upcast) with the domain's codec."""
    event: Any = decode_event(recorded.type, recorded.schema_version, recorded.data)
    meta = recorded.metadata
    revision = getattr(event, "revision", None)
    return HistoryEntry(
        version=recorded.version,
        position=recorded.position,
        event_id=recorded.event_id,
        type=recorded.type,
        schema_version=recorded.schema_version,
        recorded_at=recorded.recorded_at,
        at=event.at,
        # The event's own actor and on-behalf-of: the decider fills in the seat a delegate decided for
        # even when the request did not name it, so the envelope's on_behalf_of can be empty where the
        # event's is not.
        actor=event.actor or meta.get("actor", ""),
        on_behalf_of=event.on_behalf_of or meta.get("on_behalf_of"),
        source=meta.get("source"),
        request_id=meta.get("request_id"),
        correlation_id=meta.get("correlation_id"),
        workflow_run_id=meta.get("run_id"),
        reason=reason_of(event),
        revision=revision if isinstance(revision, int) else None,
        content_hash=getattr(event, "content_hash", None),
        summary=summary_of(event),
    )


def reason_of(event: Event) -> str | None:
    """The why an event carries in its own words, if it carries one."""
    match event:
        case (
            ev.RevisionRecorded()
            | ev.PlanReopened()
            | ev.PlanCancelled()
            | ev.PlanClosed()
            | ev.PlanRejected()
            | ev.ActualCorrected()
        ):
            return event.reason or None
        case ev.ChangesRequested():
            return event.comment or None
        case ev.DeviationExplained():
            return event.explanation
        case ev.PlanScored():
            return event.rationale or None
        case ev.LessonRecorded():
            return event.text
    return None


def _hash(value: str) -> str:
    return value[:12]


def _seat(event: Any) -> str:
    """Who decided, naming the seat when someone else sat in it (a delegate, the fallback approver)."""
    return event.actor if event.approver == event.actor else f"{event.actor} for {event.approver}"


def summary_of(event: Event) -> str:
    """One line a person can read in a table of the history."""
    match event:
        case ev.PlanOpened():
            gates = " -> ".join(g.gate_id for g in event.approval_chain) or "no gates"
            authors = ", ".join(event.authors)
            return f"plan of {event.unit_id} opened in {event.cycle_id} (authors {authors}; {gates})"
        case ev.RevisionRecorded():
            changed = ", ".join(event.diff.changed_fields) or "first content"
            by = f", a counter-proposal of {event.counter_proposal_by}" if event.counter_proposal_by else ""
            return (
                f"revision {event.revision} ({event.source}{by}) by {event.actor}: {changed} "
                f"[{_hash(event.content_hash)}]"
            )
        case ev.PlanSubmitted():
            return f"revision {event.revision} submitted to {event.gate_id} [{_hash(event.content_hash)}]"
        case ev.ApprovalRecorded():
            return (
                f"{_seat(event)} approved revision {event.revision} at {event.gate_id} "
                f"[{_hash(event.content_hash)}]"
            )
        case ev.GatePassed():
            onward = f"; next {event.next_gate_id}" if event.next_gate_id else ""
            return f"gate {event.gate_id} passed{onward}"
        case ev.PlanSignedOff():
            return f"revision {event.revision} signed off by {event.actor} [{_hash(event.content_hash)}]"
        case ev.ChangesRequested():
            counter = " with a counter-proposal" if event.counter_proposal is not None else ""
            return (
                f"{_seat(event)} requested changes to revision {event.revision} at {event.gate_id}{counter}"
            )
        case ev.PlanRejected():
            return f"{_seat(event)} rejected revision {event.revision} at {event.gate_id}"
        case ev.ApprovalDelegated():
            return (
                f"{event.approver} delegated their approvals to {event.delegate} "
                f"from {event.starts:%Y-%m-%d} to {event.ends:%Y-%m-%d}"
            )
        case ev.GateReminderSent():
            return f"reminder at {event.gate_id}: waiting on {', '.join(event.pending)}"
        case ev.GateEscalated():
            return f"gate {event.gate_id} missed its deadline: escalated to {event.fallback_approver}"
        case ev.PlanReopened():
            return f"signed-off revision {event.revision} reopened by {event.actor}"
        case ev.PlanCancelled():
            return f"plan cancelled by {event.actor}"
        case ev.PlanClosed():
            return "plan closed"
        case ev.ExecutionPlanningStarted():
            return f"execution planning started (sales {event.sales_lead}, marketing {event.marketing_lead})"
        case ev.CsfDefined():
            c = event.csf
            return f"{c.team} CSF {c.csf_id} defined: {c.name} (owner {c.owner})"
        case ev.CsfRemoved():
            return f"CSF {event.csf_id} removed"
        case ev.CsfOwnerAssigned():
            coach = f", coach {event.coach}" if event.coach else ""
            return f"CSF {event.csf_id} owned by {event.owner}{coach}"
        case ev.AlignmentConfirmed():
            return f"{event.team} confirmed the joint plan"
        case ev.ExecutionStarted():
            return f"execution started with CSFs {', '.join(event.csf_ids)}"
        case ev.ActualRecorded():
            return f"{event.measure} {event.month}: {event.value} from {event.source} ({event.status})"
        case ev.ActualCorrected():
            return f"{event.measure} {event.month} corrected to {event.value} ({event.status})"
        case ev.DeviationOpened():
            return (
                f"{event.measure} {event.month} off track ({event.actual} against {event.target}): "
                f"{event.owner} to explain by {event.due_at:%Y-%m-%d}"
            )
        case ev.DeviationExplained():
            return f"deviation {event.deviation_id} explained by {event.actor}"
        case ev.ActualsOverdue():
            return f"actuals of {event.month} overdue: {', '.join(event.missing)}"
        case ev.ExplanationOverdue():
            return f"explanation of deviation {event.deviation_id} overdue from {event.owner}"
        case ev.QuarterlyReviewDue():
            return f"quarterly review Q{event.quarter} due by {event.due_at:%Y-%m-%d}"
        case ev.PeriodEndReached():
            return "the execution period has ended"
        case ev.MonthlyReportIssued():
            r = event.report
            return f"monthly report {r.month}: year-end extrapolated {r.year_end_extrapolation} {r.currency}"
        case ev.QuarterlyReviewHeld():
            return f"quarterly review Q{event.review.quarter} held ({len(event.review.decisions)} decisions)"
        case ev.ExecutionPeriodClosed():
            return f"execution period closed after {event.evidence.months_reported} reported months"
        case ev.PlanScored():
            return (
                f"scored {event.plan_quality} x {event.execution_effectiveness} = {event.results} "
                f"by {event.actor}"
            )
        case ev.LessonRecorded():
            return f"lesson {event.lesson_id} ({event.category}) recorded"
        case ev.StrategyRefined():
            return (
                f"strategy refined into iteration {event.iteration} ({len(event.lesson_links)} lesson links)"
            )
    return event.type  # pragma: no cover - every event type is matched above
