"""The API's command groups of the `planloop` CLI: `token` (made directly in the database, so the first
admin token exists before anyone can call the API), `cycle` and `plan` (clients of the HTTP API, so the
terminal goes through the same checks as every other caller)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from planloop.errors import PlanloopError
from planloop.settings import Settings, load_settings

from .cli_client import (
    ApiUrlOption,
    IdempotencyOption,
    JsonOption,
    TokenOption,
    add_data_row,
    answer,
    api_client,
    ask,
    call,
    idempotency,
    out,
    print_json,
    short_time,
    user_errors,
)

T = TypeVar("T")

token_app = typer.Typer(
    help="API tokens: create, list and revoke (directly in the database).", no_args_is_help=True
)
cycle_app = typer.Typer(help="Planning cycles, through the HTTP API.", no_args_is_help=True)
plan_app = typer.Typer(
    help="Plans: show them and send them commands, through the HTTP API.", no_args_is_help=True
)

# -- tokens ------------------------------------------------------------------------------------------------


def database_of(settings: Settings) -> str:
    """PLANLOOP_DATABASE_URL, else the database of the `planloop up` running on the data folder."""
    if settings.database_url:
        return settings.database_url
    from planloop.stack import read_status

    status = read_status(settings.data_dir)
    if status.get("running"):
        return str(status["postgres"]["dsn"])
    raise PlanloopError(
        "no database: set PLANLOOP_DATABASE_URL, or start `planloop up` (its data folder: --data-dir)"
    )


@token_app.command("create")
@user_errors
def create_token_command(
    principal: Annotated[
        str, typer.Option("--principal", help="Who the token acts as (the actor on events).")
    ],
    role: Annotated[
        list[str],
        typer.Option(
            "--role",
            help="A role (repeatable): planner, approver, leadership, csf_owner, "
            "auditor, integration, admin.",
        ),
    ],
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help="An org unit it may act on, with those below (repeatable). None: the whole company.",
        ),
    ] = None,
    name: Annotated[str, typer.Option("--name", help="A display name.")] = "",
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Data folder of `planloop up`.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create an API token and print it (once: only its hash is stored). Works on a fresh install."""
    from planloop.api.auth import create_token, parse_roles

    try:
        roles = parse_roles(role)
    except ValueError as exc:
        raise PlanloopError(str(exc)) from None
    dsn = database_of(load_settings(data_dir=data_dir))

    async def make() -> tuple[str, Any]:
        import asyncpg

        from planloop.stack import apply_migrations_to

        await apply_migrations_to(dsn)  # a fresh database gets its tables first
        conn = await asyncpg.connect(dsn)
        try:
            return await create_token(conn, principal, roles, scope or (), name)
        finally:
            await conn.close()

    token, created = asyncio.run(make())
    if as_json:
        shown = {
            "token": token,
            "principal": principal,
            "roles": sorted(r.value for r in roles),
            "scopes": scope or [],
            "created_at": created.isoformat(),
        }
        sys.stdout.write(json.dumps(shown) + "\n")
        return
    reach = "scopes " + ", ".join(scope) if scope else "the whole company"
    held = ", ".join(sorted(r.value for r in roles))
    out.print(f"token for [bold]{escape(principal)}[/] ({held}; {escape(reach)}):")
    sys.stdout.write(token + "\n")
    out.print("[dim]Store it now: it is not shown again. Send it as 'Authorization: Bearer <token>'.[/]")


@token_app.command("revoke")
@user_errors
def revoke_token_command(
    principal: Annotated[str, typer.Option("--principal", help="Revoke every token of this principal.")],
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Data folder of `planloop up`.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke every live token of a principal."""
    from planloop.api.auth import revoke_tokens

    revoked = _on_database(data_dir, lambda conn: revoke_tokens(conn, principal))
    if as_json:
        print_json({"principal": principal, "revoked": revoked})
        return
    out.print(f"revoked {revoked} token(s) of {escape(principal)}")


@token_app.command("list")
@user_errors
def list_tokens_command(
    revoked: Annotated[bool, typer.Option("--revoked", help="Also list revoked tokens.")] = False,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Data folder of `planloop up`.")] = None,
    as_json: JsonOption = False,
) -> None:
    """The API tokens: whose, with which roles and scopes, made when (never the tokens themselves: only
    their hashes are stored)."""
    from planloop.api.auth import list_tokens

    tokens = _on_database(data_dir, lambda conn: list_tokens(conn, include_revoked=revoked))
    if as_json:
        print_json(tokens)
        return
    table = Table(title=f"{len(tokens)} token(s)")
    for column in ("principal", "name", "roles", "scopes", "created", *(("revoked",) if revoked else ())):
        table.add_column(column)
    for t in tokens:
        add_data_row(
            table,
            t["principal"],
            t["display_name"] or "-",
            ", ".join(t["roles"]),
            ", ".join(t["scopes"]) or "whole company",
            short_time(t["created_at"]),
            *((short_time(t["revoked_at"]) if t["revoked_at"] else "-",) if revoked else ()),
        )
    out.print(table)


def _on_database(data_dir: Path | None, action: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``action(connection)`` on planloop's database (PLANLOOP_DATABASE_URL or `planloop up`'s)."""
    dsn = database_of(load_settings(data_dir=data_dir))

    async def run() -> T:
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            return await action(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


# -- the API's client --------------------------------------------------------------------------------------


@cycle_app.command("open")
@user_errors
def open_cycle(
    file: Annotated[Path, typer.Argument(help="The cycle as YAML or JSON: calendar, hierarchy, currency.")],
    idempotency_key: IdempotencyOption = None,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Open a planning cycle from an org chart and calendar; it starts one plan per unit below global."""
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise PlanloopError(f"cannot read {file} ({exc.strerror})") from None
    headers = idempotency(idempotency_key)
    opened = ask(api_url, token, "POST", "/cycles/upload", files={"file": (file.name, raw)}, headers=headers)
    answer(
        opened,
        as_json,
        f"opened cycle [bold]{escape(opened['cycle_id'])}[/] with {len(opened['plans'])} plans: "
        f"{escape(', '.join(opened['plans']))}",
    )


def revisions_table(revisions: list[dict[str, Any]], title: str) -> Table:
    """A plan's revisions, one a row: who, when, why, what changed and the start of the content hash."""
    table = Table(title=escape(title))
    for column in ("#", "iteration", "author", "at", "source", "reason", "changed", "hash"):
        table.add_column(column)
    for r in revisions:
        add_data_row(
            table,
            str(r["number"]),
            str(r["iteration"]),
            r["author"],
            short_time(r["at"]),
            r["source"] + (f" (by {r['counter_proposal_by']})" if r["counter_proposal_by"] else ""),
            r["reason"],
            ", ".join(r["changed_fields"]) or "-",
            r["content_hash"][:12],
        )
    return table


@plan_app.command("show")
@user_errors
def show_plan(
    cycle_id: Annotated[str, typer.Argument(help="The cycle, e.g. FY2027.")],
    unit_id: Annotated[str, typer.Argument(help="The org unit, e.g. DE-SALES.")],
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a plan: its phase, current revision, gate and revisions."""
    with api_client(api_url, token) as client:
        plan = call(client, "GET", f"/cycles/{cycle_id}/plans/{unit_id}")
        revisions = call(client, "GET", f"/cycles/{cycle_id}/plans/{unit_id}/revisions")
    if as_json:
        print_json({**plan, "revisions": revisions})
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    add_data_row(grid, "Plan", plan["plan_id"])
    add_data_row(grid, "Phase", f"{plan['phase']} (iteration {plan['iteration']})")
    add_data_row(grid, "Authors", ", ".join(plan["authors"]))
    if plan["current_gate"]:
        gate = plan["current_gate"]["gate"]
        add_data_row(grid, "Gate", f"{gate['name']}: {', '.join(gate['approvers'])} (due {gate['deadline']})")
    add_data_row(grid, "Signed off", str(plan["signed_off_revision"] or "-"))
    out.print(grid)
    out.print(revisions_table(revisions, "Revisions"))


@plan_app.command("command")
@user_errors
def send_command(
    cycle_id: Annotated[str, typer.Argument(help="The cycle, e.g. FY2027.")],
    unit_id: Annotated[str, typer.Argument(help="The org unit, e.g. DE-SALES.")],
    command: Annotated[str, typer.Argument(help="The command, e.g. SubmitForApproval (see /docs).")],
    data: Annotated[str | None, typer.Option("--data", help="The command's fields as JSON.")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="The command's fields from a JSON file.")
    ] = None,
    idempotency_key: IdempotencyOption = None,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send a domain command to a plan, as the token's principal."""
    try:
        fields = json.loads(file.read_text() if file else (data or "{}"))
    except (OSError, ValueError) as exc:
        raise PlanloopError(f"the command's fields are not readable JSON ({exc})") from None
    result = ask(
        api_url,
        token,
        "POST",
        f"/cycles/{cycle_id}/plans/{unit_id}/commands/{command}",
        json=fields,
        headers=idempotency(idempotency_key),
    )
    where = (
        f"phase {result['phase']}, revision {result['revision']}, version {result['stream_version']}"
        f"{', a repeat' if result['duplicate'] else ''}"
    )
    changed = ", ".join(result["events"]) or "nothing changed"
    answer(result, as_json, f"{escape(result['command'])}: {escape(changed)} [dim]({escape(where)})[/]")


def serve(settings: Settings) -> None:
    """`planloop api`: the API alone, against PLANLOOP_DATABASE_URL and PLANLOOP_TEMPORAL_ADDRESS."""
    asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> None:
    import signal

    from planloop.api.server import reserve_api_port, serve_api
    from planloop.worker import connect_client, open_event_store

    with reserve_api_port(settings) as sock:  # before connecting out: see reserve_api_port
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        client = await connect_client(settings)
        store = await open_event_store(settings)
        try:
            await serve_api(settings, store, client, stop, sock=sock)
        finally:
            await store.close()
