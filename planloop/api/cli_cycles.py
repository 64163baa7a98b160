"""Following and closing a cycle from the terminal: `cycle list` (every cycle), `cycle show` (its calendar and
progress), `cycle progress` (where its plans stand), `cycle rollup` (a unit's consolidated figures) and
`cycle close`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from planloop.errors import PlanloopError

from .cli import cycle_app
from .cli_client import (
    ApiUrlOption,
    IdempotencyOption,
    JsonOption,
    TokenOption,
    add_data_row,
    answer,
    ask,
    idempotency,
    out,
    print_json,
    short_time,
    user_errors,
)

CycleArgument = Annotated[str, typer.Argument(help="The cycle, e.g. FY2027.")]


def _progress_table(progress: dict[str, Any]) -> Table:
    started = f"{progress['started']} of {progress['plans']} plans opened"
    table = Table(title=escape(f"cycle {progress['cycle_id']}: {started}"))
    table.add_column("where")
    table.add_column("plans", justify="right")
    for phase, count in sorted(progress["phases"].items(), key=lambda kv: (-kv[1], kv[0])):
        add_data_row(table, phase, str(count))
    table.add_section()
    add_data_row(table, "signed off", str(progress["signed_off"]))
    add_data_row(table, "escalated", str(progress["escalated"]))
    add_data_row(table, "overdue", str(progress["overdue"]))
    return table


@cycle_app.command("show")
@user_errors
def show_cycle(
    cycle_id: CycleArgument,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The cycle: open or closed, its calendar (months, gate deadlines) and its progress."""
    cycle = ask(api_url, token, "GET", f"/cycles/{cycle_id}")
    if as_json:
        print_json(cycle)
        return
    calendar = cycle["calendar"]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    state = Text("closed", style="red") if cycle["closed"] else Text("open", style="green")
    add_data_row(grid, "Cycle", Text.assemble(cycle["cycle_id"], " (", state, ")"))
    add_data_row(grid, "Plans", str(cycle["plans"]))
    add_data_row(
        grid,
        "Execution",
        f"{calendar['execution_months']} months from {calendar['execution_start']} "
        f"(actuals close on day {calendar['monthly_close_day']})",
    )
    add_data_row(grid, "Strategy window", short_time(calendar.get("strategy_window_opens")))
    add_data_row(grid, "Approval deadline", short_time(calendar.get("approval_deadline")))
    for gate in calendar.get("gate_deadlines") or []:
        add_data_row(grid, f"  {gate['level']} gate", short_time(gate["at"]))
    out.print(grid)
    out.print(_progress_table(cycle["progress"]))


@cycle_app.command("list")
@user_errors
def list_cycles(
    state: Annotated[
        str | None, typer.Option("--state", help="Only 'open' or 'closed' cycles.", case_sensitive=False)
    ] = None,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every planning cycle, newest first: when it was opened, open or closed, its plans per phase."""
    if state is not None and state.lower() not in ("open", "closed"):
        raise PlanloopError(f"--state {state!r}: use open or closed")
    params = {} if state is None else {"closed": state.lower() == "closed"}
    cycles = ask(api_url, token, "GET", "/cycles", params=params)
    table = Table(title=f"{len(cycles)} cycle(s)")
    for column in ("cycle", "opened", "state", "plans", "phases"):
        table.add_column(column)
    for c in cycles:
        phases = ", ".join(f"{n} {phase}" for phase, n in sorted(c["phases"].items(), key=lambda kv: -kv[1]))
        add_data_row(
            table,
            c["cycle_id"],
            short_time(c["opened_at"]),
            "closed" if c["closed"] else "open",
            str(c["plans"]),
            phases or "-",
        )
    answer(cycles, as_json, table)


@cycle_app.command("progress")
@user_errors
def cycle_progress(
    cycle_id: CycleArgument,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Where the cycle's plans stand: how many in each phase, signed off, escalated, overdue."""
    progress = ask(api_url, token, "GET", f"/cycles/{cycle_id}")["progress"]
    answer(progress, as_json, _progress_table(progress))


def _money(amounts: dict[str, Any]) -> str:
    return ", ".join(f"{value} {currency}" for currency, value in sorted(amounts.items())) or "-"


@cycle_app.command("rollup")
@user_errors
def cycle_rollup(
    cycle_id: CycleArgument,
    unit: Annotated[
        str | None,
        typer.Option("--unit", help="A unit (e.g. a region): it and all below. Default: the company."),
    ] = None,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """A unit's consolidated figures: forecast, budget, program cost, targets, actuals to date, phases."""
    rollup = ask(api_url, token, "GET", f"/cycles/{cycle_id}/rollup", params={"unit": unit} if unit else None)
    if as_json:
        print_json(rollup)
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    add_data_row(grid, "Unit", f"{rollup['unit_id']} ({len(rollup['plans'])} plan(s) with figures)")
    add_data_row(grid, "Forecast", _money(rollup["forecast"]))
    add_data_row(grid, "Budget", _money(rollup["budget"]))
    add_data_row(grid, "Program cost", _money(rollup["program_cost"]))
    add_data_row(grid, "Revenue to date", _money(rollup.get("revenue_actual_to_date") or {}))
    add_data_row(grid, "Year-end extrapolation", _money(rollup.get("year_end_extrapolation") or {}))
    phases = rollup.get("phases") or {}
    add_data_row(grid, "Phases", ", ".join(f"{p} {n}" for p, n in sorted(phases.items())) or "-")
    add_data_row(
        grid,
        "Signed off / escalated / overdue",
        f"{rollup.get('signed_off', 0)} / {rollup.get('escalated', 0)} / {rollup.get('overdue', 0)}",
    )
    out.print(grid)
    if rollup["targets"]:
        table = Table(title="consolidated targets")
        table.add_column("metric")
        table.add_column("total", justify="right")
        table.add_column("unit")
        for target in rollup["targets"]:
            add_data_row(table, target["metric"], str(target["total"]), target["unit"])
        out.print(table)


@cycle_app.command("close")
@user_errors
def close_cycle(
    cycle_id: CycleArgument,
    reason: Annotated[
        str, typer.Option("--reason", help="Why: recorded on the cycle and on every open plan.")
    ],
    idempotency_key: IdempotencyOption = None,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Close the cycle: every plan still open is closed with the reason (roles: leadership, admin)."""
    result = ask(
        api_url,
        token,
        "POST",
        f"/cycles/{cycle_id}/commands/CloseCycle",
        json={"reason": reason},
        headers=idempotency(idempotency_key),
    )
    changed = ", ".join(result.get("events") or []) or "nothing changed"
    answer(result, as_json, f"closed cycle [bold]{escape(cycle_id)}[/]: {escape(changed)}")
