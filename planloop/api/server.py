"""Serving the API with uvicorn inside a running asyncio program (``planloop api`` and ``planloop up``)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

import uvicorn

from planloop.errors import PortInUseError
from planloop.logging import get_logger

from .app import create_app

if TYPE_CHECKING:
    from temporalio.client import Client

    from eventstore import EventStore
    from planloop.settings import Settings

log = get_logger(__name__)


class _Server(uvicorn.Server):
    # The program that embeds the server owns SIGINT and SIGTERM; uvicorn must not take them over.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def check_api_port(settings: Settings) -> None:
    """PortInUseError (naming the setting) when the API's port is taken, before anything is started."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.api_host, settings.api_port))
        except OSError:
            raise PortInUseError(
                "the HTTP API", settings.api_host, settings.api_port, "PLANLOOP_API_PORT"
            ) from None


async def serve_api(settings: Settings, store: EventStore, client: Client, stop: asyncio.Event) -> None:
    """Serve the API on settings.api_host:api_port until ``stop`` is set."""
    check_api_port(settings)
    app = create_app(settings, store=store, client=client)
    config = uvicorn.Config(
        app, host=settings.api_host, port=settings.api_port, log_config=None, access_log=False, lifespan="off"
    )
    server = _Server(config)
    serving = asyncio.create_task(server.serve(), name="api")
    log.info("api listening", url=f"http://{settings.api_host}:{settings.api_port}")
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    stopping.cancel()
    await serving
