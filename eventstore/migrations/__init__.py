"""Numbered SQL migrations, applied at start and recorded in a table.

Each ``NNNN_name.sql`` file beside this module runs once, in its own transaction, in number order.
A session-level advisory lock makes two processes that start at once take turns: the second finds
the migrations recorded and applies nothing.

The runner is generic: an application built on the store passes its own migration packages too (each
a package of ``NNNN_name.sql`` files with numbers of its own range); all are applied in number order
and recorded in the same table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import asyncpg

_LOCK_KEY = 0x706C616E6C6F6F70  # "planloop" as an int: the advisory lock every migrator takes
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer     PRIMARY KEY,
    name        text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""
_APPLIED = "SELECT version FROM schema_migrations"
_RECORD = "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available(packages: Sequence[str] = (__package__,)) -> list[Migration]:
    """The migrations shipped in ``packages`` (by default the event store's own), in number order."""
    found = []
    for package in packages:
        for entry in resources.files(package).iterdir():
            match = _NAME.match(entry.name)
            if match:
                found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migrations share a number in {packages}: {versions}")
    return found


async def apply(conn: asyncpg.Connection, packages: Sequence[str] = (__package__,)) -> list[int]:
    """Apply the migrations this database lacks; return the versions applied (empty if none)."""
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(_CREATE_TABLE)
        done = {row["version"] for row in await conn.fetch(_APPLIED)}
        applied = []
        for migration in available(packages):
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(_RECORD, migration.version, migration.name)
            applied.append(migration.version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def apply_migrations(dsn: str, packages: Sequence[str] = (__package__,)) -> list[int]:
    """Connect to ``dsn`` and apply what is missing; return the versions applied."""
    conn = await asyncpg.connect(dsn)
    try:
        return await apply(conn, packages)
    finally:
        await conn.close()
