"""`planloop audit`: the auditor's commands.

`history`, `as-of` and `diff` are clients of the HTTP API (--api-url, --token), so the terminal goes
through the same checks as every other caller; `replay-workflow` talks to Temporal directly
(PLANLOOP_TEMPORAL_ADDRESS, or the `planloop up` running on the data folder) and replays the plan's recorded
histories in this process, against the code installed here. The integrity commands (verify, checkpoints,
export, bundles) join the group from planloop.audit.integrity_cli.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from planloop.api.cli_client import (
    ApiUrlOption,
    JsonOption,
    TokenOption,
    add_data_row,
    api_client,
    call,
    out,
    print_json,
    short_time,
    user_errors,
)
from planloop.errors import PlanloopError
from planloop.settings import Settings, load_settings

from .integrity_cli import integrity_app

audit_app = typer.Typer(
    help="The auditor's tools: a plan's history, the plan as of any moment, diffs, workflow replay, and "
    "proofs that nothing was altered.",
    no_args_is_help=True,
)
audit_app.add_typer(integrity_app)  # unnamed: its commands join this group

#: `replay-workflow` exits with this when a run is not reproduced (1 is any other error).
NOT_REPRODUCED = 3

Cycle = Annotated[str, typer.Argument(help="The cycle, e.g. FY2027.")]
Unit = Annotated[str, typer.Argument(help="The org unit, e.g. DE-SALES.")]
TIME_HELP = "ISO 8601 with a time zone, e.g. 2027-03-31T18:00:00Z."


def _plan_path(cycle_id: str, unit_id: str) -> str:
    return f"/audit/cycles/{cycle_id}/plans/{unit_id}"


@audit_app.command("history")
@user_errors
def history(
    cycle_id: Cycle,
    unit_id: Unit,
    event_type: Annotated[
        list[str] | None,
        typer.Option("--type", help="Only this event type (repeatable), e.g. ApprovalRecorded."),
    ] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Who acted, or on whose behalf.")] = None,
    since: Annotated[str | None, typer.Option("--since", help=f"From this moment. {TIME_HELP}")] = None,
    until: Annotated[str | None, typer.Option("--until", help=f"Up to this moment. {TIME_HELP}")] = None,
    from_version: Annotated[int | None, typer.Option("--from-version", help="First stream version.")] = None,
    to_version: Annotated[int | None, typer.Option("--to-version", help="Last stream version.")] = None,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every event of a plan: who acted (and for whom), when, from where, why, and for approvals the
    revision and content hash they were bound to."""
    params: dict[str, Any] = {"type": event_type or [], "actor": actor, "since": since, "until": until}
    params |= {"from_version": from_version, "to_version": to_version}
    with api_client(api_url, token) as client:
        entries = call(
            client,
            "GET",
            f"{_plan_path(cycle_id, unit_id)}/history",
            params={k: v for k, v in params.items() if v not in (None, [])},
        )
    if as_json:
        print_json(entries)
        return
    table = Table(title=Text(f"History of {unit_id} in {cycle_id} ({len(entries)} events)"))
    for column in ("v", "recorded", "type", "actor", "source", "what", "why"):
        table.add_column(column, overflow="fold")
    for e in entries:
        who = e["actor"] if not e["on_behalf_of"] else f"{e['actor']} for {e['on_behalf_of']}"
        add_data_row(
            table,
            str(e["version"]),
            short_time(e["recorded_at"]),
            e["type"],
            who,
            e["source"] or "-",
            e["summary"],
            e["reason"] or "",
        )
    out.print(table)


@audit_app.command("as-of")
@user_errors
def as_of(
    cycle_id: Cycle,
    unit_id: Unit,
    at: Annotated[str | None, typer.Option("--at", help=f"The moment. {TIME_HELP}")] = None,
    version: Annotated[
        int | None, typer.Option("--version", help="A stream version (1 is the opening).")
    ] = None,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The plan as it was at a moment (--at) or after a stream version (--version), rebuilt from its
    stored events with the code the workflow runs."""
    if (at is None) == (version is None):
        raise PlanloopError("pass either --at TIME (e.g. 2027-03-31T18:00:00Z) or --version N")
    params = {"at": at} if at is not None else {"version": version}
    with api_client(api_url, token) as client:
        shown = call(client, "GET", f"{_plan_path(cycle_id, unit_id)}/as-of", params=params)
    if as_json:
        print_json(shown)
        return
    plan = shown["plan"]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    add_data_row(grid, "Plan", plan["plan_id"])
    asked = f"as of {shown['as_of']}, " if shown["as_of"] else ""
    written = f"stream version {shown['version']} (written {shown['recorded_at']})"
    add_data_row(grid, "Reflects", f"{asked}{written}")
    add_data_row(grid, "Phase", f"{plan['phase']} (iteration {plan['iteration']})")
    revision = plan["revision"]
    if revision:
        add_data_row(
            grid,
            "Revision",
            f"{revision['number']} by {revision['author']} at {short_time(revision['at'])}: "
            f"{revision['reason']} [{revision['content_hash'][:12]}]",
        )
    add_data_row(grid, "Signed off", str(plan["signed_off_revision"] or "-"))
    if plan["current_gate"]:
        gate, progress = plan["current_gate"]["gate"], plan["current_gate"]["progress"]
        approved = ", ".join(progress["approved_by"]) or "nobody yet"
        due = short_time(progress["due_at"])
        add_data_row(grid, "Gate", f"{gate['name']} (approved by {approved}; due {due})")
    for name, value in execution_rows(shown["state"]):
        add_data_row(grid, name, value)
    out.print(grid)


def execution_rows(state: dict[str, Any]) -> list[tuple[str, str]]:
    """What the plan held beyond its strategy, as rows: decisions, CSFs, actuals, deviations, reviews,
    score, lessons (only those it had)."""
    rows = [("Gate decisions", str(len(state["decisions"])))]
    if state["csfs"]:
        rows.append(("CSFs", ", ".join(f"{c['csf_id']} ({c['owner']})" for c in state["csfs"])))
    if state["actuals"]:
        months = sorted({a["month"] for a in state["actuals"]})
        rows.append(("Actuals", f"{len(state['actuals'])} entries, {months[0]} to {months[-1]}"))
    for d in state["deviations"]:
        explained = (
            f"explained: {d['explanation']}" if d["explanation"] else f"unexplained (owner {d['owner']})"
        )
        rows.append((f"Deviation {d['deviation_id']}", f"{d['measure']} {d['month']}, {explained}"))
    if state["reviews"]:
        rows.append(("Quarterly reviews", ", ".join(f"Q{r['quarter']}" for r in state["reviews"])))
    if state["score"]:
        score = state["score"]
        rows.append(
            ("Score", f"{score['plan_quality']} x {score['execution_effectiveness']} = {score['results']}")
        )
    if state["lessons"]:
        rows.append(("Lessons", str(len(state["lessons"]))))
    return rows


@audit_app.command("diff")
@user_errors
def diff(
    cycle_id: Cycle,
    unit_id: Unit,
    from_revision: Annotated[int | None, typer.Option("--from-revision", help="The older revision.")] = None,
    to_revision: Annotated[int | None, typer.Option("--to-revision", help="The newer revision.")] = None,
    from_time: Annotated[
        str | None, typer.Option("--from-time", help=f"The earlier moment. {TIME_HELP}")
    ] = None,
    to_time: Annotated[str | None, typer.Option("--to-time", help=f"The later moment. {TIME_HELP}")] = None,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """What changed between two revisions (--from-revision/--to-revision) or between the plan at two
    moments (--from-time/--to-time: the latest revision at each)."""
    revisions = [v is not None for v in (from_revision, to_revision)]
    times = [v is not None for v in (from_time, to_time)]
    by_revision = all(revisions) and not any(times)
    if not by_revision and not (all(times) and not any(revisions)):
        raise PlanloopError(
            "pass --from-revision N --to-revision M, or --from-time TIME --to-time TIME (not a mix)"
        )
    with api_client(api_url, token) as client:
        if by_revision:
            path = f"/cycles/{cycle_id}/plans/{unit_id}/diff"
            shown = call(client, "GET", path, params={"from": from_revision, "to": to_revision})
        else:
            path = f"{_plan_path(cycle_id, unit_id)}/diff-at"
            shown = call(client, "GET", path, params={"from": from_time, "to": to_time})
    if as_json:
        print_json(shown)
        return
    title = f"Revision {shown['from_revision']} -> {shown['to_revision']}"
    if "from_moment" in shown:
        title += f" (current at {shown['from_moment']['as_of']} and at {shown['to_moment']['as_of']})"
    out.print(Text(title, style="bold"))
    _print_content_diff(shown["diff"])
    if "changes" in shown:
        _print_state_changes(shown["changes"])


def _print_state_changes(changes: list[dict[str, Any]]) -> None:
    """Besides the content: the parts of the plan that changed between the two moments."""
    if not changes:
        out.print("the rest of the plan: no change")
        return
    table = Table(title="the rest of the plan", box=None, title_justify="left")
    for column in ("part", "change"):
        table.add_column(column)
    for c in changes:
        if c["added"] or c["removed"]:
            what = ", ".join(f"{len(c[k])} {k}" for k in ("added", "removed") if c[k])
        else:
            what = f"{json.dumps(c['before'])} -> {json.dumps(c['after'])}"
        add_data_row(table, c["field"], what)
    out.print(table)


def _print_content_diff(changes: dict[str, Any]) -> None:
    if not changes["changed_fields"]:
        out.print("content: no change")
        return
    out.print(Text(f"changed: {', '.join(changes['changed_fields'])}"))
    table = Table(box=None)
    for column in ("what", "key", "old", "new", "change %"):
        table.add_column(column)
    for kind in ("target_changes", "forecast_changes", "budget_changes"):
        for c in changes[kind]:
            pct = "-" if c["change_pct"] is None else str(c["change_pct"])
            add_data_row(table, kind.removesuffix("_changes"), c["key"], str(c["old"]), str(c["new"]), pct)
    if table.rows:
        out.print(table)
    for kind in ("programs_added", "programs_dropped"):
        if changes[kind]:
            out.print(Text(f"{kind.replace('_', ' ')}: {', '.join(changes[kind])}"))


def temporal_settings(settings: Settings) -> Settings:
    """PLANLOOP_TEMPORAL_ADDRESS, else the Temporal of the `planloop up` running on the data folder."""
    if settings.temporal_address:
        return settings
    from planloop.stack import read_status

    status = read_status(settings.data_dir)
    if status.get("running"):
        temporal = status["temporal"]
        return settings.model_copy(
            update={"temporal_address": temporal["address"], "temporal_namespace": temporal["namespace"]}
        )
    raise PlanloopError(
        "no Temporal: set PLANLOOP_TEMPORAL_ADDRESS, or start `planloop up` (its data folder: --data-dir)"
    )


@audit_app.command("replay-workflow")
@user_errors
def replay_workflow(
    plan: Annotated[str, typer.Argument(help="CYCLE/UNIT (e.g. FY2027/DE-SALES) or plan:FY2027:DE-SALES.")],
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Data folder of `planloop up`.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Fetch every run of the plan's Temporal workflow and replay it against the workflow code installed
    here: does it reproduce every recorded decision? Exits 3 when a run is not reproduced."""
    from planloop.audit.replay import WorkflowNotFound, replay_plan_workflow, workflow_id_of
    from planloop.worker import connect_client

    try:
        workflow_id = workflow_id_of(plan)
    except ValueError as exc:
        raise PlanloopError(str(exc)) from None
    settings = temporal_settings(load_settings(data_dir=data_dir))

    async def replay() -> Any:
        client = await connect_client(settings)
        return await replay_plan_workflow(client, workflow_id)

    try:
        report = asyncio.run(replay())
    except WorkflowNotFound as exc:
        raise PlanloopError(str(exc)) from None
    if as_json:
        print_json(
            {
                "workflow_id": report.workflow_id,
                "reproduced": report.reproduced,
                "runs": [run.__dict__ for run in report.runs],
                "unavailable_runs": list(report.unavailable_runs),
            }
        )
    else:
        _print_replay(report)
    if not report.reproduced:
        raise typer.Exit(NOT_REPRODUCED)


def _print_replay(report: Any) -> None:
    table = Table(title=Text(f"Replay of {report.workflow_id} against the current code"))
    table.add_column("run", no_wrap=True, min_width=36)  # whole, to copy into Temporal's UI or CLI
    for column in ("started", "ended", "events", "reproduced"):
        table.add_column(column)
    for run in report.runs:
        mark = Text("yes", style="green") if run.reproduced else Text("NO", style="bold red")
        add_data_row(
            table, run.run_id, f"{run.started_at:%Y-%m-%d %H:%M}", run.ended, str(run.history_events), mark
        )
    out.print(table)
    for run in report.runs:
        if not run.reproduced:
            where = f" at history event {run.failed_event_id} ({run.failed_event_type})"
            headline = f"run {run.run_id} is not reproduced{where if run.failed_event_id else ''}: "
            # The failure is Temporal's text, with brackets in it: printed as text, never read as markup.
            out.print(Text.assemble((headline, "bold red"), run.failure or ""), highlight=False)
    for run_id in report.unavailable_runs:
        out.print(
            Text(f"run {run_id} (and any before it) is no longer kept by Temporal: not replayed", "yellow")
        )
    if report.reproduced:
        out.print(
            f"[green]the current code reproduces every recorded decision of {len(report.runs)} run(s)[/]"
        )
