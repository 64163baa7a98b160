"""What travels with an event into the store: who caused it, on whose behalf, from where, and why.

These are the envelopes a workflow hands to the append activity. They live in the domain because both
sides of that call (workflows and activities) may import the domain and nothing else of each other.
"""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class EventMetadata(BaseModel):
    """Who and what caused an event; stored beside it and covered by its hash."""

    model_config = ConfigDict(frozen=True)

    actor: str
    on_behalf_of: str | None = None
    source: str = "planloop"
    request_id: str | None = None
    causation_id: str | None = None
    correlation_id: str | None = None
    workflow_id: str | None = None
    run_id: str | None = None


class EventToAppend(BaseModel):
    """One event as a workflow hands it over: its id, type, schema version and JSON data."""

    model_config = ConfigDict(frozen=True)

    event_id: UUID
    type: str
    schema_version: int = 1
    data: dict[str, Any]
    metadata: EventMetadata


class AppendRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    stream_id: str
    expected_version: int | Literal["any", "no_stream"]
    events: list[EventToAppend] = Field(min_length=1)


class AppendOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    stream_id: str
    version: int
    positions: list[int]
    duplicate: bool
