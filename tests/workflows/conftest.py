"""Workflow tests run a real planloop worker (workflows and the append activity) against a real
Temporal server and a real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from eventstore import EventStore
from planloop.worker import make_worker


@pytest.fixture
def task_queue() -> str:
    return f"planloop-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def skipping_worker(
    time_skipping_env: WorkflowEnvironment, store: EventStore, task_queue: str
) -> AsyncIterator[Worker]:
    async with make_worker(time_skipping_env.client, store, task_queue) as worker:
        yield worker


@pytest.fixture
async def dev_worker(
    dev_server_env: WorkflowEnvironment, store: EventStore, task_queue: str
) -> AsyncIterator[Worker]:
    async with make_worker(dev_server_env.client, store, task_queue) as worker:
        yield worker
