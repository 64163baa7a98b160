"""Reading plans and cycles from the event store: the stored events folded with the domain's own ``replay``,
the same code the workflow runs, so what the API shows is what an auditor reconstructs."""

from __future__ import annotations

from domain import OrgHierarchy, PlanState, decode_event, replay
from domain.cycle import CycleState, replay_cycle
from eventstore import EventStore
from workflows import cycle_workflow_id, plan_id

from .auth import Principal
from .errors import CYCLE_NOT_FOUND, PLAN_NOT_FOUND, ApiError


class Reader:
    """Folds streams on request; keeps each cycle's org hierarchy, which never changes once opened."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._hierarchies: dict[str, OrgHierarchy] = {}

    async def plan(self, cycle_id: str, unit_id: str) -> PlanState:
        events = await self.store.read_stream(plan_id(cycle_id, unit_id))
        if not events:
            raise ApiError(
                404,
                PLAN_NOT_FOUND,
                f"there is no plan of unit {unit_id} in cycle {cycle_id}; "
                f"GET /cycles/{cycle_id}/plans lists the cycle's plans",
            )
        return replay(decode_event(e.type, e.schema_version, e.data) for e in events)  # type: ignore[misc]

    async def cycle(self, cycle_id: str) -> CycleState:
        events = await self.store.read_stream(cycle_workflow_id(cycle_id))
        if not events:
            raise ApiError(
                404,
                CYCLE_NOT_FOUND,
                f"there is no cycle {cycle_id}; POST /cycles opens one",
            )
        state = replay_cycle(decode_event(e.type, e.schema_version, e.data) for e in events)  # type: ignore[misc]
        if state.hierarchy is not None:
            self._hierarchies[cycle_id] = state.hierarchy
        return state

    async def hierarchy(self, cycle_id: str) -> OrgHierarchy | None:
        """The cycle's org hierarchy; None for a plan started outside any cycle."""
        if cycle_id not in self._hierarchies:
            try:
                await self.cycle(cycle_id)
            except ApiError:
                return None
        return self._hierarchies.get(cycle_id)

    async def ancestors(self, cycle_id: str, unit_id: str) -> tuple[str, ...]:
        """The units above ``unit_id`` in the cycle's hierarchy, parent first (none if unknown)."""
        hierarchy = await self.hierarchy(cycle_id)
        if hierarchy is None or unit_id not in {u.unit_id for u in hierarchy.units}:
            return ()
        return tuple(u.unit_id for u in hierarchy.ancestors(unit_id))

    async def require_scope(self, principal: Principal, cycle_id: str, unit_id: str) -> None:
        """403 unless ``principal`` may see or act on the unit's plan."""
        if principal.company_wide:
            return
        principal.require_scope(unit_id, await self.ancestors(cycle_id, unit_id))
