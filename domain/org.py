"""Org units in a hierarchy (global, region, country, business unit) and the approval chain each plan
walks."""

from __future__ import annotations

from pydantic import Field, PrivateAttr, model_validator

from domain.approval import Gate, GateMode
from domain.base import DomainModel, OrgLevel
from domain.calendar import CycleCalendar
from domain.errors import DomainError, ErrorCode


class OrgUnit(DomainModel):
    unit_id: str = Field(min_length=1)
    name: str
    level: OrgLevel
    parent_id: str | None = None
    # The plan author (business-unit head or country manager); the unit's leadership decide at its gate.
    head: str | None = None
    approvers: tuple[str, ...] = ()
    approval_mode: GateMode = GateMode.SINGLE
    quorum: int | None = None
    fallback_approver: str | None = None


class OrgHierarchy(DomainModel):
    units: tuple[OrgUnit, ...]
    # Lookups by id and by parent: a cycle of thousands of units asks for every unit's ancestors, and a
    # scan per lookup made opening such a cycle quadratic. Private, so never serialised; derived from
    # `units` alone, so two equal hierarchies have equal indexes.
    _by_id: dict[str, OrgUnit] = PrivateAttr(default_factory=dict)
    _children: dict[str, tuple[OrgUnit, ...]] = PrivateAttr(default_factory=dict)
    _indexed: tuple[OrgUnit, ...] = PrivateAttr(default=())

    def _index(self) -> None:
        # Rebuilt when `units` is not the tuple that was indexed (model_copy(update=...) skips post-init).
        if self._indexed is self.units:
            return
        children: dict[str, list[OrgUnit]] = {}
        for unit in self.units:
            if unit.parent_id is not None:
                children.setdefault(unit.parent_id, []).append(unit)
        self._by_id = {u.unit_id: u for u in self.units}
        self._children = {parent: tuple(found) for parent, found in children.items()}
        self._indexed = self.units

    def model_post_init(self, context: object, /) -> None:
        self._index()

    # Equal units make equal hierarchies, whatever the state of the private index (pydantic would
    # otherwise compare private attributes too, e.g. after a model_copy that has not re-indexed yet).
    def __eq__(self, other: object) -> bool:
        return isinstance(other, OrgHierarchy) and self.units == other.units

    def __hash__(self) -> int:
        return hash(self.units)

    @model_validator(mode="after")
    def _one_tree(self) -> OrgHierarchy:
        ids = [u.unit_id for u in self.units]
        if len(set(ids)) != len(ids):
            raise ValueError("unit ids must be unique")
        roots = [u for u in self.units if u.level is OrgLevel.GLOBAL]
        if len(roots) != 1 or roots[0].parent_id is not None:
            raise ValueError("there must be exactly one global unit, without a parent")
        by_id = {u.unit_id: u for u in self.units}
        for unit in self.units:
            if unit.level is OrgLevel.GLOBAL:
                continue
            parent = by_id.get(unit.parent_id or "")
            # Parents sit strictly higher, which also rules out cycles.
            if parent is None or parent.level.rank >= unit.level.rank:
                raise ValueError(f"unit '{unit.unit_id}' needs a parent at a higher level")
        return self

    def unit(self, unit_id: str) -> OrgUnit:
        self._index()
        found = self._by_id.get(unit_id)
        if found is not None:
            return found
        raise DomainError(
            ErrorCode.INVALID_ORG, f"there is no unit '{unit_id}' in the hierarchy; use one of its unit ids"
        )

    def children(self, unit_id: str) -> tuple[OrgUnit, ...]:
        self._index()
        return self._children.get(unit_id, ())

    def ancestors(self, unit_id: str) -> tuple[OrgUnit, ...]:
        """Parent first, global last."""
        chain: list[OrgUnit] = []
        unit = self.unit(unit_id)
        while unit.parent_id is not None:
            unit = self.unit(unit.parent_id)
            chain.append(unit)
        return tuple(chain)

    def descendants(self, unit_id: str) -> tuple[OrgUnit, ...]:
        found: list[OrgUnit] = []
        for child in self.children(unit_id):
            found.append(child)
            found.extend(self.descendants(child.unit_id))
        return tuple(found)

    def units_below_global(self) -> tuple[OrgUnit, ...]:
        """Every unit that has a plan in a cycle, ordered from the top of the tree down."""
        return tuple(
            sorted(
                (u for u in self.units if u.level is not OrgLevel.GLOBAL),
                key=lambda u: (u.level.rank, u.unit_id),
            )
        )

    def approval_chain(self, unit_id: str, calendar: CycleCalendar) -> tuple[Gate, ...]:
        """One gate per unit above, nearest first: e.g. country management, regional leadership, global."""
        gates: list[Gate] = []
        for above in self.ancestors(unit_id):
            deadline = calendar.gate_deadline(above.level)
            if not above.approvers or above.fallback_approver is None or deadline is None:
                raise DomainError(
                    ErrorCode.INVALID_ORG,
                    f"unit '{above.unit_id}' decides on plans below it but lacks approvers, a fallback "
                    f"approver or a {above.level.value} gate deadline in the calendar; "
                    "complete the org data first",
                )
            gates.append(
                Gate(
                    gate_id=f"{above.level.value}:{above.unit_id}",
                    name=f"{above.name} ({above.level.value})",
                    approvers=above.approvers,
                    mode=above.approval_mode,
                    quorum=above.quorum,
                    deadline=deadline,
                    fallback_approver=above.fallback_approver,
                )
            )
        return tuple(gates)
