"""Migrations: numbered, recorded, applied once, and safe when two processes start at once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from eventstore.migrations import apply_migrations, available
from tests.conftest import with_database


@pytest.fixture
async def empty_database(postgres_server: str) -> AsyncIterator[str]:
    name = f"planloop_m_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(postgres_server, name)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def test_migrations_are_numbered_without_gaps() -> None:
    versions = [m.version for m in available()]
    assert versions == list(range(1, len(versions) + 1))


async def test_applying_twice_is_a_no_op(empty_database: str) -> None:
    first = await apply_migrations(empty_database)
    assert first == [m.version for m in available()]
    assert await apply_migrations(empty_database) == []
    conn = await asyncpg.connect(empty_database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(first)
    finally:
        await conn.close()


async def test_processes_starting_at_once_do_not_race(empty_database: str) -> None:
    results = await asyncio.gather(*(apply_migrations(empty_database) for _ in range(4)))
    assert sorted(len(r) for r in results) == [0, 0, 0, len(available())]
    conn = await asyncpg.connect(empty_database)
    try:
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == [m.version for m in available()]
    finally:
        await conn.close()
