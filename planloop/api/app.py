"""The HTTP API: ``create_app`` wires the routers to an event store and a Temporal client.

Every write goes through a workflow (a plan's or a cycle's Update, or the start of a cycle); every read
comes from the event store or the workflows' queries. The OpenAPI document is served at /openapi.json and
the interactive docs at /docs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from planloop.integration.sealing import Sealer
from planloop.logging import get_logger

from . import (
    actuals,
    audit_history,
    audit_integrity,
    commands,
    cycles,
    inbound,
    outbound,
    plans,
    readviews,
    schedules,
)
from .background import background_work
from .errors import install_error_handlers
from .idempotency import Idempotency
from .reads import Reader

if TYPE_CHECKING:
    from temporalio.client import Client

    from eventstore import EventStore
    from planloop.settings import Settings

log = get_logger(__name__)

DESCRIPTION = """\
The front door of planloop: open planning cycles, send every domain command to a plan, and read plans,
their revisions and the diff between any two.

Authenticate with `Authorization: Bearer <token>` (`planloop token create` makes one). Every error answer
is `{"code": ..., "message": ...}`; `code` is stable (the domain's error codes and a few of the API's own).
Send an `Idempotency-Key` header with a write to make it safe to retry.
"""


def create_app(settings: Settings, *, store: EventStore, client: Client) -> FastAPI:
    """The API on ``store`` and ``client``; the caller owns both (and closes them).

    Its lifespan (``app.router.lifespan_context``) runs the background work: the feed notifier, the
    read models' projector and the webhook sender (see ``background``).
    """

    sealer = Sealer(settings.secrets_key_path)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sealed = await sealer.prepare(store.pool)
        if sealed:
            log.info("sealed shared secrets stored in plain text", count=sealed)
        async with background_work(
            store, settings.database_url, sealer, private_targets=settings.webhook_private_targets
        ) as work:
            app.state.feed_notifier = work.notifier
            yield

    app = FastAPI(title="planloop", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.store = store
    app.state.client = client
    app.state.reader = Reader(store)
    app.state.sealer = sealer
    app.state.idempotency = Idempotency(store.pool, sealer)
    install_error_handlers(app)

    @app.get("/health", tags=["service"])
    async def health() -> dict[str, str]:
        """Answers while the API runs (no token needed)."""
        return {"status": "ok"}

    app.include_router(cycles.router)
    app.include_router(plans.router)
    app.include_router(commands.build_router())
    app.include_router(readviews.router)
    app.include_router(outbound.build_router())
    app.include_router(actuals.router)
    app.include_router(inbound.router)
    app.include_router(schedules.router)
    app.include_router(audit_history.router)
    app.include_router(audit_integrity.router)
    return app
