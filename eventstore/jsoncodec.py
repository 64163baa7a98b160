"""JSON for event payloads: the text stored in jsonb, and the canonical form that is hashed.

The store is generic, so payloads are plain JSON values. Two encodings are needed:

* ``dumps``: what is sent to PostgreSQL. Decimals are written as JSON numbers exactly as given;
  timezone-aware datetimes, dates, UUIDs and enums become strings.
* ``canonical``: what the hash chain covers. It must come out identical whether computed from the
  caller's values before the append or from the jsonb that PostgreSQL hands back later, so keys are
  sorted, there is no whitespace, and every number is normalised (jsonb may print ``1E+2`` as ``100``
  and drops nothing else, so a normalised decimal is the one spelling both sides agree on).

``loads`` reads numbers with a fraction or exponent as Decimal, never float: money must not drift.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC as _UTC
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from eventstore.errors import InvalidEventError

# The C-accelerated string escaper behind json.dumps(..., ensure_ascii=False).
_quote = json.encoder.encode_basestring  # type: ignore[attr-defined]


def _number(value: Decimal) -> str:
    if not value.is_finite():
        raise InvalidEventError(f"{value} is not a JSON number; store a finite decimal or a string")
    return str(value)


def _canonical_number(value: Decimal) -> str:
    if not value.is_finite():
        raise InvalidEventError(f"{value} is not a JSON number; store a finite decimal or a string")
    normal = value.normalize()
    return "0" if normal.is_zero() else format(normal, "f")


def _string(value: str) -> str:
    if "\x00" in value:
        raise InvalidEventError("a string contains a NUL character, which PostgreSQL cannot store; remove it")
    return _quote(value)


def _encode(value: Any, out: list[str], canonical: bool) -> None:
    # bool before int: True is an int in Python.
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int):
        out.append(_canonical_number(Decimal(value)) if canonical else str(int(value)))
    elif isinstance(value, Decimal):
        out.append(_canonical_number(value) if canonical else _number(value))
    elif isinstance(value, float):
        number = Decimal(repr(value))
        out.append(_canonical_number(number) if canonical else _number(number))
    elif isinstance(value, Mapping):
        items = list(value.items())
        if canonical:
            items.sort(key=lambda kv: kv[0])
        out.append("{")
        for i, (key, item) in enumerate(items):
            if not isinstance(key, str):
                raise InvalidEventError(f"object key {key!r} is not a string; JSON keys must be strings")
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _encode(item, out, canonical)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out, canonical)
        out.append("]")
    elif isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidEventError(
                f"datetime {value.isoformat()} has no time zone; pass a timezone-aware datetime"
            )
        out.append(_string(value.isoformat()))
    elif isinstance(value, date):
        out.append(_string(value.isoformat()))
    elif isinstance(value, UUID):
        out.append(_string(str(value)))
    elif isinstance(value, Enum):
        _encode(value.value, out, canonical)
    else:
        raise InvalidEventError(
            f"{type(value).__name__} is not JSON; encode it as a string, number, list or object first"
        )


class _NotPlain(Exception):
    pass


def _not_plain(value: Any) -> Any:
    raise _NotPlain


# The C encoder handles plain JSON (str, int, float, bool, None, list, dict with str keys) many times
# faster than the walk above; anything else (Decimal, datetime, UUID, enum) raises and takes the walk.
_plain_encoder = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_not_plain
)


def dumps(value: Any) -> str:
    """The JSON text stored for a payload (Decimals kept as written)."""
    try:
        text = _plain_encoder.encode(value)
    except (_NotPlain, ValueError, TypeError):
        text = None
    # A NUL, which jsonb refuses, takes the walk too, which explains what is wrong. (Keys that are not
    # strings, which json would quietly turn into strings, are refused by canonical(), which every
    # append runs first to compute the digest.)
    if text is None or "\\u0000" in text:
        out: list[str] = []
        _encode(value, out, canonical=False)
        text = "".join(out)
    return text


def canonical(value: Any) -> str:
    """The canonical JSON text of a value: sorted keys, no whitespace, normalised numbers."""
    out: list[str] = []
    _encode(value, out, canonical=True)
    return "".join(out)


def loads(text: str) -> Any:
    """Parse stored JSON; numbers with a fraction or exponent become Decimal."""
    return json.loads(text, parse_float=Decimal)


def content_digest(
    event_id: UUID,
    stream_id: str,
    type_: str,
    schema_version: int,
    data: Any,
    metadata: Any,
) -> str:
    """SHA-256 over the canonical encoding of what an event says (not where or when it was stored)."""
    body = canonical(
        {
            "data": data,
            "event_id": str(event_id),
            "metadata": metadata,
            "schema_version": schema_version,
            "stream_id": stream_id,
            "type": type_,
        }
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def utc_stamp(moment: datetime) -> str:
    """The timestamp spelling the chain hashes; the SQL side writes the same with to_char()."""
    return moment.astimezone(tz=_UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def chain_hash(prev_hash: str, version: int, recorded_at: datetime, digest: str) -> str:
    """The link of the per-stream hash chain; mirrors eventstore_append() in SQL."""
    link = f"{prev_hash}|{version}|{utc_stamp(recorded_at)}|{digest}"
    return hashlib.sha256(link.encode("utf-8")).hexdigest()
