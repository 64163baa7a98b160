"""The activity through which a workflow writes its events: the only way a plan's history grows.

A workflow chooses each event id with workflow.uuid4() before it calls this activity, so when
Temporal retries the activity (a timeout, a worker that died after the commit), the store recognises
the ids and answers with what the first attempt wrote instead of writing anything twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import structlog
from structlog.contextvars import bound_contextvars
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.envelope import AppendOutcome, AppendRequest
from eventstore import (
    ConcurrencyError,
    DuplicateEventError,
    EventStore,
    InvalidEventError,
    NewEvent,
)

log = structlog.stdlib.get_logger("planloop.activities")


class EventStoreActivities:
    """Activities bound to one event store (one connection pool per worker process)."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    @activity.defn(name="append_events")
    async def append_events(self, request: AppendRequest) -> AppendOutcome:
        events = [
            NewEvent(
                event_id=e.event_id,
                type=e.type,
                data=e.data,
                metadata=e.metadata.model_dump(mode="json", exclude_none=True),
                schema_version=e.schema_version,
            )
            for e in request.events
        ]
        info = activity.info()
        with bound_contextvars(
            plan_id=request.stream_id,
            workflow_id=info.workflow_id,
            run_id=info.workflow_run_id,
            request_id=request.events[0].metadata.request_id,
            attempt=info.attempt,
        ):
            try:
                result = await self.store.append(request.stream_id, request.expected_version, events)
            except (
                ConcurrencyError,
                DuplicateEventError,
                InvalidEventError,
                asyncpg.DataError,
                asyncpg.IntegrityConstraintViolationError,
            ) as err:
                # Retrying cannot fix these (the same input fails the same way): the workflow must hear
                # of them at once rather than hold the plan's lock through endless retries.
                log.error("append refused", error=str(err))
                raise ApplicationError(str(err), type=type(err).__name__, non_retryable=True) from err
            log.debug(
                "events appended", version=result.version, count=len(events), duplicate=result.duplicate
            )
        return AppendOutcome(
            stream_id=result.stream_id,
            version=result.version,
            positions=list(result.positions),
            duplicate=result.duplicate,
        )


def build_activities(store: EventStore) -> list[Callable[..., Any]]:
    """Every activity the planloop worker registers, bound to its resources."""
    return [EventStoreActivities(store).append_events]
