"""Canonical JSON for hashes, the storage encoding, and upcasting old event versions on read."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum

import pytest
from pydantic import ValidationError

from domain import (
    CommandAdapter,
    DomainError,
    EventAdapter,
    EventListAdapter,
    canonical_json,
    current_schema_version,
    decode_event,
    encode_event,
    replay,
)
from domain import commands as cmd
from domain import events as ev
from domain.canonical import to_json_safe
from domain.upcasting import upcaster
from tests.domain.factory import AUTHOR, T0, executing, open_plan

CET = timezone(timedelta(hours=1))


def test_canonical_json_sorts_keys_strips_whitespace_and_keeps_decimals_exact() -> None:
    value = {"b": Decimal("1.50"), "a": [datetime(2027, 1, 1, 1, tzinfo=CET), {"z": None, "y": True}]}
    assert canonical_json(value) == b'{"a":["2027-01-01T00:00:00Z",{"y":true,"z":null}],"b":"1.50"}'
    assert canonical_json({"k": "Müller"}) == '{"k":"Müller"}'.encode()
    assert canonical_json(
        {"s": {3, 1, 2}, "d": timedelta(days=1), "n": -timedelta(seconds=1, microseconds=5)}
    ) == (b'{"d":"PT86400S","n":"-PT1.000005S","s":[1,2,3]}')


def test_canonical_json_refuses_what_it_cannot_encode_exactly() -> None:
    with pytest.raises(ValueError):
        canonical_json({"t": datetime(2027, 1, 1)})
    with pytest.raises(TypeError):
        canonical_json({"o": object()})

    class Colour(Enum):
        RED = 1

    assert to_json_safe([Colour.RED, 1.5, datetime(2027, 1, 1, tzinfo=UTC).date()]) == [1, 1.5, "2027-01-01"]


def test_events_and_commands_refuse_naive_times() -> None:
    with pytest.raises(ValidationError):
        cmd.Tick(at=datetime(2027, 1, 1))
    assert cmd.Tick(at=datetime(2027, 1, 1, 1, tzinfo=CET)).at == datetime(2027, 1, 1, tzinfo=UTC)


def test_every_event_of_a_plan_round_trips_through_storage_and_hashes_the_same() -> None:
    h = executing()
    h.do(
        cmd.RecordActual,
        "erp",
        measure="revenue",
        month="2027-01",
        value=Decimal("80000.10"),
        currency="EUR",
        source="erp",
    )
    for event in h.events:
        stored = json.loads(json.dumps(encode_event(event)))
        assert isinstance(stored["at"], str) and stored["at"].endswith("Z")
        decoded = decode_event(event.type, event.schema_version, stored)
        assert decoded == event
        assert canonical_json(decoded) == canonical_json(event) == canonical_json(stored)
    assert encode_event(h.events[-1])["value"] == "80000.10"
    assert replay(EventListAdapter.validate_json(EventListAdapter.dump_json(h.events))) == h.state


def test_the_pydantic_adapters_round_trip_commands_and_events() -> None:
    command = open_plan()
    assert CommandAdapter.validate_json(CommandAdapter.dump_json(command)) == command
    event = ev.PlanScored(
        actor="review", at=T0, plan_quality=6, execution_effectiveness=8, results=48, rationale=""
    )
    assert EventAdapter.validate_python(EventAdapter.dump_python(event, mode="json")) == event


def test_an_old_plan_scored_event_is_upcast_on_read_and_the_stored_payload_is_untouched() -> None:
    stored_v1 = {
        "actor": "review",
        "at": "2028-01-05T10:00:00Z",
        "on_behalf_of": None,
        "quality": 6,
        "effectiveness": 8,
        "type": "PlanScored",
        "schema_version": 1,
    }
    pristine = copy.deepcopy(stored_v1)
    event = decode_event("PlanScored", 1, stored_v1)
    assert isinstance(event, ev.PlanScored)
    assert (event.plan_quality, event.execution_effectiveness, event.results, event.schema_version) == (
        6,
        8,
        48,
        2,
    )
    assert stored_v1 == pristine
    assert encode_event(event)["schema_version"] == 2 and current_schema_version("PlanScored") == 2


def test_unknown_types_and_versions_are_refused_with_a_clear_code() -> None:
    with pytest.raises(DomainError) as unknown:
        decode_event("PlanTeleported", 1, {})
    assert unknown.value.code == "unknown_event_type"
    with pytest.raises(DomainError) as newer:
        decode_event("PlanScored", 3, {})
    assert newer.value.code == "unsupported_schema_version"
    with pytest.raises(DomainError) as gap:
        decode_event("LessonRecorded", 0, {})
    assert gap.value.code == "unsupported_schema_version" and "v0" in gap.value.message


def test_an_upcaster_is_registered_once() -> None:
    with pytest.raises(ValueError):
        upcaster("PlanScored", 1)(lambda data: data)


def test_event_metadata_is_copied_from_the_command() -> None:
    h = executing()
    events = h.run(
        cmd.RecordActual(
            actor="erp",
            at=T0,
            on_behalf_of=AUTHOR,
            measure="S1",
            month="2027-01",
            value=Decimal(10),
            source="crm",
        )
    )
    assert (events[0].actor, events[0].at, events[0].on_behalf_of) == ("erp", T0, AUTHOR)
