"""The Temporal worker: plan workflows and their activities on one task queue.

`planloop up` runs it beside the embedded servers; `planloop worker` runs it alone against configured
servers, as many times as the load needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError, PlanloopError
from .logging import get_logger
from .settings import Settings

if TYPE_CHECKING:
    from temporalio.client import Client
    from temporalio.worker import Replayer, Worker
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

    from eventstore import EventStore

log = get_logger(__name__)

# Pure, deterministic code the sandbox may share across workflow runs instead of re-importing per run.
SANDBOX_PASSTHROUGH = ("pydantic", "pydantic_core", "annotated_types", "domain", "workflows.contracts")


async def connect_client(settings: Settings) -> Client:
    """A Temporal client on `settings.temporal_address` with the pydantic data converter."""
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    if not settings.temporal_address:
        raise ConfigurationError("no Temporal address: set PLANLOOP_TEMPORAL_ADDRESS (host:port)")
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=pydantic_data_converter,
        )
    except RuntimeError as exc:
        raise PlanloopError(
            f"cannot reach Temporal at {settings.temporal_address} ({_first_line(exc)}); "
            "check PLANLOOP_TEMPORAL_ADDRESS"
        ) from None


async def open_event_store(settings: Settings) -> EventStore:
    """The event store on `settings.database_url`, with the configured pool size."""
    from eventstore import EventStore

    if not settings.database_url:
        raise ConfigurationError("no database: set PLANLOOP_DATABASE_URL (postgresql://...)")
    try:
        return await EventStore.connect(
            settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
        )
    except (TimeoutError, OSError) as exc:
        raise PlanloopError(
            f"cannot connect to PostgreSQL at {redact_dsn(settings.database_url)} ({_first_line(exc)}); "
            "check PLANLOOP_DATABASE_URL"
        ) from None
    except Exception as exc:  # asyncpg's own errors: bad password, unknown database, ...
        if type(exc).__module__.startswith("asyncpg"):
            raise PlanloopError(
                f"PostgreSQL at {redact_dsn(settings.database_url)} refused the connection "
                f"({_first_line(exc)}); check PLANLOOP_DATABASE_URL"
            ) from None
        raise


def worker_activities(store: EventStore) -> list[Any]:
    from activities import build_activities

    return build_activities(store)


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox every planloop worker and replayer runs workflows in. The pure domain passes through:
    it is deterministic, and re-importing its pydantic models for every run would be slow."""
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*SANDBOX_PASSTHROUGH)
    )


def make_replayer() -> Replayer:
    """A Replayer for recorded plan and cycle histories, configured exactly like the worker."""
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import Replayer

    from workflows import ALL_WORKFLOWS

    return Replayer(
        workflows=ALL_WORKFLOWS, data_converter=pydantic_data_converter, workflow_runner=workflow_runner()
    )


def make_worker(
    client: Client, store: EventStore, task_queue: str, *, activities: list[Any] | None = None, **options: Any
) -> Worker:
    """The planloop worker: every workflow and activity on one task queue.

    Its workflow cache holds `max_cached_workflows` (option) workflows, by default the setting's default
    (PLANLOOP_WORKER_CACHE_SIZE) rather than the SDK's 1,000: a cycle's stages walk all its plans in turn,
    and with an LRU cache even one short of them every workflow task misses and replays a whole history.
    """
    from temporalio.worker import Worker

    from workflows import ALL_WORKFLOWS

    options.setdefault("max_cached_workflows", Settings.model_fields["worker_cache_size"].default)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=ALL_WORKFLOWS,
        activities=activities if activities is not None else worker_activities(store),
        workflow_runner=workflow_runner(),
        **options,
    )


async def run_worker(
    client: Client, settings: Settings, stop_event: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    """Poll `settings.task_queue` until `stop_event` is set, then shut down gracefully.

    `ready` is set once the worker polls, so callers can report "up" only after workflow definitions
    have passed the worker's validation.
    """
    ready = ready if ready is not None else asyncio.Event()
    from workflows import ALL_WORKFLOWS

    store = await open_event_store(settings)
    try:
        activities = worker_activities(store)
        worker = make_worker(
            client,
            store,
            settings.task_queue,
            activities=activities,
            max_cached_workflows=settings.worker_cache_size,
        )
        log.info(
            "worker polling",
            task_queue=settings.task_queue,
            cache_size=settings.worker_cache_size,
            workflows=_names(ALL_WORKFLOWS),
            activities=_names(activities),
        )
        async with worker:
            ready.set()
            await stop_event.wait()
        log.info("worker stopped", task_queue=settings.task_queue)
    finally:
        await store.close()


def redact_dsn(dsn: str) -> str:
    """The DSN without its password, for messages and status files."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _names(items: Sequence[Any]) -> list[str]:
    return [getattr(i, "__name__", repr(i)) for i in items]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
