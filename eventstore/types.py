"""The envelopes the store knows: events to append, recorded events, feed cursors, reports.

Plain frozen dataclasses with slots rather than pydantic models: reads build thousands of these
per page, and their contents were validated by whoever wrote them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal
from uuid import UUID

from eventstore.errors import InvalidEventError

#: Expected-version values besides an exact version number.
ANY: Final = "any"
NO_STREAM: Final = "no_stream"
ExpectedVersion = int | Literal["any", "no_stream"]


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append. The caller chooses the id, so a retried append is recognised."""

    event_id: UUID
    type: str
    data: Mapping[str, Any]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.event_id, UUID):
            raise InvalidEventError(f"event_id must be a UUID, got {self.event_id!r}")
        if not self.type:
            raise InvalidEventError("an event needs a non-empty type, e.g. 'PlanSubmitted'")
        if self.schema_version < 1:
            raise InvalidEventError(f"schema_version must be 1 or more, got {self.schema_version}")


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as stored, with its place in its stream, in the feed, and in the hash chain."""

    position: int
    stream_id: str
    version: int
    event_id: UUID
    type: str
    schema_version: int
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime
    prev_hash: str
    hash: str
    tx_id: int

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.tx_id, self.position)


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append wrote (or, for a retried append, what the first attempt wrote)."""

    stream_id: str
    version: int
    positions: tuple[int, ...]
    duplicate: bool = False


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    """A place in the global feed: after the event written by transaction tx_id at position.

    Its text form ``"<tx_id>-<position>"`` is what API clients hand back to continue.
    """

    tx_id: int = 0
    position: int = 0

    def __str__(self) -> str:
        return f"{self.tx_id}-{self.position}"

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        if not text:
            return cls()
        try:
            tx, pos = text.split("-")
            cursor = cls(int(tx), int(pos))
        except ValueError:
            raise InvalidEventError(
                f"cursor {text!r} is not valid; pass the cursor a previous page returned, or none to start"
            ) from None
        if cursor.tx_id < 0 or cursor.position < 0:
            raise InvalidEventError(f"cursor {text!r} is not valid; its parts cannot be negative")
        return cursor


START: Final = Cursor()


@dataclass(frozen=True, slots=True)
class Page:
    """A page of the global feed and the cursor to pass for the next one."""

    events: list[RecordedEvent]
    cursor: Cursor


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first event of a stream whose stored hash chain does not match its content."""

    stream_id: str
    version: int
    event_id: UUID | None
    position: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of recomputing hash chains: how much was checked and the first break per stream."""

    streams_checked: int
    events_checked: int
    breaks: tuple[ChainBreak, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.breaks
