"""API tests go through the real HTTP stack: an httpx client against the FastAPI app, with a real Temporal
dev server, a real planloop worker and a real PostgreSQL behind it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from temporalio.testing import WorkflowEnvironment

from eventstore import EventStore
from planloop.api import create_app
from planloop.api.auth import Role, create_token
from planloop.settings import Settings
from planloop.worker import make_worker
from tests.workflows import scenario

MakeToken = Callable[..., Awaitable[str]]


@pytest.fixture
def task_queue() -> str:
    return f"planloop-api-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def app(
    dev_server_env: WorkflowEnvironment,
    store: EventStore,
    database_url: str,
    task_queue: str,
    tmp_path: Path,
) -> AsyncIterator[FastAPI]:
    """The app with its lifespan running (the feed notifier, the projector, the webhook sender), as
    `planloop api` runs it."""
    # The tests' webhook receivers listen on 127.0.0.1. The data folder holds the audit key and the
    # publisher's record of its last checkpoint: one per test, as each test has its own database.
    settings = Settings(
        task_queue=task_queue, database_url=database_url, webhook_private_targets=True, data_dir=tmp_path
    )
    async with make_worker(dev_server_env.client, store, task_queue):
        api = create_app(settings, store=store, client=dev_server_env.client)
        async with api.router.lifespan_context(api):
            yield api


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://planloop.test"
    ) as client:
        yield client


@pytest.fixture
def make_token(store: EventStore) -> MakeToken:
    """``await make_token("de-mgr", Role.PLANNER, scopes=("DE",))`` -> the Authorization headers."""

    async def make(principal: str, *roles: Role, scopes: tuple[str, ...] = ()) -> Any:
        token, _ = await create_token(store.pool, principal, roles, scopes)
        return {"Authorization": f"Bearer {token}"}

    return make


def cycle_definition(cycle_id: str) -> dict[str, Any]:
    """The scenario's organisation (HQ; EU with DE and FR; AMERICAS with US and BR), as a request body."""
    calendar = scenario.calendar(cycle_id, datetime.now(UTC))
    return {
        "calendar": calendar.model_dump(mode="json"),
        "hierarchy": scenario.hierarchy().model_dump(mode="json"),
        "currency": "EUR",
    }


def unique_cycle() -> str:
    return f"FY-{uuid.uuid4().hex[:8].upper()}"


async def wait_for_plans(
    http: httpx.AsyncClient, headers: Any, cycle_id: str, units: tuple[str, ...]
) -> None:
    """The cycle starts its plans in the background: wait until each has stored its opening."""
    for unit in units:
        for _ in range(200):
            if (await http.get(f"/cycles/{cycle_id}/plans/{unit}", headers=headers)).status_code == 200:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"plan {unit} of {cycle_id} never opened")


async def poll(
    http: httpx.AsyncClient,
    path: str,
    headers: Any,
    until: Callable[[Any], bool],
    params: dict[str, Any] | None = None,
    timeout: float = 15,
) -> Any:
    """GET ``path`` until its JSON answer satisfies ``until`` (the read models lag the store a little)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        answer = await http.get(path, params=params, headers=headers)
        assert answer.status_code == 200, answer.text
        if until(answer.json()):
            return answer.json()
        if loop.time() > deadline:
            raise AssertionError(f"GET {path} {params or ''} never got there; last answer: {answer.text}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def admin(make_token: MakeToken) -> Any:
    return await make_token("planning-office", Role.ADMIN)


@pytest.fixture
async def cycle(http: httpx.AsyncClient, admin: Any) -> str:
    """A cycle of the scenario's organisation, opened through the API with every plan started."""
    cycle_id = unique_cycle()
    answer = await http.post("/cycles", json=cycle_definition(cycle_id), headers=admin)
    assert answer.status_code == 201, answer.text
    await wait_for_plans(http, admin, cycle_id, scenario.UNITS)
    return cycle_id


@pytest.fixture
async def live_api(
    dev_server_env: WorkflowEnvironment,
    store: EventStore,
    database_url: str,
    task_queue: str,
    tmp_path: Path,
) -> AsyncIterator[str]:
    """The API served by uvicorn on a free port (as `planloop api` serves it), with a worker; its base URL.

    Callers that block (the CLI, schemathesis) run in a thread, so this loop keeps serving."""
    from planloop.api.server import reserve_api_port, serve_api
    from tests.conftest import free_port

    settings = Settings(
        task_queue=task_queue,
        database_url=database_url,
        api_host="127.0.0.1",
        api_port=free_port(),
        webhook_private_targets=True,
        data_dir=tmp_path,
    )
    stop = asyncio.Event()
    async with make_worker(dev_server_env.client, store, task_queue):
        sock = reserve_api_port(settings)  # serve_api owns (and closes) it from here on
        serving = asyncio.create_task(serve_api(settings, store, dev_server_env.client, stop, sock=sock))
        url = f"http://{settings.api_host}:{settings.api_port}"
        async with httpx.AsyncClient(base_url=url) as probe:
            for _ in range(100):
                try:
                    if (await probe.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        try:
            yield url
        finally:
            stop.set()
            await serving
