"""Plans under concurrent and repeated commands, on the Temporal dev server and a real PostgreSQL.

Every test ends with ``assert_consistent``: no event lost or stored twice, and the workflow's state equals
the replay of its stored stream.
"""

from __future__ import annotations

import asyncio
import uuid

from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain import ErrorCode, Phase
from domain import commands as cmd
from eventstore import EventStore
from tests.workflows.resilience import (
    actuals_for,
    assert_consistent,
    executing_plan,
    refusal_code,
    send,
)
from workflows.contracts import CommandResult


async def test_concurrent_commands_to_one_plan_are_each_stored_once_in_order(
    dev_server_env: WorkflowEnvironment, dev_worker: Worker, task_queue: str, store: EventStore
) -> None:
    handle, setup = await executing_plan(dev_server_env.client, task_queue)
    distinct = actuals_for(2027)[:16]
    # Four commands race an identical one (same measure and month): exactly one of each pair may win.
    racing = distinct[:4]
    # Two the validator refuses whatever the order: a month outside the period, an unknown measure.
    outside = distinct[0].model_copy(update={"month": "2029-01"})
    unknown = distinct[0].model_copy(update={"measure": "NOPE"})
    commands = [*distinct, *racing, outside, unknown]

    async def attempt(command: cmd.RecordActual) -> CommandResult | str:
        try:
            return await send(handle, command)
        except WorkflowUpdateFailedError as err:
            return refusal_code(err)

    answers = await asyncio.gather(*(attempt(c) for c in commands))

    accepted = [a for a in answers if isinstance(a, CommandResult)]
    refusals = sorted(a for a in answers if isinstance(a, str))
    assert len(accepted) == 16
    assert refusals == sorted(
        [ErrorCode.ACTUAL_EXISTS] * 4 + [ErrorCode.MONTH_OUTSIDE_PERIOD, ErrorCode.UNKNOWN_MEASURE]
    )
    assert all(a.events == ["ActualRecorded"] for a in accepted)
    first = setup[-1].stream_version
    assert sorted(a.stream_version for a in accepted) == list(range(first + 1, first + 17))

    events = await assert_consistent(handle, store, [*setup, *accepted])
    assert len(events) == first + 16
    recorded = [e.data for e in events if e.type == "ActualRecorded"]
    assert sorted((r["measure"], r["month"]) for r in recorded) == sorted(
        (c.measure, c.month) for c in distinct
    )


async def test_an_update_id_sent_twice_is_answered_once(
    dev_server_env: WorkflowEnvironment, dev_worker: Worker, task_queue: str, store: EventStore
) -> None:
    handle, setup = await executing_plan(dev_server_env.client, task_queue)
    january, february = actuals_for(2027, ["2027-01", "2027-02"])[::3]
    # Sent twice at once, then once more after the answer: one set of events.
    key = f"update-{uuid.uuid4()}"
    both = await asyncio.gather(send(handle, january, update_id=key), send(handle, january, update_id=key))
    again = await send(handle, january, update_id=key)
    assert both[0] == both[1]
    assert again.stream_version == both[0].stream_version
    assert again.events == ["ActualRecorded"]
    # A different update id with the same request id is answered from the plan's own memory.
    request = f"request-{uuid.uuid4()}"
    first = await send(handle, february, request_id=request)
    repeat = await send(handle, february, request_id=request)
    assert (first.duplicate, repeat.duplicate) == (False, True)
    assert repeat.stream_version == first.stream_version

    events = await assert_consistent(handle, store, [*setup, both[0], first])
    assert [e.metadata["request_id"] for e in events].count(key) == 1
    assert [e.metadata["request_id"] for e in events].count(request) == 1
    assert len(events) == setup[-1].stream_version + 2
    assert (await send(handle, february, request_id=request)).phase == Phase.EXECUTING
