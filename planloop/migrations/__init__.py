"""planloop's own tables (API tokens, idempotency keys, read models, ...), numbered from 1001 up.

They are applied with the event store's migrations (numbered 1-999) by the same runner, in one
number order, and recorded in the same table.
"""

from __future__ import annotations

from eventstore.migrations import apply_migrations

#: Every migration package of a planloop database, the event store's first.
PACKAGES = ("eventstore.migrations", "planloop.migrations")


async def migrate(dsn: str) -> list[int]:
    """Apply every migration a planloop database lacks; return the versions applied."""
    return await apply_migrations(dsn, PACKAGES)
