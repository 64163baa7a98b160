"""The read models planloop ships, by name, and the commands that act on them by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from eventstore import EventStore
from planloop.readmodels.figures import PlanFiguresProjection
from planloop.readmodels.plans import ApprovalInboxProjection, PlanListProjection
from planloop.readmodels.projector import Projection, ProjectionStatus, catch_up, reset, status
from planloop.readmodels.tracking_projection import TrackingProjection


def all_projections() -> list[Projection]:
    """A fresh instance of every read model, in the order they are caught up."""
    return [PlanListProjection(), ApprovalInboxProjection(), TrackingProjection(), PlanFiguresProjection()]


def projections(names: Sequence[str] | None = None) -> list[Projection]:
    """The read models called ``names`` (all when none are named)."""
    known = {p.name: p for p in all_projections()}
    if not names:
        return list(known.values())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(
            f"no read model called {', '.join(map(repr, unknown))}; choose from {', '.join(known)}"
        )
    return [known[n] for n in names]


async def rebuild(
    store: EventStore,
    names: Sequence[str] | None = None,
    batch_size: int = 500,
    on_batch: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Empty the named read models (all by default) and replay the whole feed into them.

    Each model is reset in one short transaction and then caught up batch by batch: one long
    transaction would hold back every feed reader until it ends. Readers see the model fill up
    again meanwhile. Returns the events each model applied; ``on_batch(model, events read)`` hears
    each batch.
    """
    applied: dict[str, int] = {}
    for projection in projections(names):
        await reset(store, projection)
        hear = None if on_batch is None else partial(on_batch, projection.name)
        applied[projection.name] = await catch_up(store, projection, batch_size, hear)
    return applied


async def statuses(store: EventStore, names: Sequence[str] | None = None) -> list[ProjectionStatus]:
    """Each read model's checkpoint and whether it has caught up with the feed."""
    return [await status(store, p) for p in projections(names)]
