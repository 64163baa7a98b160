"""Read models: projections of the event store kept current by a projector with a checkpoint.

    plan_list       one row per plan: phase, revisions, current gate, pending approvers, overdue flags
    approval_inbox  who can decide what, now: "waiting on me" in one query
    tracking        per plan, measure and month: target, actual, status
    plan_figures    per plan, its key figures: what a cycle's roll-up up the hierarchy adds

Each is rebuildable from scratch (``rebuild``); ``Projector`` keeps them current.
"""

from planloop.readmodels.plans import ApprovalInboxProjection, PlanListProjection
from planloop.readmodels.projector import (
    BatchResult,
    Projection,
    ProjectionStatus,
    Projector,
    catch_up,
    checkpoint,
    reset,
    run_batch,
)
from planloop.readmodels.queries import (
    InboxItem,
    PlanSummary,
    PlanTracking,
    TrackingLine,
    inbox,
    list_plans,
    tracking,
    waiting_on_person,
)
from planloop.readmodels.registry import all_projections, projections, rebuild, statuses
from planloop.readmodels.tracking_projection import TrackingProjection

__all__ = [
    "ApprovalInboxProjection",
    "BatchResult",
    "InboxItem",
    "PlanListProjection",
    "PlanSummary",
    "PlanTracking",
    "Projection",
    "ProjectionStatus",
    "Projector",
    "TrackingLine",
    "TrackingProjection",
    "all_projections",
    "catch_up",
    "checkpoint",
    "inbox",
    "list_plans",
    "projections",
    "rebuild",
    "reset",
    "run_batch",
    "statuses",
    "tracking",
    "waiting_on_person",
]
