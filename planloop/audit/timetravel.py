"""Time travel: the plan as it was at a moment or a stream version, and what changed between two moments.

The plan is rebuilt by folding its stored events with ``domain.replay``, the same ``evolve`` the plan's
workflow ran when it decided, so the reconstruction is the state the workflow held then, not an
approximation of it. Moments are the store's own time (``recorded_at``, covered by the hash chain), so "as
of 31 March" means "everything the store had written by then".

The diff between two revisions by number is the API's (``GET .../diff``); here is the diff between the
plan at two moments: the latest revision at each, compared with ``domain.diff_content``, and every other
part of the plan that changed in between (phase, gate decisions, CSFs, actuals, deviations, reviews, score,
lessons, ...), field by field of the folded state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain import PlanState, RevisionDiff, decode_event, diff_content, replay
from domain.state import Revision
from eventstore import EventStore
from eventstore.types import RecordedEvent
from workflows import plan_id

from .history import INVALID_RANGE, AuditError, check_version, plan_stream_version

PLAN_NOT_YET_OPENED = "plan_not_yet_opened"
NO_REVISION_AT_TIME = "no_revision_at_time"


@dataclass(frozen=True)
class PlanAt:
    """The plan as it was: its state after the stream's first ``version`` events."""

    state: PlanState
    version: int  # the last event folded in
    recorded_at: datetime  # when the store wrote that event
    as_of: datetime | None = None  # the moment asked for, when asked by time


@dataclass(frozen=True)
class RevisionAt:
    """The revision that was the plan's latest at a moment."""

    as_of: datetime
    version: int
    revision: Revision


@dataclass(frozen=True)
class StateChange:
    """One field of the plan's state that differs between two moments: a value (``before`` and ``after``)
    or a list (the entries ``added`` and ``removed``, e.g. gate decisions made, actuals recorded)."""

    field: str
    before: Any = None
    after: Any = None
    added: tuple[Any, ...] = ()
    removed: tuple[Any, ...] = ()


@dataclass(frozen=True)
class DiffAt:
    """What changed in the plan between two moments: its content (the latest revision at each) and the
    rest of its state."""

    old: RevisionAt
    new: RevisionAt
    diff: RevisionDiff
    changes: tuple[StateChange, ...] = ()


# Shown by the content diff and the two revisions named; the stream version is in each moment.
_NOT_COMPARED = frozenset({"revisions", "version"})


def state_changes(old: PlanState, new: PlanState) -> tuple[StateChange, ...]:
    """Every field of the plan's state that differs, in the state's field order, as JSON values."""
    before, after = old.model_dump(mode="json"), new.model_dump(mode="json")
    changes = []
    for name in PlanState.model_fields:
        if name in _NOT_COMPARED or before[name] == after[name]:
            continue
        if isinstance(before[name], list) and isinstance(after[name], list):
            changes.append(
                StateChange(
                    name,
                    added=tuple(x for x in after[name] if x not in before[name]),
                    removed=tuple(x for x in before[name] if x not in after[name]),
                )
            )
        else:
            changes.append(StateChange(name, before=before[name], after=after[name]))
    return tuple(changes)


def fold(recorded: Iterable[RecordedEvent]) -> PlanState:
    """The state the workflow held after these events: decoded (upcast), folded with the domain's replay."""
    return replay(decode_event(r.type, r.schema_version, r.data) for r in recorded)  # type: ignore[misc]


async def plan_at_version(store: EventStore, cycle_id: str, unit_id: str, version: int) -> PlanAt:
    """The plan after its first ``version`` events."""
    stream_version = await plan_stream_version(store, cycle_id, unit_id)
    check_version("version", version, stream_version, lowest=1)
    recorded = await store.read_stream(plan_id(cycle_id, unit_id), up_to_version=version)
    return PlanAt(state=fold(recorded), version=recorded[-1].version, recorded_at=recorded[-1].recorded_at)


async def plan_at_time(store: EventStore, cycle_id: str, unit_id: str, at: datetime) -> PlanAt:
    """The plan with every event the store had written by ``at`` (timezone-aware)."""
    await plan_stream_version(store, cycle_id, unit_id)
    if at.tzinfo is None:
        raise AuditError("time_zone_missing", "the moment has no time zone; add one (Z or +hh:mm)")
    stream = plan_id(cycle_id, unit_id)
    recorded = await store.read_stream(stream, as_of=at)
    if not recorded:
        opening = (await store.read_stream(stream, limit=1))[0]
        raise AuditError(
            PLAN_NOT_YET_OPENED,
            f"the plan of {unit_id} in {cycle_id} did not exist yet at {at.isoformat()}: it was opened at "
            f"{opening.recorded_at.isoformat()}; ask for a moment after that",
            not_found=True,
        )
    last = recorded[-1]
    return PlanAt(state=fold(recorded), version=last.version, recorded_at=last.recorded_at, as_of=at)


async def diff_at_times(
    store: EventStore, cycle_id: str, unit_id: str, old_at: datetime, new_at: datetime
) -> DiffAt:
    """The diff from the plan's latest revision at ``old_at`` to its latest revision at ``new_at``, and
    every other change of its state in between."""
    if old_at > new_at:
        raise AuditError(
            INVALID_RANGE,
            f"from ({old_at.isoformat()}) is after to ({new_at.isoformat()}); swap them",
        )
    old_plan = await plan_at_time(store, cycle_id, unit_id, old_at)
    new_plan = await plan_at_time(store, cycle_id, unit_id, new_at)
    old, new = _latest_revision(old_plan, "from"), _latest_revision(new_plan, "to")
    return DiffAt(
        old=old,
        new=new,
        diff=diff_content(old.revision.content, new.revision.content),
        changes=state_changes(old_plan.state, new_plan.state),
    )


def _latest_revision(plan: PlanAt, name: str) -> RevisionAt:
    revision = plan.state.latest_revision
    assert plan.as_of is not None
    if revision is None:
        raise AuditError(
            NO_REVISION_AT_TIME,
            f"at {name} ({plan.as_of.isoformat()}) the plan had no revision yet; "
            "pick a moment after its first revision (see its history: type=RevisionRecorded)",
            not_found=True,
        )
    return RevisionAt(as_of=plan.as_of, version=plan.version, revision=revision)
