"""`planloop readmodels ...`: a typer sub-app the main CLI mounts with
``app.add_typer(readmodels_app, name="readmodels")``."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from eventstore import EventStore
from planloop.errors import ConfigurationError
from planloop.progress import progress_bar
from planloop.settings import Settings, load_settings

app = typer.Typer(help="Read models: rebuild them from the event store, or see where they stand.")
out = Console()
err = Console(stderr=True)
T = TypeVar("T")

NamesArgument = Annotated[
    list[str] | None,
    typer.Argument(help="Read models to act on (plan_list, approval_inbox, tracking); all when omitted."),
]


DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Data folder of the `planloop up` whose database to use.", show_default=False
    ),
]


def _with_store(action: Callable[[EventStore], Awaitable[T]], data_dir: Path | None = None) -> T:
    settings = load_settings(data_dir=data_dir)
    dsn = settings.database_url or _database_of_running_up(settings)
    if not dsn:
        raise ConfigurationError(
            "PLANLOOP_DATABASE_URL is not set; set it to the planloop database's DSN, or start `planloop up`"
        )

    async def run() -> T:
        store = await EventStore.connect(dsn, min_size=1, max_size=2)
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())


def _database_of_running_up(settings: Settings) -> str | None:
    """The database of the `planloop up` running on the data folder, if one runs."""
    from planloop.stack import read_status

    status = read_status(settings.data_dir)
    return str(status["postgres"]["dsn"]) if status.get("running") else None


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts) instead of tables.")]


@app.command("rebuild")
def rebuild_command(
    names: NamesArgument = None, data_dir: DataDirOption = None, as_json: JsonOption = False
) -> None:
    """Empty read models and replay every event into them, with a progress bar per read model."""
    from planloop.readmodels.registry import projections, rebuild

    try:
        chosen = [p.name for p in projections(names)]
    except ValueError as exc:
        raise _fail(str(exc)) from None

    async def run(store: EventStore) -> dict[str, int]:
        total = await store.pool.fetchval("SELECT count(*) FROM events")
        with progress_bar(err, hidden=as_json) as progress:
            tasks = {name: progress.add_task(name, total=total) for name in chosen}
            return await rebuild(
                store, names, on_batch=lambda name, read: progress.advance(tasks[name], read)
            )

    try:
        applied = _with_store(run, data_dir)
    except (ConfigurationError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps(applied) + "\n")
        return
    for name, count in applied.items():
        out.print(f"{name}: rebuilt from {count} events")


@app.command("status")
def status_command(
    names: NamesArgument = None, data_dir: DataDirOption = None, as_json: JsonOption = False
) -> None:
    """Each read model's checkpoint and whether it has caught up with the event store."""
    from planloop.readmodels.registry import statuses

    try:
        found = _with_store(lambda store: statuses(store, names), data_dir)
    except (ConfigurationError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        shown = [
            {
                "name": s.name,
                "checkpoint": s.cursor,
                "updated_at": s.updated_at.isoformat() if s.updated_at else None,
                "caught_up": s.caught_up,
            }
            for s in found
        ]
        sys.stdout.write(json.dumps(shown) + "\n")
        return
    table = Table("read model", "checkpoint", "updated", "caught up")
    for s in found:
        table.add_row(s.name, s.cursor, str(s.updated_at or "never"), "yes" if s.caught_up else "no")
    out.print(table)
