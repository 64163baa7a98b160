"""Writing a workflow's events to its stream: the one path by which plans and cycles record history,
and the small rules both share about the commands that lead to it (their time, their request id, their
metadata).

Event ids come from workflow.uuid4() (deterministic, recorded in the workflow's history), so when
Temporal retries the activity after a timeout or a lost worker, the store recognises the ids and writes
nothing twice. The append keeps retrying while the database is away.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain import encode_event
    from domain.cycle import CycleEvent
    from domain.envelope import AppendOutcome, AppendRequest, EventMetadata, EventToAppend
    from domain.events import Event
    from workflows.clock import calendar_now
    from workflows.contracts import Pace

_Command = TypeVar("_Command", bound=BaseModel)


def stamped(command: _Command, pace: Pace | None = None) -> _Command:
    """The command at the workflow's own (calendar) time: a caller cannot back- or post-date a decision."""
    return command.model_copy(update={"at": calendar_now(pace)})


def request_id_of(request_id: str | None) -> str:
    """The request's idempotency key: the one it carries, else the id of the Update that brought it."""
    if request_id:
        return request_id
    info = workflow.current_update_info()
    assert info is not None
    return info.id


def run_ids() -> dict[str, str]:
    """The workflow and run ids that every event's metadata records."""
    info = workflow.info()
    return {"workflow_id": info.workflow_id, "run_id": info.run_id}


# An append is one round trip; a worker that died holding one is noticed this long after. Retries are safe.
APPEND_TIMEOUT = timedelta(seconds=10)
# Keep retrying an append until the database is back: the ids make every retry safe.
APPEND_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=20)
)


async def append_events(
    stream_id: str,
    expected_version: int,
    events: Sequence[Event | CycleEvent],
    metadata: EventMetadata,
    what: str,
) -> int:
    """Append ``events`` after ``expected_version`` and return the stream's new version.

    A non-retryable store error (someone else wrote to the stream) becomes a non-retryable
    ApplicationError naming ``what`` (e.g. "the plan's history"): the caller's command is refused and
    its state stays as stored.
    """
    request = AppendRequest(
        stream_id=stream_id,
        expected_version=expected_version,
        events=[
            EventToAppend(
                event_id=workflow.uuid4(),
                type=event.type,
                schema_version=event.schema_version,
                data=encode_event(event),
                metadata=metadata,
            )
            for event in events
        ],
    )
    try:
        outcome = await workflow.execute_activity(
            "append_events",
            request,
            result_type=AppendOutcome,
            start_to_close_timeout=APPEND_TIMEOUT,
            retry_policy=APPEND_RETRY,
        )
    except ActivityError as err:
        raise ApplicationError(
            f"{what} could not be written ({err.cause}); nothing was changed",
            type="append_failed",
            non_retryable=True,
        ) from None
    return outcome.version
