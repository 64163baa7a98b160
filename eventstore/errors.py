"""Errors the event store raises. Each message says what was wrong and what to do about it."""

from __future__ import annotations

from uuid import UUID


class EventStoreError(Exception):
    """Base class of every error the event store raises on purpose."""


class InvalidEventError(EventStoreError, ValueError):
    """An event (or an argument) cannot be stored as given; nothing was written."""


class ConcurrencyError(EventStoreError):
    """The stream is not at the version the writer expected; nothing was written."""

    def __init__(self, stream_id: str, expected: str, actual: int) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"stream {stream_id!r} is at version {actual}, but the append expected {expected}; "
            "re-read the stream, decide again on its current state, and retry"
        )


class DuplicateEventError(EventStoreError):
    """An event id is already stored with other content (or in another stream); nothing was written."""

    def __init__(self, event_id: UUID, reason: str) -> None:
        self.event_id = event_id
        super().__init__(
            f"event id {event_id} is already stored {reason}; an event id names one event for ever: "
            "a retry must resend the same content, a new event needs a new id"
        )
