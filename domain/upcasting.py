"""Upcasters: old event payloads are brought up to the current schema when read, never rewritten in storage.

Register one function per (event type, version it reads); decode runs them in order from the stored version
up to the current one. Each works on its own copy of the payload.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from domain.errors import DomainError, ErrorCode

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]

_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function that turns `event_type` at `from_version` into `from_version + 1`."""

    def register(func: Upcaster) -> Upcaster:
        if (event_type, from_version) in _UPCASTERS:
            raise ValueError(f"an upcaster for {event_type} v{from_version} is already registered")
        _UPCASTERS[(event_type, from_version)] = func
        return func

    return register


def upcast(event_type: str, schema_version: int, data: Payload, current_version: int) -> Payload:
    if schema_version > current_version:
        raise DomainError(
            ErrorCode.UNSUPPORTED_SCHEMA_VERSION,
            f"{event_type} v{schema_version} was written by newer code (this code reads up to "
            f"v{current_version}); upgrade before reading this stream",
        )
    payload = copy.deepcopy(data)
    for version in range(schema_version, current_version):
        step = _UPCASTERS.get((event_type, version))
        if step is None:
            raise DomainError(
                ErrorCode.UNSUPPORTED_SCHEMA_VERSION,
                f"there is no upcaster from {event_type} v{version} to v{version + 1}; register one in "
                "domain.upcasting",
            )
        payload = step(payload)
    return payload


@upcaster("PlanScored", 1)
def _plan_scored_v1(data: Payload) -> Payload:
    """v1 stored `quality` and `effectiveness` and left results to readers; v2 names them as DOMAIN.md does
    and records the product, so every reader shows the same results figure."""
    quality = int(data.pop("quality"))
    effectiveness = int(data.pop("effectiveness"))
    data["plan_quality"] = quality
    data["execution_effectiveness"] = effectiveness
    data["results"] = quality * effectiveness
    data.setdefault("rationale", "")
    return data


@upcaster("CycleOpened", 1)
def _cycle_opened_v1(data: Payload) -> Payload:
    """v1 listed every unit's plan with its approval chain (about 820 bytes a unit, past Temporal's payload
    limit for a cycle of a few thousand units); v2 keeps only the currency they shared, and readers derive
    the plans and chains from the hierarchy with the same rules the v1 writer used."""
    plans = data.pop("plans")
    data["currency"] = plans[0]["currency"] if plans else "EUR"
    return data
