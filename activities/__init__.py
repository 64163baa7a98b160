"""Temporal activities: the only I/O a workflow does (append events, notify, fetch)."""

from activities.eventstore import (
    AppendOutcome,
    AppendRequest,
    EventMetadata,
    EventStoreActivities,
    EventToAppend,
    build_activities,
)

__all__ = [
    "AppendOutcome",
    "AppendRequest",
    "EventMetadata",
    "EventStoreActivities",
    "EventToAppend",
    "build_activities",
]
