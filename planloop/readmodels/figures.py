"""The plan figures read model: each plan's key figures, for a cycle's roll-up up the hierarchy.

A cycle of thousands of plans cannot carry every plan's figures in its workflow (Temporal's payloads are
limited to 2 MB, about 600 bytes a plan), so the roll-up reads them here: one row per plan holding
``domain.rollup.plan_figures`` of the plan's state (folded with the domain's own ``evolve``), which
``cycle_figures`` hands to ``domain.rollup.consolidate_figures``, the same code the tests check against
the stored events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import asyncpg
from pydantic import TypeAdapter

from domain import PlanState
from domain.rollup import PlanFigures, plan_figures
from eventstore import RecordedEvent
from planloop.readmodels.plans import PlanStateProjection

UPSERT_FIGURES: Final = """
INSERT INTO plan_figures (stream_id, cycle_id, unit_id, version, figures) VALUES ($1, $2, $3, $4, $5::jsonb)
ON CONFLICT (stream_id) DO UPDATE SET
    cycle_id = EXCLUDED.cycle_id, unit_id = EXCLUDED.unit_id, version = EXCLUDED.version,
    figures = EXCLUDED.figures
"""
# One row of JSON for the whole cycle (or the units named): parsing it once is faster than a row per plan.
CYCLE_FIGURES: Final = """
SELECT coalesce(json_agg(figures), '[]')::text FROM plan_figures
WHERE cycle_id = $1 AND ($2::text[] IS NULL OR unit_id = ANY($2::text[]))
"""

_FIGURES_LIST: Final = TypeAdapter(list[PlanFigures])


class PlanFiguresProjection(PlanStateProjection):
    """plan_figures: one row per plan with its key figures (phase, totals in force, actuals to date)."""

    name = "plan_figures"
    reset_statements = ("DELETE FROM plan_figures",)

    async def write(
        self, conn: asyncpg.Connection, recorded: RecordedEvent, event: Any, state: PlanState
    ) -> None:
        figures = plan_figures(state)
        await conn.execute(
            UPSERT_FIGURES,
            recorded.stream_id,
            state.cycle_id,
            state.unit_id,
            recorded.version,
            figures.model_dump_json(),
        )


async def cycle_figures(
    pool: asyncpg.Pool, cycle_id: str, units: Sequence[str] | None = None
) -> dict[str, PlanFigures]:
    """The figures of the cycle's plans (of ``units`` only, when named), by unit id; a plan the projector
    has not reached yet is absent."""
    raw = await pool.fetchval(CYCLE_FIGURES, cycle_id, None if units is None else list(units))
    return {f.unit_id: f for f in _FIGURES_LIST.validate_json(raw)}
