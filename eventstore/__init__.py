"""A generic, append-only, hash-chained event store on PostgreSQL (asyncpg).

It knows envelopes (stream, version, type, JSON data and metadata), never plans.
"""

from eventstore.errors import ConcurrencyError, DuplicateEventError, EventStoreError, InvalidEventError
from eventstore.store import EventStore
from eventstore.subscription import Subscription
from eventstore.types import (
    ANY,
    NO_STREAM,
    START,
    AppendResult,
    ChainBreak,
    Cursor,
    ExpectedVersion,
    NewEvent,
    Page,
    RecordedEvent,
    VerifyReport,
)

__all__ = [
    "ANY",
    "NO_STREAM",
    "START",
    "AppendResult",
    "ChainBreak",
    "ConcurrencyError",
    "Cursor",
    "DuplicateEventError",
    "EventStore",
    "EventStoreError",
    "ExpectedVersion",
    "InvalidEventError",
    "NewEvent",
    "Page",
    "RecordedEvent",
    "Subscription",
    "VerifyReport",
]
