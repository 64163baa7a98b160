"""`planloop schedule ...`: recurring triggers (Temporal Schedules) through the HTTP API: open a cycle from
a template every year, or remind a cycle's plans to post their actuals every month."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from planloop.errors import PlanloopError

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

schedule_app = typer.Typer(
    help="Schedules (Temporal Schedules): open a cycle every year, remind plans of their actuals monthly.",
    no_args_is_help=True,
)

ScheduleArgument = Annotated[str, typer.Argument(help="The schedule's id, e.g. open-fy.")]


def _template(file: Path) -> Any:
    try:
        raw = file.read_text()
    except OSError as exc:
        raise PlanloopError(f"cannot read {file} ({exc.strerror})") from None
    try:
        data = json.loads(raw) if file.suffix.lower() == ".json" else yaml.safe_load(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise PlanloopError(f"{file} is neither valid YAML nor JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PlanloopError(f"{file} must hold a mapping: hierarchy, cycle_id_pattern, ...")
    return data


def _when(
    cron: str | None, month: int | None, day: int | None, hour: int | None, minute: int | None, time_zone: str
) -> dict[str, Any] | None:
    if cron and any(v is not None for v in (month, day, hour, minute)):
        raise PlanloopError("give --cron, or --month/--day/--hour/--minute, not both")
    when: dict[str, Any] = {"cron": cron} if cron else {}
    for name, value in (("month", month), ("day_of_month", day), ("hour", hour), ("minute", minute)):
        if value is not None:
            when[name] = value
    if not when:
        return None if time_zone == "UTC" else {"time_zone": time_zone}
    return {**when, "time_zone": time_zone}


def _table(schedules: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(schedules)} schedule(s)")
    for column in ("id", "kind", "for", "state", "next firing", "fired", "last fired", "created by"):
        table.add_column(column)
    for s in schedules:
        request = s["request"]
        target = request.get("cycle_id") or (request.get("template") or {}).get("cycle_id_pattern") or "-"
        state = Text("-")
        if s["paused"] is not None:
            state = Text("paused", style="yellow") if s["paused"] else Text("active", style="green")
        last = s["recent_firings"][-1]["started_at"] if s["recent_firings"] else None
        add_data_row(
            table,
            s["schedule_id"],
            s["kind"],
            target,
            state,
            short_time(s["next_firings"][0] if s["next_firings"] else None),
            str(s["firings"]),
            short_time(last),
            s["created_by"],
        )
    return table


@schedule_app.command("create")
@user_errors
def create(
    schedule_id: ScheduleArgument,
    kind: Annotated[
        str, typer.Option("--kind", help="open_cycle (needs --template) or actuals_reminder (--cycle).")
    ],
    template: Annotated[
        Path | None,
        typer.Option("--template", help="open_cycle: the cycle template (YAML or JSON: hierarchy, ...)."),
    ] = None,
    cycle: Annotated[
        str | None, typer.Option("--cycle", help="actuals_reminder: the cycle to remind.")
    ] = None,
    cron: Annotated[str | None, typer.Option("--cron", help='When, as cron, e.g. "0 6 1 10 *".')] = None,
    month: Annotated[
        int | None, typer.Option("--month", min=1, max=12, help="Month (default: every).")
    ] = None,
    day: Annotated[
        int | None, typer.Option("--day", min=1, max=31, help="Day of the month [default: 1].")
    ] = None,
    hour: Annotated[int | None, typer.Option("--hour", min=0, max=23, help="Hour.")] = None,
    minute: Annotated[
        int | None, typer.Option("--minute", min=0, max=59, help="Minute [default: 0].")
    ] = None,
    time_zone: Annotated[str, typer.Option("--time-zone", help="Time zone of the times.")] = "UTC",
    note: Annotated[str, typer.Option("--note", help="A note shown with the schedule.")] = "",
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    idempotency_key: IdempotencyOption = None,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a schedule. Without timing options, open_cycle fires each October 1st at 06:00 and
    actuals_reminder on the 1st of every month at 08:00 (UTC)."""
    body: dict[str, Any] = {"schedule_id": schedule_id, "kind": kind, "note": note, "paused": paused}
    if template is not None:
        body["template"] = _template(template)
    if cycle is not None:
        body["cycle_id"] = cycle
    when = _when(cron, month, day, hour, minute, time_zone)
    if when is not None:
        body["when"] = when
    created = ask(api_url, token, "POST", "/schedules", json=body, headers=idempotency(idempotency_key))
    following = ", ".join(short_time(t) for t in created["next_firings"][:3]) or "-"
    answer(
        created,
        as_json,
        f"created schedule [bold]{escape(created['schedule_id'])}[/] ({escape(created['kind'])}); "
        f"next: {escape(following)}",
    )


@schedule_app.command("list")
@user_errors
def list_schedules(
    api_url: ApiUrlOption = None, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """planloop's schedules with their next and recent firings."""
    schedules = ask(api_url, token, "GET", "/schedules")
    answer(schedules, as_json, _table(schedules))


@schedule_app.command("show")
@user_errors
def show(
    schedule_id: ScheduleArgument,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """One schedule: what it does, its next five firings and the recent ones."""
    schedule = ask(api_url, token, "GET", f"/schedules/{schedule_id}")
    if as_json:
        print_json(schedule)
        return
    out.print(_table([schedule]))
    if schedule["note"]:
        out.print("note: " + escape(schedule["note"]), highlight=False)
    if schedule["next_firings"]:
        out.print("next: " + escape(", ".join(short_time(t) for t in schedule["next_firings"])))
    for firing in schedule["recent_firings"]:
        out.print(f"fired {escape(short_time(firing['started_at']))}: {escape(firing['workflow_id'])}")


@schedule_app.command("trigger")
@user_errors
def trigger(
    schedule_id: ScheduleArgument,
    idempotency_key: IdempotencyOption = None,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Fire the schedule now, besides its calendar (also when paused)."""
    schedule = ask(
        api_url, token, "POST", f"/schedules/{schedule_id}/trigger", headers=idempotency(idempotency_key)
    )
    answer(
        schedule,
        as_json,
        f"triggered schedule [bold]{escape(schedule['schedule_id'])}[/] ({escape(schedule['kind'])})",
    )


ReasonOption = Annotated[str, typer.Option("--reason", help="Why: kept as the schedule's note, with who.")]


def _set_paused(
    action: str, schedule_id: str, reason: str, api_url: str | None, token: str | None, as_json: bool
) -> None:
    """Pause or resume, and say so: with the reason given, and for a resume, when it fires next."""
    schedule = ask(api_url, token, "POST", f"/schedules/{schedule_id}/{action}", json={"reason": reason})
    said = f"{action}d schedule [bold]{escape(schedule_id)}[/]" + (f": {escape(reason)}" if reason else "")
    if action == "resume" and schedule["next_firings"]:
        said += f"; next firing {escape(short_time(schedule['next_firings'][0]))}"
    answer(schedule, as_json, said)


@schedule_app.command("pause")
@user_errors
def pause(
    schedule_id: ScheduleArgument,
    reason: ReasonOption = "",
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stop the schedule's firings until it is resumed (a trigger still fires it)."""
    _set_paused("pause", schedule_id, reason, api_url, token, as_json)


@schedule_app.command("resume")
@user_errors
def resume(
    schedule_id: ScheduleArgument,
    reason: ReasonOption = "",
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Fire on the schedule's calendar again; what it missed while paused is not made up."""
    _set_paused("resume", schedule_id, reason, api_url, token, as_json)


@schedule_app.command("delete")
@user_errors
def delete(
    schedule_id: ScheduleArgument,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete the schedule; what it started (a cycle it opened) keeps running."""
    ask(api_url, token, "DELETE", f"/schedules/{schedule_id}")
    answer({"deleted": schedule_id}, as_json, f"deleted schedule {escape(schedule_id)}")
