"""Read models folded from each plan's state: the plan list and the approvals inbox.

Both fold the stream with the domain's own ``evolve`` (the same code the workflow and the auditors
run), keeping a snapshot of the state per plan, so what a list shows cannot drift from what the
workflow decided. Each keeps a snapshot of its own, so either can be rebuilt alone.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Final, get_args

import asyncpg

from domain import Event, PlanState, evolve
from domain.clock import missing_actuals, pending_approvers
from domain.state import Phase
from eventstore import RecordedEvent
from planloop.readmodels.projector import Projection

#: Every plan event type the domain knows (the members of the discriminated Event union).
PLAN_EVENT_TYPES: Final = frozenset(cls.model_fields["type"].default for cls in get_args(get_args(Event)[0]))

LOAD_STATE: Final = """
SELECT version, state::text AS state FROM projection_plan_states WHERE projection = $1 AND stream_id = $2
"""
SAVE_STATE: Final = """
INSERT INTO projection_plan_states (projection, stream_id, version, state) VALUES ($1, $2, $3, $4::jsonb)
ON CONFLICT (projection, stream_id) DO UPDATE SET version = EXCLUDED.version, state = EXCLUDED.state
"""
DELETE_STATES: Final = "DELETE FROM projection_plan_states WHERE projection = $1"


class PlanStateProjection(Projection):
    """Folds each plan stream with domain.evolve and hands the new state to ``write``."""

    event_types = PLAN_EVENT_TYPES
    stream_prefix = "plan:"

    async def reset(self, conn: asyncpg.Connection) -> None:
        await super().reset(conn)
        await conn.execute(DELETE_STATES, self.name)

    async def apply(self, conn: asyncpg.Connection, recorded: RecordedEvent, decoded: Any) -> None:
        row = await conn.fetchrow(LOAD_STATE, self.name, recorded.stream_id)
        if row is not None and recorded.version <= row["version"]:
            return  # already folded in; the checkpoint makes this unreachable, the guard makes it certain
        state = PlanState.empty() if row is None else PlanState.model_validate_json(row["state"])
        state = evolve(state, decoded)
        await conn.execute(
            SAVE_STATE, self.name, recorded.stream_id, recorded.version, state.model_dump_json()
        )
        await self.write(conn, recorded, decoded, state)

    @abstractmethod
    async def write(
        self, conn: asyncpg.Connection, recorded: RecordedEvent, event: Any, state: PlanState
    ) -> None:
        """Bring the projection's rows for ``recorded.stream_id`` in line with ``state``."""


def overdue_actuals(state: PlanState) -> tuple[str, ...]:
    """Months flagged overdue at their close whose actuals are still not all in."""
    return tuple(month for month in state.overdue_months if missing_actuals(state, month))


UPSERT_PLAN: Final = """
INSERT INTO plan_list (
    stream_id, cycle_id, unit_id, phase, iteration, current_revision, signed_off_revision, authors,
    gate_id, gate_index, pending_approvers, gate_due_at, gate_escalated, actuals_overdue_months,
    explanations_overdue, overdue, last_event_at, version, explanations_owed_by
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
ON CONFLICT (stream_id) DO UPDATE SET
    cycle_id = EXCLUDED.cycle_id, unit_id = EXCLUDED.unit_id, phase = EXCLUDED.phase,
    iteration = EXCLUDED.iteration, current_revision = EXCLUDED.current_revision,
    signed_off_revision = EXCLUDED.signed_off_revision, authors = EXCLUDED.authors,
    gate_id = EXCLUDED.gate_id, gate_index = EXCLUDED.gate_index,
    pending_approvers = EXCLUDED.pending_approvers, gate_due_at = EXCLUDED.gate_due_at,
    gate_escalated = EXCLUDED.gate_escalated, actuals_overdue_months = EXCLUDED.actuals_overdue_months,
    explanations_overdue = EXCLUDED.explanations_overdue, overdue = EXCLUDED.overdue,
    last_event_at = EXCLUDED.last_event_at, version = EXCLUDED.version,
    explanations_owed_by = EXCLUDED.explanations_owed_by
"""


class PlanListProjection(PlanStateProjection):
    """plan_list: one row per plan with its phase, revisions, current gate and overdue flags."""

    name = "plan_list"
    reset_statements = ("DELETE FROM plan_list",)

    async def write(
        self, conn: asyncpg.Connection, recorded: RecordedEvent, event: Any, state: PlanState
    ) -> None:
        assert state.phase is not None  # every plan stream starts with PlanOpened
        in_review = state.phase is Phase.IN_REVIEW and state.gate is not None
        gate, progress = (state.current_gate, state.gate) if in_review else (None, None)
        months = overdue_actuals(state)
        explanations = sum(1 for d in state.deviations if d.overdue_flagged and d.explanation is None)
        # Deviations are explained while the plan tracks actuals; after that nobody can, so nobody owes.
        tracking = state.phase in (Phase.EXECUTING, Phase.LEARNING)
        owed_by = sorted({d.owner for d in state.deviations if d.explanation is None}) if tracking else []
        escalated = bool(progress and progress.escalated)
        latest = state.latest_revision
        await conn.execute(
            UPSERT_PLAN,
            recorded.stream_id,
            state.cycle_id,
            state.unit_id,
            state.phase.value,
            state.iteration,
            latest.number if latest else None,
            state.signed_off_revision,
            list(state.authors),
            gate.gate_id if gate else None,
            progress.index if progress else None,
            list(pending_approvers(state)),
            progress.due_at if progress else None,
            escalated,
            list(months),
            explanations,
            bool(months) or explanations > 0 or escalated,
            event.at,
            recorded.version,
            owed_by,
        )


CLEAR_INBOX: Final = "DELETE FROM approval_inbox WHERE stream_id = $1"
INSERT_INBOX: Final = """
INSERT INTO approval_inbox (
    approver, stream_id, seat, via, cycle_id, unit_id, gate_id, gate_index, revision, content_hash,
    due_at, escalated, valid_from, valid_until
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
"""


class ApprovalInboxProjection(PlanStateProjection):
    """approval_inbox: who can decide a pending seat at each plan's current gate, so "waiting on me"
    is one indexed query. A plan's rows are replaced whole on each of its events."""

    name = "approval_inbox"
    reset_statements = ("DELETE FROM approval_inbox",)

    async def write(
        self, conn: asyncpg.Connection, recorded: RecordedEvent, event: Any, state: PlanState
    ) -> None:
        await conn.execute(CLEAR_INBOX, recorded.stream_id)
        seats = pending_approvers(state)
        gate, progress, submission = state.current_gate, state.gate, state.submission
        if not seats or gate is None or progress is None or submission is None:
            return
        common = (
            state.cycle_id,
            state.unit_id,
            gate.gate_id,
            progress.index,
            submission.revision,
            submission.content_hash,
            progress.due_at,
            progress.escalated,
        )
        rows: list[tuple[Any, ...]] = []
        for seat in seats:
            rows.append((seat, recorded.stream_id, seat, "seat", *common, None, None))
            rows.extend(
                (d.delegate, recorded.stream_id, seat, "delegation", *common, d.starts, d.ends)
                for d in state.delegations
                if d.approver == seat
            )
        if progress.escalated and gate.fallback_approver not in seats:
            # An escalated gate's fallback approver decides for the whole gate.
            fallback = gate.fallback_approver
            rows.append((fallback, recorded.stream_id, fallback, "fallback", *common, None, None))
        await conn.executemany(INSERT_INBOX, rows)
