"""The API's port is taken (bound and listening) before anything connects out, and served on that socket.

A port checked and bound later could be handed by the kernel to one of the program's own outgoing
connections in between (a CI run lost `planloop up` that way after a restart on a port in the ephemeral
range)."""

from __future__ import annotations

import asyncio
import errno
import socket

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from eventstore import EventStore
from planloop.api.server import reserve_api_port, serve_api
from planloop.errors import PlanloopError, PortInUseError
from planloop.settings import Settings
from tests.conftest import free_port


def settings(port: int, **extra: object) -> Settings:
    return Settings(**{"api_host": "127.0.0.1", "api_port": port, **extra})


def test_a_listening_port_is_refused_with_the_setting_to_change() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        expected = f"port {port} on 127.0.0.1 is already in use.*PLANLOOP_API_PORT"
        with pytest.raises(PortInUseError, match=expected):
            reserve_api_port(settings(port))


def test_a_reserved_port_is_held_against_everyone_and_kept_from_children() -> None:
    port = free_port()
    with reserve_api_port(settings(port)) as sock:
        assert sock.getsockname() == ("127.0.0.1", port)
        assert not sock.get_inheritable()  # an embedded server started after it must not hold it
        # Held against another planloop (which binds as this one does) ...
        with pytest.raises(PortInUseError, match="PLANLOOP_API_PORT"):
            reserve_api_port(settings(port))
        # ... and against anything else, an outgoing connection included.
        with socket.socket() as other, pytest.raises(OSError) as taken:
            other.bind(("127.0.0.1", port))
        assert taken.value.errno == errno.EADDRINUSE
        # A client that comes early waits in the queue rather than being refused.
        with socket.socket() as client:
            client.connect(("127.0.0.1", port))


def test_an_address_that_is_not_this_machines_is_not_called_a_port_in_use() -> None:
    with pytest.raises(PlanloopError, match="PLANLOOP_API_HOST") as refused:
        reserve_api_port(settings(free_port(), api_host="192.0.2.1"))  # TEST-NET-1: never local
    assert not isinstance(refused.value, PortInUseError) and "already in use" not in str(refused.value)


async def test_the_api_serves_on_the_reserved_socket_and_frees_it_when_stopped(
    dev_server_env: WorkflowEnvironment, store: EventStore, database_url: str
) -> None:
    config = settings(free_port(), database_url=database_url)
    sock = reserve_api_port(config)
    stop, ready = asyncio.Event(), asyncio.Event()
    serving = asyncio.create_task(serve_api(config, store, dev_server_env.client, stop, ready, sock))
    await asyncio.wait_for(ready.wait(), 30)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{config.api_port}") as http:
        assert (await http.get("/health")).status_code == 200
    stop.set()
    await serving
    assert sock.fileno() == -1  # closed: the port is free again
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", config.api_port))
