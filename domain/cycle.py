"""The cycle-level decider: opening a planning cycle decides which units get plans and each plan's approval
chain.

A cycle is a small stream of its own; each plan it lists is then opened with the OpenPlan command that
`open_plan_commands` builds, so every plan stream stays self-contained.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from domain.approval import Gate, check_chain
from domain.base import DomainModel, OrgLevel, UtcDateTime
from domain.calendar import CycleCalendar
from domain.commands import OpenPlan
from domain.errors import DomainError, ErrorCode
from domain.money import CurrencyCode
from domain.org import OrgHierarchy
from domain.tracking import StatusThresholds


class PlannedUnit(DomainModel):
    unit_id: str
    level: OrgLevel
    parent_id: str | None
    authors: tuple[str, ...]
    currency: CurrencyCode
    approval_chain: tuple[Gate, ...]


class OpenCycle(DomainModel):
    type: Literal["OpenCycle"] = "OpenCycle"
    schema_version: int = 1
    actor: str = Field(min_length=1)
    at: UtcDateTime
    on_behalf_of: str | None = None
    calendar: CycleCalendar
    hierarchy: OrgHierarchy
    currency: CurrencyCode = "EUR"


class CloseCycle(DomainModel):
    type: Literal["CloseCycle"] = "CloseCycle"
    schema_version: int = 1
    actor: str = Field(min_length=1)
    at: UtcDateTime
    on_behalf_of: str | None = None
    reason: str


class CycleOpened(DomainModel):
    type: Literal["CycleOpened"] = "CycleOpened"
    schema_version: int = 1
    actor: str
    at: UtcDateTime
    on_behalf_of: str | None = None
    calendar: CycleCalendar
    hierarchy: OrgHierarchy
    plans: tuple[PlannedUnit, ...]


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
    plans: tuple[PlannedUnit, ...] = ()
    closed: bool = False
    version: int = 0


def decide_cycle(state: CycleState, command: CycleCommand) -> list[CycleEvent]:
    if isinstance(command, OpenCycle):
        if state.cycle_id is not None:
            raise DomainError(
                ErrorCode.CYCLE_ALREADY_OPENED, f"cycle {state.cycle_id} is already open; work on its plans"
            )
        plans = []
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
            plans.append(
                PlannedUnit(
                    unit_id=unit.unit_id,
                    level=unit.level,
                    parent_id=unit.parent_id,
                    authors=(unit.head,),
                    currency=command.currency,
                    approval_chain=chain,
                )
            )
        return [
            CycleOpened(
                actor=command.actor,
                at=command.at,
                on_behalf_of=command.on_behalf_of,
                calendar=command.calendar,
                hierarchy=command.hierarchy,
                plans=tuple(plans),
            )
        ]
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


def evolve_cycle(state: CycleState, event: CycleEvent) -> CycleState:
    if isinstance(event, CycleOpened):
        return state.model_copy(
            update={
                "cycle_id": event.calendar.cycle_id,
                "calendar": event.calendar,
                "hierarchy": event.hierarchy,
                "plans": event.plans,
                "version": state.version + 1,
            }
        )
    return state.model_copy(update={"closed": True, "version": state.version + 1})


def replay_cycle(events: Iterable[CycleEvent], initial: CycleState | None = None) -> CycleState:
    state = initial if initial is not None else CycleState()
    for event in events:
        state = evolve_cycle(state, event)
    return state


def open_plan_commands(
    state: CycleState, actor: str, at: datetime, thresholds: StatusThresholds | None = None
) -> list[OpenPlan]:
    """The OpenPlan command of every unit below global, in hierarchy order."""
    if state.cycle_id is None or state.calendar is None:
        raise DomainError(ErrorCode.CYCLE_NOT_OPENED, "the cycle is not open; send OpenCycle first")
    return [
        OpenPlan(
            actor=actor,
            at=at,
            cycle_id=state.cycle_id,
            unit_id=plan.unit_id,
            authors=plan.authors,
            currency=plan.currency,
            calendar=state.calendar,
            approval_chain=plan.approval_chain,
            thresholds=thresholds or StatusThresholds(),
        )
        for plan in state.plans
    ]
