"""Serving the API with uvicorn inside a running asyncio program (``planloop api`` and ``planloop up``)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

import uvicorn

from planloop.errors import PlanloopError, PortInUseError
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


def reserve_api_port(settings: Settings) -> socket.socket:
    """Take the API's port now, listening, and hold it until the server accepts on it: PortInUseError
    (naming the setting) when it is taken, a PlanloopError naming PLANLOOP_API_HOST when the address is
    not this machine's.

    Checking the port and taking it later would leave a gap in which the kernel may give the port to an
    outgoing connection (this program's own, to PostgreSQL or Temporal, when the port lies in the
    ephemeral range), or another planloop may take it: the API would then fail after everything else had
    started. A listening port is held against both; a client that connects before the API serves waits
    in the queue instead of being refused.
    """
    host, port = settings.api_host, settings.api_port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # As uvicorn binds: a connection of an earlier run still closing (TIME_WAIT) does not hold the port.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError("the HTTP API", host, port, "PLANLOOP_API_PORT") from None
        raise PlanloopError(
            f"cannot listen on {host} port {port} for the HTTP API ({exc.strerror or exc}); set "
            "PLANLOOP_API_HOST to an address of this machine (127.0.0.1, or 0.0.0.0 for every interface)"
        ) from None
    return sock


async def serve_api(
    settings: Settings,
    store: EventStore,
    client: Client,
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve the API on settings.api_host:api_port, with its background work, until ``stop`` is set.

    ``sock`` is the port reserved by reserve_api_port (reserved here when not given); it is closed when
    the server stops. ``ready`` is set once it accepts connections. Should it stop by itself (its
    background work could not start), a PlanloopError says so.
    """
    sock = sock if sock is not None else reserve_api_port(settings)
    with sock:
        await _serve_on(sock, settings, store, client, stop, ready)


async def _serve_on(
    sock: socket.socket,
    settings: Settings,
    store: EventStore,
    client: Client,
    stop: asyncio.Event,
    ready: asyncio.Event | None,
) -> None:
    app = create_app(settings, store=store, client=client)
    config = uvicorn.Config(
        app, host=settings.api_host, port=settings.api_port, log_config=None, access_log=False, lifespan="off"
    )
    server = _Server(config)
    # The app's lifespan runs here rather than inside uvicorn, so a failure to start it is an exception
    # of its own (uvicorn would turn it into sys.exit).
    async with app.router.lifespan_context(app):
        serving = asyncio.create_task(server.serve(sockets=[sock]), name="api")
        stopping = asyncio.create_task(stop.wait())
        while not server.started and not serving.done() and not stop.is_set():
            await asyncio.sleep(0.02)
        if server.started:
            log.info("api listening", url=api_url(settings), docs=api_url(settings) + "/docs")
            if ready is not None:
                ready.set()
        await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        stopping.cancel()
        await serving
    if not stop.is_set():
        raise PlanloopError(f"the HTTP API at {api_url(settings)} stopped unexpectedly; see the log above")


def api_url(settings: Settings) -> str:
    """Where clients reach the API (the loopback address when it listens on every interface)."""
    host = settings.api_host
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.api_port}"
