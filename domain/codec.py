"""Encoding events for storage and hashing, and decoding them back (running upcasters on the way in)."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel

from domain.canonical import JsonValue, canonical_json, to_json_safe
from domain.cycle import CycleEvent, CycleOpened, pack_hierarchy
from domain.errors import DomainError, ErrorCode
from domain.events import Event
from domain.upcasting import upcast

__all__ = ["canonical_json", "current_schema_version", "decode_event", "encode_event"]


def _classes_of(union: object) -> dict[str, type[BaseModel]]:
    """The event classes of an `Annotated[A | B | ..., Field(discriminator=...)]` union, by type name."""
    members = get_args(get_args(union)[0])
    return {cls.model_fields["type"].default: cls for cls in members}


_CLASSES = {**_classes_of(Event), **_classes_of(CycleEvent)}


def current_schema_version(event_type: str) -> int:
    cls = _CLASSES.get(event_type)
    if cls is None:
        raise DomainError(
            ErrorCode.UNKNOWN_EVENT_TYPE,
            f"'{event_type}' is not an event type this code knows; check the stream or upgrade the reader",
        )
    default = cls.model_fields["schema_version"].default
    assert isinstance(default, int)
    return default


def encode_event(event: Event | CycleEvent) -> dict[str, JsonValue]:
    """JSON-safe dict of the event: Decimals as strings, times as ISO-8601 UTC, enums as values."""
    encoded = to_json_safe(event)
    assert isinstance(encoded, dict)
    if isinstance(event, CycleOpened):
        # Stored packed (one row per unit, see domain.cycle): the event reaches the store as an activity's
        # input, and Temporal refuses a payload over 2 MB, which a 10,000-unit hierarchy as objects nears.
        encoded["hierarchy"] = pack_hierarchy(event.hierarchy)
    return encoded


def decode_event(type: str, schema_version: int, data: dict[str, Any]) -> Event | CycleEvent:
    """Read a stored event, upcasting an older schema version first. `data` is left untouched."""
    current = current_schema_version(type)
    payload = upcast(type, schema_version, data, current)
    payload["type"] = type
    payload["schema_version"] = current
    decoded = _CLASSES[type].model_validate(payload)
    return decoded  # type: ignore[return-value]
