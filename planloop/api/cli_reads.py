"""Reading plans from the terminal: `plan list` (the cycle's plans, filtered), `plan revisions`,
`plan revision`, `plan diff`, `inbox` (the approvals waiting on me) and `tracking` (a plan's targets and
actuals by month).

Each prints a rich table, or the API's answer as one line of JSON with ``--json``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from planloop.errors import PlanloopError

from .cli import plan_app, revisions_table
from .cli_client import (
    ApiUrlOption,
    JsonOption,
    TokenOption,
    add_data_row,
    answer,
    ask,
    out,
    print_json,
    short_time,
    user_errors,
)

CycleArgument = Annotated[str, typer.Argument(help="The cycle, e.g. FY2027.")]
UnitArgument = Annotated[str, typer.Argument(help="The org unit, e.g. DE.")]

# Phases of the loop, for --phase (the API refuses others with the list).
PHASES = (
    "drafting, in_review, changes_requested, approved, execution_planning, executing, learning, rejected, "
    "reopened, cancelled, closed"
)


def _get(api_url: str | None, token: str | None, path: str, params: dict[str, Any] | None = None) -> Any:
    return ask(api_url, token, "GET", path, params={k: v for k, v in (params or {}).items() if v is not None})


def _yes(value: bool) -> Text:
    return Text("yes", style="red") if value else Text("-")


@plan_app.command("list")
@user_errors
def list_plans(
    cycle_id: CycleArgument,
    unit: Annotated[str | None, typer.Option("--unit", help="Only this unit's plan and those below.")] = None,
    phase: Annotated[str | None, typer.Option("--phase", help=f"Only plans in this phase: {PHASES}.")] = None,
    overdue: Annotated[
        bool | None,
        typer.Option("--overdue/--not-overdue", help="Only plans with (or without) something overdue."),
    ] = None,
    escalated: Annotated[
        bool | None,
        typer.Option("--escalated/--not-escalated", help="Only plans whose gate escalated (or not)."),
    ] = None,
    waiting_on_me: Annotated[
        bool,
        typer.Option(
            "--waiting-on-me",
            help="Only plans where something waits on me: an approval, my draft to submit, changes "
            "requested of my plan, a deviation of mine to explain.",
        ),
    ] = False,
    waiting_on: Annotated[
        str | None,
        typer.Option("--waiting-on", help="Only plans waiting on this person (auditors and admins)."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="At most this many plans.")] = 100,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many plans first.")] = 0,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The cycle's plans in hierarchy order: phase, revision, whose approval they wait for, what is
    overdue."""
    if waiting_on_me and waiting_on:
        raise PlanloopError("use --waiting-on-me or --waiting-on NAME, not both")
    params = {
        "unit": unit,
        "phase": phase,
        "overdue": None if overdue is None else str(overdue).lower(),
        "escalated": None if escalated is None else str(escalated).lower(),
        "waiting_on": "me" if waiting_on_me else waiting_on,
        "limit": limit,
        "offset": offset,
    }
    listed = _get(api_url, token, f"/cycles/{cycle_id}/plans", params)
    if as_json:
        print_json(listed)
        return
    shown = len(listed["plans"])
    table = Table(title=escape(f"cycle {listed['cycle_id']}: {shown} of {listed['total']} plan(s)"))
    for column in (
        "unit",
        "level",
        "phase",
        "iter",
        "rev",
        "signed off",
        "waiting on",
        "due",
        "esc",
        "overdue",
    ):
        table.add_column(column, no_wrap=column in ("unit", "phase"))
    waiting = bool(params["waiting_on"])
    if waiting:
        table.add_column("waiting for")
    for p in listed["plans"]:
        overdue_parts = []
        months = p.get("actuals_overdue_months")  # an older server gives only the count
        if months:
            overdue_parts.append(f"actuals of {', '.join(months)}")
        elif p["overdue_months"]:
            overdue_parts.append(f"{p['overdue_months']} month(s) of actuals")
        if p["explanations_overdue"]:
            overdue_parts.append(f"{p['explanations_overdue']} explanation(s)")
        if p["overdue"] and not overdue_parts:
            overdue_parts.append("gate")
        add_data_row(
            table,
            p["unit_id"],
            p["level"],
            p["phase"] or "-",
            str(p["iteration"]),
            str(p["revision"] or "-"),
            str(p["signed_off_revision"] or "-"),
            ", ".join(p["pending_approvers"]) or "-",
            short_time(p["gate_due_at"]),
            _yes(p["escalated"]),
            Text("; ".join(overdue_parts), style="red") if overdue_parts else "-",
            *([", ".join(p["waiting_for"])] if waiting else []),
        )
    out.print(table)


@plan_app.command("revisions")
@user_errors
def list_revisions(
    cycle_id: CycleArgument,
    unit_id: UnitArgument,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every revision of a plan, across iterations, oldest first: who, when, why, and what changed."""
    revisions = _get(api_url, token, f"/cycles/{cycle_id}/plans/{unit_id}/revisions")
    title = f"plan {unit_id} of {cycle_id}: {len(revisions)} revision(s)"
    answer(revisions, as_json, revisions_table(revisions, title))


@plan_app.command("revision")
@user_errors
def show_revision(
    cycle_id: CycleArgument,
    unit_id: UnitArgument,
    number: Annotated[int, typer.Argument(help="The revision's number (`plan revisions` lists them).")],
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """One revision in full: author, time, reason, content hash, and its content (with --json)."""
    revision = _get(api_url, token, f"/cycles/{cycle_id}/plans/{unit_id}/revisions/{number}")
    if as_json:
        print_json(revision)
        return
    content = revision.get("content") or {}
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    add_data_row(grid, "Revision", f"{revision['number']} (iteration {revision['iteration']})")
    add_data_row(grid, "Author", f"{revision['author']}, {short_time(revision['at'])}")
    add_data_row(grid, "Reason", revision["reason"])
    add_data_row(grid, "Content hash", revision["content_hash"])
    add_data_row(grid, "Changed", ", ".join(revision["diff"]["changed_fields"]) or "-")
    add_data_row(grid, "Sections", ", ".join(k for k, v in content.items() if v) or "-")
    out.print(grid)
    out.print("[dim]The full content: add --json.[/]")


def _changes(table: Table, kind: str, changes: list[dict[str, Any]]) -> None:
    for c in changes:
        pct = c.get("change_pct")
        add_data_row(
            table,
            kind,
            c["key"],
            "-" if c["old"] is None else str(c["old"]),
            "-" if c["new"] is None else str(c["new"]),
            "-" if pct is None else f"{float(pct):+.1f} %",
        )


@plan_app.command("diff")
@user_errors
def diff_revisions(
    cycle_id: CycleArgument,
    unit_id: UnitArgument,
    from_revision: Annotated[int, typer.Option("--from", help="The older revision's number.")],
    to_revision: Annotated[int, typer.Option("--to", help="The newer revision's number.")],
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """What changed between two revisions: targets, forecast, budget, programs added and dropped."""
    compared = _get(
        api_url,
        token,
        f"/cycles/{cycle_id}/plans/{unit_id}/diff",
        {"from": from_revision, "to": to_revision},
    )
    if as_json:
        print_json(compared)
        return
    diff = compared["diff"]
    title = f"plan {unit_id} of {cycle_id}: revision {compared['from_revision']} -> {compared['to_revision']}"
    if not diff["changed_fields"]:
        out.print(f"{escape(title)}: no change")
        return
    out.print(f"[bold]{escape(title)}[/]: changed {escape(', '.join(diff['changed_fields']))}")
    table = Table()
    for column in ("what", "key", "from", "to", "change"):
        table.add_column(column)
    _changes(table, "target", diff["target_changes"])
    _changes(table, "forecast", diff["forecast_changes"])
    _changes(table, "budget", diff["budget_changes"])
    for name in diff["programs_added"]:
        add_data_row(table, "program", name, "-", "added", "")
    for name in diff["programs_dropped"]:
        add_data_row(table, "program", name, "dropped", "-", "")
    if table.row_count:
        out.print(table)


@user_errors
def inbox(
    approver: Annotated[
        str | None, typer.Option("--approver", help="Whose inbox (auditors and admins); default: mine.")
    ] = None,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The approvals waiting on me now, most urgent first, with the content hash an approval must name."""
    found = _get(api_url, token, "/inbox", {"approver": approver})
    if as_json:
        print_json(found)
        return
    if not found["items"]:
        out.print(f"nothing waits on {escape(found['approver'])}")
        return
    table = Table(title=escape(f"{found['total']} approval(s) waiting on {found['approver']}"))
    for column in ("cycle", "unit", "gate", "rev", "due", "via", "content hash"):
        table.add_column(column, no_wrap=column == "content hash")
    for item in found["items"]:
        via = item["via"] if item["via"] == "seat" else f"{item['via']} ({item['seat']})"
        due = Text(short_time(item["due_at"]))
        if item["escalated"]:
            due.append(" escalated", style="red")
        add_data_row(
            table,
            item["cycle_id"],
            item["unit_id"],
            item["gate_id"],
            str(item["revision"]),
            due,
            via,
            item["content_hash"],
        )
    out.print(table)


_STATUS_STYLE = {"on_track": "green", "at_risk": "yellow", "off_track": "red", "no_data": "dim"}


@user_errors
def tracking(
    cycle_id: CycleArgument,
    unit_id: UnitArgument,
    measure: Annotated[
        str | None, typer.Option("--measure", help="Only this measure (revenue or a CSF).")
    ] = None,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """A plan's tracking: per measure (revenue and each CSF) and month, the target, the actual, its status."""
    found = _get(api_url, token, f"/cycles/{cycle_id}/plans/{unit_id}/tracking")
    if measure is not None:
        found["lines"] = [line for line in found["lines"] if line["measure"] == measure]
    if as_json:
        print_json(found)
        return
    if not found["lines"]:
        nothing = f"plan {unit_id} of {cycle_id} tracks nothing yet" + (f" for {measure}" if measure else "")
        out.print(escape(nothing))
        return
    table = Table(title=escape(f"tracking of plan {unit_id} in {cycle_id}"))
    for column in ("measure", "month", "target", "actual", "status", "source"):
        table.add_column(column, justify="right" if column in ("target", "actual") else "left")
    for line in found["lines"]:
        add_data_row(
            table,
            line["measure"],
            line["month"],
            "-" if line["target"] is None else str(line["target"]),
            "-" if line["actual"] is None else str(line["actual"]),
            Text(line["status"], style=_STATUS_STYLE.get(line["status"], "")),
            line["source"] or "-",
        )
    out.print(table)
