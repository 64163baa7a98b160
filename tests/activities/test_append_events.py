"""The append_events activity: a retried attempt writes nothing twice; store errors are final."""

from __future__ import annotations

import uuid

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import EventStoreActivities, build_activities
from domain.envelope import AppendRequest, EventMetadata, EventToAppend
from eventstore import EventStore


def request(expected: int | str, *events: EventToAppend) -> AppendRequest:
    return AppendRequest(stream_id="plan:FY2027:DE-SALES", expected_version=expected, events=list(events))


def to_append(**data: object) -> EventToAppend:
    return EventToAppend(
        event_id=uuid.uuid4(),
        type="PlanDrafted",
        data=dict(data),
        metadata=EventMetadata(actor="anna", request_id="req-1", workflow_id="plan:FY2027:DE-SALES"),
    )


async def test_retried_activity_returns_the_first_attempts_result(store: EventStore) -> None:
    activity = EventStoreActivities(store).append_events
    env = ActivityEnvironment()
    call = request("no_stream", to_append(n=1), to_append(n=2))
    first = await env.run(activity, call)
    again = await env.run(activity, call)
    assert (first.version, first.duplicate) == (2, False)
    assert (again.version, again.positions, again.duplicate) == (2, first.positions, True)
    stored = await store.read_stream("plan:FY2027:DE-SALES")
    assert len(stored) == 2
    assert stored[0].metadata == {
        "actor": "anna",
        "request_id": "req-1",
        "source": "planloop",
        "workflow_id": "plan:FY2027:DE-SALES",
    }


async def test_version_conflict_is_a_non_retryable_application_error(store: EventStore) -> None:
    activity = EventStoreActivities(store).append_events
    env = ActivityEnvironment()
    await env.run(activity, request("no_stream", to_append(n=1)))
    with pytest.raises(ApplicationError) as caught:
        await env.run(activity, request("no_stream", to_append(n=2)))
    assert caught.value.non_retryable
    assert caught.value.type == "ConcurrencyError"
    assert "is at version 1" in str(caught.value)


def test_worker_registers_the_append_activity(store: EventStore) -> None:
    names = [fn.__temporal_activity_definition.name for fn in build_activities(store)]  # type: ignore[attr-defined]
    assert "append_events" in names
