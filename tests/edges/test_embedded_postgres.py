import asyncio
import os
from pathlib import Path

import asyncpg
import pytest

from planloop.embedded.postgres import EmbeddedPostgres
from planloop.errors import EmbeddedServerError, PortInUseError

from .helpers import free_ports


async def fetch_setting(dsn: str, name: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(f"SHOW {name}")
    finally:
        await conn.close()


def test_start_creates_the_database_and_stop_is_idempotent(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    pg = EmbeddedPostgres(tmp_path / "pg", port)
    dsn = pg.start()
    try:
        assert dsn == f"postgresql://postgres@127.0.0.1:{port}/planloop" == pg.dsn
        assert pg.is_running()
        # a long-open transaction would stall the event feed: the server cuts it off
        assert asyncio.run(fetch_setting(dsn, "idle_in_transaction_session_timeout")) == "1min"
        if os.geteuid() == 0:
            assert asyncio.run(fetch_setting(dsn, "data_directory")).startswith(str(tmp_path))
    finally:
        pg.stop()
    assert not pg.is_running()
    pg.stop()
    assert not (tmp_path / "pg" / "pgdata" / "postmaster.pid").exists()


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        pg = EmbeddedPostgres(tmp_path / "pg", port)
        with pytest.raises(PortInUseError, match=rf"port {port} .*PLANLOOP_POSTGRES_PORT"):
            pg.start()
        assert not pg.is_running()


def test_stale_pid_file_of_a_reused_pid_does_not_block_start(tmp_path: Path) -> None:
    """A crash leaves postmaster.pid behind; in a container its pid often belongs to another process later."""
    (port,) = free_ports(1)
    pg = EmbeddedPostgres(tmp_path / "pg", port)
    pg.start()
    pg.stop()
    pid_file = tmp_path / "pg" / "pgdata" / "postmaster.pid"
    pid_file.write_text(f"{os.getpid()}\n{tmp_path}\n0\n{port}\n\n127.0.0.1\n  0  0\nready\n")
    try:
        pg.start()
        assert pg.is_running()
    finally:
        pg.stop()


def test_a_live_server_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    first_port, second_port = free_ports(2)
    first = EmbeddedPostgres(tmp_path / "pg", first_port)
    first.start()
    try:
        second = EmbeddedPostgres(tmp_path / "pg", second_port)
        with pytest.raises(
            EmbeddedServerError, match=rf"PostgreSQL server \(pid {first.pid}\) is already running"
        ):
            second.prepare()
    finally:
        first.stop()
