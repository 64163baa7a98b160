"""Attaches the API's newer command groups to the `planloop` CLI (``attach(app)`` in planloop.cli):
`plan list/revisions/revision/diff` and `cycle show/progress/rollup/close` join the `plan` and `cycle`
groups; `inbox`, `tracking` and `events` are top-level; `webhook`, `inbound` and `schedule` are groups."""

from __future__ import annotations

import typer

from . import cli_cycles, cli_reads  # noqa: F401  (importing them adds their commands to `cycle` and `plan`)
from .cli_integration import events, inbound_app, webhook_app
from .cli_schedules import schedule_app


def attach(app: typer.Typer) -> None:
    app.command("inbox")(cli_reads.inbox)
    app.command("tracking")(cli_reads.tracking)
    app.command("events")(events)
    app.add_typer(webhook_app, name="webhook")
    app.add_typer(inbound_app, name="inbound")
    app.add_typer(schedule_app, name="schedule")
