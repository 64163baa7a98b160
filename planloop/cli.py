"""The `planloop` command line.

Command groups to come (the HTTP API, `planloop audit ...`) attach with `app.add_typer(...)`. Heavy imports
(temporalio, asyncpg) stay inside the commands that need them, so `planloop status` answers at once.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .api.cli_client import user_errors  # one error decorator for every command group
from .errors import PlanloopError
from .settings import Settings, load_settings

app = typer.Typer(
    name="planloop",
    help="An event-sourced workflow engine for planning cycles: strategy, execute, learn, refine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

out = Console()

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Data folder of the embedded servers [env: PLANLOOP_DATA_DIR; default: the user data folder].",
        show_default=False,
    ),
]


def _settings(data_dir: Path | None = None) -> Settings:
    from .logging import configure_logging

    settings = load_settings(data_dir=data_dir)
    configure_logging(settings.log_format, settings.log_level)
    return settings


@app.command()
@user_errors
def up(data_dir: DataDirOption = None) -> None:
    """Run planloop: PostgreSQL and Temporal (embedded unless configured), migrations, the worker and the API.

    Runs in the foreground; Ctrl-C or SIGTERM stops everything it started.
    """
    from .stack import run_up

    settings = _settings(data_dir)
    code = asyncio.run(run_up(settings, _announce))
    if code:
        raise typer.Exit(code)


def _announce(state: dict[str, Any], seconds: float) -> None:
    pg, tp = state["postgres"], state["temporal"]
    rows = [
        ("PostgreSQL", escape(pg["dsn"]), "embedded" if pg["embedded"] else "external"),
        (
            "Temporal",
            escape(tp["address"]),
            f"namespace {escape(tp['namespace'])}, task queue {escape(state['task_queue'])}, "
            + ("embedded" if tp["embedded"] else "external"),
        ),
        *([("Temporal UI", escape(tp["ui_url"]), "")] if tp["ui_url"] else []),
        ("HTTP API", escape(state["api"]["url"]), ""),
        ("API docs", escape(state["api"]["docs_url"]), ""),
        ("Data folder", escape(state["data_dir"]), ""),
    ]
    width = max(len(name) for name, _, _ in rows)
    lines = [
        f"[bold green]planloop is up[/] [dim](pid {state['pid']}, ready in {seconds:.1f} s)[/]",
        *(
            f"[bold]{name:<{width}}[/]  {value}" + (f"  [dim]{note}[/]" if note else "")
            for name, value, note in rows
        ),
        "[dim]Press Ctrl-C to stop.[/]",
    ]
    # One print, so whoever watches the output for "planloop is up" finds the addresses with it; soft_wrap,
    # so an address or a path longer than the terminal (or a log file's 80 columns) is never cut or broken.
    out.print("\n".join(lines), soft_wrap=True, highlight=False)


@app.command()
@user_errors
def demo(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir", help="Keep the demo's data here (default: a temporary folder, deleted afterwards)."
        ),
    ] = None,
    month_seconds: Annotated[
        float | None,
        typer.Option(
            "--month-seconds", help="Wall-clock seconds per calendar month of the story (default: 6)."
        ),
    ] = None,
    exit_when_done: Annotated[
        bool, typer.Option("--exit", help="Stop when the story is told, instead of staying up to explore.")
    ] = False,
) -> None:
    """Tell a whole planning cycle of a small multinational through the API, on a compressed calendar.

    Starts the embedded stack (a fresh temporary data folder unless --data-dir), then prints the audit history
    of one plan and where the API docs and the Temporal UI are. About two minutes.
    """
    from .demo import DEFAULT_MONTH_SECONDS, run_demo

    code = run_demo(
        load_settings(),
        data_dir=data_dir,
        month_seconds=month_seconds or DEFAULT_MONTH_SECONDS,
        exit_when_done=exit_when_done,
    )
    if code:
        raise typer.Exit(code)


@app.command()
@user_errors
def status(
    data_dir: DataDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Show what `planloop up` runs on a data folder and whether each part answers.

    Exits 0 when it is running, 1 when it is not.
    """
    from .stack import read_status

    settings = load_settings(data_dir=data_dir)
    report = read_status(settings.data_dir)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        _print_status(report)
    if not report["running"]:
        raise typer.Exit(1)


def _print_status(report: dict[str, Any]) -> None:
    if not report["running"]:
        note = " (its last run did not shut down cleanly)" if report.get("stale") else ""
        out.print(f"planloop is [bold]not running[/] on {report['data_dir']}{note}")
        return

    def mark(ok: bool | None) -> str:
        return "[green]answers[/]" if ok else "[red]no answer[/]"

    pg, tp = report["postgres"], report["temporal"]
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")  # a long path or URL is wrapped whole, never cut with an ellipsis
    table.add_column(overflow="fold")  # a long path or URL is wrapped whole, never cut with an ellipsis
    table.add_row("PostgreSQL", pg["dsn"], mark(pg.get("reachable")))
    table.add_row("Temporal", f"{tp['address']} (namespace {tp['namespace']})", mark(tp.get("reachable")))
    if tp.get("ui_url"):
        table.add_row("Temporal UI", tp["ui_url"], mark(tp.get("ui_reachable")))
    if api := report.get("api"):
        table.add_row("HTTP API", f"{api['url']} (docs: {api['docs_url']})", mark(api.get("reachable")))
    table.add_row("Data folder", report["data_dir"], "")
    out.print(
        f"planloop is [bold green]running[/] [dim](pid {report['pid']}, since {report['started_at']})[/]"
    )
    out.print(table)


@app.command("settings")
@user_errors
def show_settings(
    data_dir: DataDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the settings as JSON.")] = False,
) -> None:
    """Show every setting: its environment variable, current value and meaning."""
    from .settings import env_name
    from .worker import redact_dsn

    settings = load_settings(data_dir=data_dir)
    rows = []
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if name == "database_url" and value:
            value = redact_dsn(value)
        rows.append({"variable": env_name(name), "value": value, "description": field.description})
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
        return
    table = Table(box=None)
    table.add_column("variable", no_wrap=True, style="bold")
    table.add_column("value", overflow="fold")
    table.add_column("description")
    for row in rows:
        shown = "[dim](unset)[/]" if row["value"] is None else str(row["value"])
        table.add_row(row["variable"], shown, row["description"])
    out.print(table)


@app.command()
@user_errors
def worker() -> None:
    """Run only the worker against PLANLOOP_DATABASE_URL and PLANLOOP_TEMPORAL_ADDRESS (to scale out)."""
    settings = _settings()
    if not settings.database_url or not settings.temporal_address:
        raise PlanloopError(
            "`planloop worker` needs external servers: set PLANLOOP_DATABASE_URL and "
            "PLANLOOP_TEMPORAL_ADDRESS (or use `planloop up`)"
        )
    asyncio.run(_run_worker_only(settings))


async def _run_worker_only(settings: Settings) -> None:
    import signal

    from .worker import connect_client, run_worker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = await connect_client(settings)
    await run_worker(client, settings, stop)


@app.command()
@user_errors
def migrate() -> None:
    """Apply the event store's migrations to PLANLOOP_DATABASE_URL."""
    from .stack import apply_migrations_to
    from .worker import redact_dsn

    settings = _settings()
    if not settings.database_url:
        raise PlanloopError(
            "set PLANLOOP_DATABASE_URL to the database to migrate (`planloop up` migrates its own)"
        )
    applied = asyncio.run(apply_migrations_to(settings.database_url))
    target = redact_dsn(settings.database_url)
    if applied:
        out.print(f"applied migrations {', '.join(map(str, applied))} to {target}")
    else:
        out.print(f"{target} is up to date")


# -- the HTTP API and its command groups ------------------------------------------------------------------

from .api.actuals_cli import actuals_app  # noqa: E402
from .api.cli import cycle_app, plan_app, token_app  # noqa: E402  (the groups attach after the core commands)
from .api.cli_commands import attach as attach_api_commands  # noqa: E402
from .audit.cli import audit_app  # noqa: E402
from .readmodels.cli import app as readmodels_app  # noqa: E402

app.add_typer(token_app, name="token")
app.add_typer(cycle_app, name="cycle")
app.add_typer(plan_app, name="plan")
app.add_typer(actuals_app, name="actuals")
app.add_typer(readmodels_app, name="readmodels")
app.add_typer(audit_app, name="audit")
attach_api_commands(app)  # inbox, tracking, events, webhook, inbound, schedule; more of cycle and plan


@app.command()
@user_errors
def api() -> None:
    """Run only the HTTP API against PLANLOOP_DATABASE_URL and PLANLOOP_TEMPORAL_ADDRESS, on
    PLANLOOP_API_HOST:PLANLOOP_API_PORT, with its background work (read models, webhook deliveries)."""
    from .api.cli import serve

    settings = _settings()
    if not settings.database_url or not settings.temporal_address:
        raise PlanloopError(
            "`planloop api` needs external servers: set PLANLOOP_DATABASE_URL and "
            "PLANLOOP_TEMPORAL_ADDRESS (or use `planloop up`)"
        )
    serve(settings)
