"""Canonical JSON: the one byte encoding that content hashes and the event store's hash chain are computed
over."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum

from pydantic import BaseModel

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


def _iso_utc(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("canonical JSON needs timezone-aware times")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _duration(value: timedelta) -> str:
    # ISO 8601 duration in seconds (plus microseconds), a shape pydantic reads back exactly.
    if value < timedelta(0):
        return "-" + _duration(-value)
    seconds = value.days * 86400 + value.seconds
    micros = f".{value.microseconds:06d}" if value.microseconds else ""
    return f"PT{seconds}{micros}S"


def to_json_safe(value: object) -> JsonValue:
    """Convert models, Decimals, times and enums to plain JSON values, keeping Decimals exact as strings."""
    if isinstance(value, BaseModel):
        return to_json_safe(dict(value))
    if isinstance(value, Enum):  # before str/int: StrEnum members are strings too
        return to_json_safe(value.value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float):
        return value
    if isinstance(value, datetime):
        return _iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return _duration(value)
    if isinstance(value, dict):
        return {str(key): to_json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [to_json_safe(item) for item in value]
        return sorted(items, key=canonical_text) if isinstance(value, set | frozenset) else items
    raise TypeError(f"cannot encode {type(value).__name__} as canonical JSON")


def canonical_text(value: object) -> str:
    return json.dumps(
        to_json_safe(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def canonical_json(value: object) -> bytes:
    """Sorted keys, no whitespace, UTF-8, Decimals as strings, times in UTC with a Z."""
    return canonical_text(value).encode("utf-8")
