"""Following and closing a cycle from the terminal: `cycle show` (its calendar and progress), `cycle progress`
(where its plans stand), `cycle rollup` (a unit's consolidated figures) and `cycle close`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from planloop.errors import PlanloopError

from .cli import cycle_app
from .cli_client import (
    ApiUrlOption,
    IdempotencyOption,
    JsonOption,
    TokenOption,
    api_client,
    call,
    idempotency,
    out,
    print_json,
    short_time,
    user_errors,
)

CycleArgument = Annotated[str, typer.Argument(help="The cycle, e.g. FY2027.")]


def _cycle(api_url: str | None, token: str | None, cycle_id: str) -> Any:
    with api_client(api_url, token) as client:
        return call(client, "GET", f"/cycles/{cycle_id}")


def _progress_table(progress: dict[str, Any]) -> Table:
    table = Table(
        title=f"cycle {progress['cycle_id']}: {progress['started']} of {progress['plans']} plans started"
    )
    table.add_column("where")
    table.add_column("plans", justify="right")
    for phase, count in sorted(progress["phases"].items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(phase, str(count))
    table.add_section()
    table.add_row("signed off", str(progress["signed_off"]))
    table.add_row("escalated", str(progress["escalated"]))
    table.add_row("overdue", str(progress["overdue"]))
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
    cycle = _cycle(api_url, token, cycle_id)
    if as_json:
        print_json(cycle)
        return
    calendar = cycle["calendar"]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row(
        "Cycle", f"{cycle['cycle_id']} ({'[red]closed[/]' if cycle['closed'] else '[green]open[/]'})"
    )
    grid.add_row("Plans", str(cycle["plans"]))
    grid.add_row(
        "Execution",
        f"{calendar['execution_months']} months from {calendar['execution_start']} "
        f"(actuals close on day {calendar['monthly_close_day']})",
    )
    grid.add_row("Strategy window", short_time(calendar.get("strategy_window_opens")))
    grid.add_row("Approval deadline", short_time(calendar.get("approval_deadline")))
    for gate in calendar.get("gate_deadlines") or []:
        grid.add_row(f"  {gate['level']} gate", short_time(gate["at"]))
    out.print(grid)
    if cycle["progress"]:
        out.print(_progress_table(cycle["progress"]))
    else:
        out.print("[dim]progress: the cycle's workflow did not answer; the calendar comes from the store[/]")


@cycle_app.command("progress")
@user_errors
def cycle_progress(
    cycle_id: CycleArgument,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Where the cycle's plans stand: how many in each phase, signed off, escalated, overdue."""
    progress = _cycle(api_url, token, cycle_id)["progress"]
    if progress is None:
        raise PlanloopError(
            f"cycle {cycle_id}'s workflow did not answer; retry shortly (`cycle show` reads the rest)"
        )
    if as_json:
        print_json(progress)
        return
    out.print(_progress_table(progress))


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
    with api_client(api_url, token) as client:
        rollup = call(client, "GET", f"/cycles/{cycle_id}/rollup", params={"unit": unit} if unit else None)
    if as_json:
        print_json(rollup)
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Unit", f"{rollup['unit_id']} ({len(rollup['plans'])} plan(s) with figures)")
    grid.add_row("Forecast", _money(rollup["forecast"]))
    grid.add_row("Budget", _money(rollup["budget"]))
    grid.add_row("Program cost", _money(rollup["program_cost"]))
    grid.add_row("Revenue to date", _money(rollup.get("revenue_actual_to_date") or {}))
    grid.add_row("Year-end extrapolation", _money(rollup.get("year_end_extrapolation") or {}))
    phases = rollup.get("phases") or {}
    grid.add_row("Phases", ", ".join(f"{p} {n}" for p, n in sorted(phases.items())) or "-")
    grid.add_row(
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
            table.add_row(target["metric"], str(target["total"]), target["unit"])
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
    with api_client(api_url, token) as client:
        result = call(
            client,
            "POST",
            f"/cycles/{cycle_id}/commands/CloseCycle",
            json={"reason": reason},
            headers=idempotency(idempotency_key),
        )
    if as_json:
        print_json(result)
        return
    out.print(
        f"closed cycle [bold]{cycle_id}[/]: {', '.join(result.get('events') or []) or 'nothing changed'}"
    )
