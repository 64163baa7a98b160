"""The cycle-level decider: opening a planning cycle decides which units get plans and each plan's approval
chain.

A cycle is a small stream of its own; each plan it lists is then opened with the OpenPlan command that
`open_plan_command` builds, so every plan stream stays self-contained (its PlanOpened records its chain).

CycleOpened records the hierarchy, the calendar and the currency, and nothing per plan that those three
determine: v1 also listed every unit's approval chain, about 820 bytes a unit, which put a cycle of a few
thousand units past Temporal's 2 MB payload limit. The chains are derived from the hierarchy with the same
rules (`OrgHierarchy.approval_chain`, checked by `check_chain` at opening); a stored v1 event is upcast
when read (domain.upcasting) and never rewritten.

In Temporal payloads (not in the event store) the hierarchy travels as a table (`pack_hierarchy`): one
row of values per unit, trailing defaults left out, which is less than half the size of a list of objects.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, field_serializer, field_validator
from pydantic_core import PydanticUndefined

from domain.approval import check_chain
from domain.base import DomainModel, OrgLevel, UtcDateTime
from domain.calendar import CycleCalendar, Pace
from domain.canonical import JsonValue, to_json_safe
from domain.commands import OpenPlan
from domain.errors import DomainError, ErrorCode
from domain.money import CurrencyCode
from domain.org import OrgHierarchy, OrgUnit
from domain.rollup import PlanFigures
from domain.state import Phase
from domain.tracking import StatusThresholds

# The table form of a hierarchy: the columns are OrgUnit's fields, in its order (defaulted fields last).
_COLUMNS: tuple[str, ...] = tuple(OrgUnit.model_fields)
_DEFAULTS: tuple[JsonValue | object, ...] = tuple(
    PydanticUndefined if f.is_required() else to_json_safe(f.get_default(call_default_factory=True))
    for f in OrgUnit.model_fields.values()
)


def pack_hierarchy(hierarchy: OrgHierarchy) -> dict[str, JsonValue]:
    """The hierarchy as ``{"columns": [...], "rows": [[...], ...]}``, each row without its trailing
    defaults: what the cycle's Temporal payloads carry (see the module docstring)."""
    rows: list[JsonValue] = []
    for unit in hierarchy.units:
        row = [to_json_safe(getattr(unit, column)) for column in _COLUMNS]
        while row and row[-1] == _DEFAULTS[len(row) - 1]:
            row.pop()
        rows.append(row)
    return {"columns": list(_COLUMNS), "rows": rows}


def unpack_hierarchy(value: Any) -> Any:
    """The units of a packed hierarchy as plain mappings for validation; anything else unchanged."""
    if isinstance(value, dict) and set(value) == {"columns", "rows"}:
        columns = value["columns"]
        return {"units": [dict(zip(columns, row, strict=False)) for row in value["rows"]]}
    return value


class _PacksHierarchy(DomainModel):
    """A model whose ``hierarchy`` is packed in JSON (Temporal payloads) and read back in either form."""

    hierarchy: OrgHierarchy

    @field_serializer("hierarchy", when_used="json")
    def _pack(self, hierarchy: OrgHierarchy) -> dict[str, Any]:  # JsonValue: pydantic cannot follow it
        return pack_hierarchy(hierarchy)

    @field_validator("hierarchy", mode="before")
    @classmethod
    def _unpack(cls, value: Any) -> Any:
        return unpack_hierarchy(value)


class PlannedUnit(DomainModel):
    """A unit that has a plan in the cycle; its approval chain comes from the hierarchy when it opens."""

    unit_id: str
    level: OrgLevel
    parent_id: str | None
    authors: tuple[str, ...]
    currency: CurrencyCode


class OpenCycle(_PacksHierarchy):
    type: Literal["OpenCycle"] = "OpenCycle"
    schema_version: int = 1
    actor: str = Field(min_length=1)
    at: UtcDateTime
    on_behalf_of: str | None = None
    calendar: CycleCalendar
    hierarchy: OrgHierarchy
    currency: CurrencyCode = "EUR"
    # A compressed calendar (demos, training); None: the cycle runs on real time.
    pace: Pace | None = None


class CloseCycle(DomainModel):
    type: Literal["CloseCycle"] = "CloseCycle"
    schema_version: int = 1
    actor: str = Field(min_length=1)
    at: UtcDateTime
    on_behalf_of: str | None = None
    reason: str


class CycleOpened(_PacksHierarchy):
    type: Literal["CycleOpened"] = "CycleOpened"
    # v2: no per-unit list of plans and chains (derived from the hierarchy); the currency instead.
    schema_version: int = 2
    actor: str
    at: UtcDateTime
    on_behalf_of: str | None = None
    calendar: CycleCalendar
    hierarchy: OrgHierarchy
    currency: CurrencyCode
    # Recorded so that an auditor knows the ``at`` of every event in the cycle is calendar time.
    pace: Pace | None = None


class CycleClosed(DomainModel):
    type: Literal["CycleClosed"] = "CycleClosed"
    schema_version: int = 1
    actor: str
    at: UtcDateTime
    on_behalf_of: str | None = None
    reason: str


CycleCommand = Annotated[OpenCycle | CloseCycle, Field(discriminator="type")]
CycleEvent = Annotated[CycleOpened | CycleClosed, Field(discriminator="type")]
CycleCommandAdapter: TypeAdapter[CycleCommand] = TypeAdapter(CycleCommand)
CycleEventAdapter: TypeAdapter[CycleEvent] = TypeAdapter(CycleEvent)


class CycleState(DomainModel):
    cycle_id: str | None = None
    calendar: CycleCalendar | None = None
    hierarchy: OrgHierarchy | None = None
    currency: CurrencyCode = "EUR"
    plans: tuple[PlannedUnit, ...] = ()  # derived from the hierarchy, never stored
    closed: bool = False
    version: int = 0


def decide_cycle(state: CycleState, command: CycleCommand) -> list[CycleEvent]:
    if isinstance(command, OpenCycle):
        if state.cycle_id is not None:
            raise DomainError(
                ErrorCode.CYCLE_ALREADY_OPENED, f"cycle {state.cycle_id} is already open; work on its plans"
            )
        for unit in command.hierarchy.units_below_global():
            if unit.head is None:
                raise DomainError(
                    ErrorCode.INVALID_ORG,
                    f"unit '{unit.unit_id}' has no head to author its plan; name one in the org data",
                )
            chain = command.hierarchy.approval_chain(unit.unit_id, command.calendar)
            # The plan's own opening rules, checked here: a plan the cycle starts must be able to open.
            try:
                check_chain(chain, (unit.head,))
            except DomainError as err:
                raise DomainError(err.code, f"unit '{unit.unit_id}': {err.message}") from None
        return [cycle_opened(command)]
    if state.cycle_id is None:
        raise DomainError(ErrorCode.CYCLE_NOT_OPENED, "the cycle is not open; send OpenCycle first")
    if state.closed:
        raise DomainError(
            ErrorCode.CYCLE_CLOSED, f"cycle {state.cycle_id} is already closed; open the next cycle"
        )
    if not command.reason.strip():
        raise DomainError(ErrorCode.REASON_REQUIRED, "a reason for closing the cycle is required; say why")
    return [
        CycleClosed(
            actor=command.actor, at=command.at, on_behalf_of=command.on_behalf_of, reason=command.reason
        )
    ]


def cycle_opened(command: OpenCycle) -> CycleOpened:
    """The event an accepted OpenCycle records. A carried workflow run rebuilds its state from it without
    deciding again: the units were checked when the cycle opened."""
    return CycleOpened(
        actor=command.actor,
        at=command.at,
        on_behalf_of=command.on_behalf_of,
        calendar=command.calendar,
        hierarchy=command.hierarchy,
        currency=command.currency,
        pace=command.pace,
    )


def planned_units(hierarchy: OrgHierarchy, currency: str) -> tuple[PlannedUnit, ...]:
    """Every unit below global, from the top of the tree down: the plans a cycle opens."""
    return tuple(
        PlannedUnit(
            unit_id=unit.unit_id,
            level=unit.level,
            parent_id=unit.parent_id,
            authors=(unit.head,) if unit.head is not None else (),
            currency=currency,
        )
        for unit in hierarchy.units_below_global()
    )


def evolve_cycle(state: CycleState, event: CycleEvent) -> CycleState:
    if isinstance(event, CycleOpened):
        return state.model_copy(
            update={
                "cycle_id": event.calendar.cycle_id,
                "calendar": event.calendar,
                "hierarchy": event.hierarchy,
                "currency": event.currency,
                "plans": planned_units(event.hierarchy, event.currency),
                "version": state.version + 1,
            }
        )
    return state.model_copy(update={"closed": True, "version": state.version + 1})


def replay_cycle(events: Iterable[CycleEvent], initial: CycleState | None = None) -> CycleState:
    state = initial if initial is not None else CycleState()
    for event in events:
        state = evolve_cycle(state, event)
    return state


def open_plan_command(
    state: CycleState, unit_id: str, actor: str, at: datetime, thresholds: StatusThresholds | None = None
) -> OpenPlan:
    """The OpenPlan command of one unit's plan, its approval chain derived from the cycle's hierarchy."""
    if state.cycle_id is None or state.calendar is None or state.hierarchy is None:
        raise DomainError(ErrorCode.CYCLE_NOT_OPENED, "the cycle is not open; send OpenCycle first")
    unit = state.hierarchy.unit(unit_id)
    if unit.head is None or unit.level is OrgLevel.GLOBAL:
        raise DomainError(
            ErrorCode.INVALID_ORG,
            f"unit '{unit_id}' has no plan in cycle {state.cycle_id}; use a unit below global",
        )
    return OpenPlan(
        actor=actor,
        at=at,
        cycle_id=state.cycle_id,
        unit_id=unit.unit_id,
        authors=(unit.head,),
        currency=state.currency,
        calendar=state.calendar,
        approval_chain=state.hierarchy.approval_chain(unit.unit_id, state.calendar),
        thresholds=thresholds or StatusThresholds(),
    )


def open_plan_commands(
    state: CycleState, actor: str, at: datetime, thresholds: StatusThresholds | None = None
) -> list[OpenPlan]:
    """The OpenPlan command of every unit below global, in hierarchy order."""
    if state.cycle_id is None:
        raise DomainError(ErrorCode.CYCLE_NOT_OPENED, "the cycle is not open; send OpenCycle first")
    return [open_plan_command(state, p.unit_id, actor, at, thresholds) for p in state.plans]


# -- following the plans: one small number per plan ------------------------------------------------------

# A cycle of thousands of plans follows each by a progress code, not by its figures (which the plan list
# and figures read models hold): 0 while the plan has not been heard of, else its phase and three flags.
_PHASES: tuple[Phase, ...] = tuple(Phase)
_SIGNED_OFF, _ESCALATED, _OVERDUE = 1, 2, 4


def progress_code(figures: PlanFigures) -> int:
    """The one number a cycle keeps of a plan's figures: its phase, signed off, escalated, overdue."""
    if figures.phase is None:
        return 0
    flags = (
        (_SIGNED_OFF if figures.signed_off_revision is not None else 0)
        | (_ESCALATED if figures.escalated else 0)
        | (_OVERDUE if figures.overdue_months else 0)
    )
    return (_PHASES.index(figures.phase) + 1) * 8 + flags


def code_phase(code: int) -> Phase | None:
    return _PHASES[code // 8 - 1] if code else None


class CycleTally(DomainModel):
    """Where a cycle's plans stand, counted from their progress codes."""

    phases: dict[str, int]
    signed_off: int
    escalated: int
    overdue: int


def tally(codes: Iterable[int]) -> CycleTally:
    phases: dict[str, int] = {}
    signed_off = escalated = overdue = 0
    for code in codes:
        phase = code_phase(code)
        if phase is None:
            continue
        phases[phase.value] = phases.get(phase.value, 0) + 1
        signed_off += bool(code & _SIGNED_OFF)
        escalated += bool(code & _ESCALATED)
        overdue += bool(code & _OVERDUE)
    return CycleTally(
        phases=dict(sorted(phases.items())), signed_off=signed_off, escalated=escalated, overdue=overdue
    )
