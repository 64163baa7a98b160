"""Temporal activities: the only I/O a workflow does (append events, notify, fetch)."""

from activities.eventstore import EventStoreActivities, build_activities

__all__ = ["EventStoreActivities", "build_activities"]
