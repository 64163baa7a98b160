"""`planloop demo`: a whole planning cycle of a small multinational, told through the HTTP API in under
two minutes of wall time.

It starts the embedded stack in this process (``stack.run_up``: PostgreSQL, the Temporal dev server, the
worker and the API) on a fresh temporary data folder, makes API tokens for the story's people, and opens
FY2027 for Nordwind Group (``demo_company``) with a pace: a compressed calendar on which a month passes
every few seconds. Then everyone acts through the API as they would (``demo_story``): drafts, a pushback
from global leadership with a structured counter-proposal, sign-off, three CSFs per team, a year of actuals
from the ERP with an off-track month explained, quarterly reviews, scoring, and the refine into the next
iteration. At the end it prints the audit history of the business unit's plan, whether the workflow code
reproduces its runs, and where the API docs and the Temporal UI are; the stack stays up to explore until
Ctrl-C (or stops at once with ``--exit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from workflows import plan_id

from . import demo_company as co
from .demo_story import DemoError, Story
from .errors import PlanloopError
from .logging import configure_logging
from .settings import Settings, env_name

#: One calendar month every this many seconds: the story's year (and the two months before it) in about
#: ninety seconds, with weeks of calendar time to spare at every deadline the driver must meet.
DEFAULT_MONTH_SECONDS = 6.0

# -- the auditor's view of the story's plan --------------------------------------------------------------

HISTORY_COLUMNS = ("v", "calendar time", "recorded", "event", "actor", "source", "summary")


def history_rows(history: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """The audit history as rows of text; a run of actuals from one import is shown as one row."""
    rows = []
    index = 0
    while index < len(history):
        entry = history[index]
        run = 1
        while (
            entry["type"] == "ActualRecorded"
            and index + run < len(history)
            and history[index + run]["type"] == "ActualRecorded"
        ):
            run += 1
        actor = entry["actor"] + (f" for {entry['on_behalf_of']}" if entry.get("on_behalf_of") else "")
        last = entry["version"] + run - 1
        rows.append(
            (
                str(entry["version"]) if run == 1 else f"{entry['version']}-{last}",
                entry["at"][:16].replace("T", " "),
                entry["recorded_at"][11:19],
                entry["type"] if run == 1 else f"{entry['type']} x{run}",
                actor,
                entry.get("source") or "",
                entry["summary"] if run == 1 else f"{run} actuals recorded ({entry['summary']}, ...)",
            )
        )
        index += run
    return rows


async def print_audit(story: Story) -> list[dict[str, Any]]:
    """The business unit plan's audit history and the workflow replay verdict, as the auditor reads them."""
    unit = co.STORY_UNIT
    base = f"/audit/cycles/{story.cycle_id}/plans/{unit}"
    history: list[dict[str, Any]] = await story.request("GET", f"{base}/history", "auditor")
    rows = history_rows(history)
    title = f"Audit history of {story.stream(unit)}, as the auditor reads it (GET {base}/history):"
    story.console.print()
    if story.console.is_terminal:
        table = Table(title=title, title_justify="left", box=None, padding=(0, 1))
        for column in HISTORY_COLUMNS:
            table.add_column(column, no_wrap=column != "summary")
        for row in rows:
            table.add_row(*row)
        story.console.print(table)
    else:
        # In a log (a pipe, a file) every event stays on one line, however long its summary.
        widths = [max(len(r[i]) for r in [HISTORY_COLUMNS, *rows]) for i in range(len(HISTORY_COLUMNS) - 1)]
        story.console.print(title, highlight=False, markup=False)
        for row in [HISTORY_COLUMNS, *rows]:
            line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
            story.console.print(f"{line}  {row[-1]}", highlight=False, markup=False, soft_wrap=True)
    replay = await story.request("GET", f"{base}/workflow-replay", "auditor")
    verdict = "[green]reproduces[/]" if replay["reproduced"] else "[red]does NOT reproduce[/]"
    story.console.print(
        f"\nWorkflow replay: the current workflow code {verdict} every decision of the plan's "
        f"{len(replay['runs'])} recorded run(s) ({sum(r['history_events'] for r in replay['runs'])} "
        "history events).",
        highlight=False,
    )
    return history


# -- running it on the embedded stack ---------------------------------------------------------------------


async def make_tokens(dsn: str) -> dict[str, str]:
    """An API token for each of the story's people (stored hashed, like `planloop token create` does)."""
    import asyncpg

    from .api.auth import create_token

    conn = await asyncpg.connect(dsn)
    try:
        tokens = {}
        for person in co.people():
            tokens[person.principal], _ = await create_token(
                conn, person.principal, person.roles, person.scopes, display_name=person.title
            )
        return tokens
    finally:
        await conn.close()


@dataclass
class DemoRun:
    """One `planloop demo`: the stack's announcement starts the story; the story's end may stop the stack."""

    settings: Settings
    console: Console
    month_seconds: float
    exit_when_done: bool
    began: float = field(default_factory=time.monotonic)
    failed: bool = False
    task: asyncio.Task[None] | None = None

    def announce(self, state: dict[str, Any], seconds: float) -> None:
        self.console.print(
            f"[bold green]planloop is up[/] in {seconds:.1f} s on {state['data_dir']} "
            f"[dim](pid {state['pid']})[/]"
        )
        self.task = asyncio.get_running_loop().create_task(self.story(state), name="demo-story")

    async def story(self, state: dict[str, Any]) -> None:
        api = state["api"]["url"]
        ready = time.monotonic() - self.began
        try:
            tokens = await make_tokens(self.settings.database_url or state["postgres"]["dsn"])
            self.console.print(f"[dim]{len(tokens)} API tokens made, one for each person in the story[/]\n")
            async with httpx.AsyncClient(base_url=api, timeout=60) as http:
                story = Story(http, tokens, self.console, self.month_seconds)
                await story.tell()
                told = time.monotonic() - story.began
                await print_audit(story)
            self.finish(state, tokens, story, ready, told)
        except DemoError as err:
            self.failed = True
            self.console.print(f"[bold red]the demo stopped:[/] {escape(str(err))}")
        except Exception:
            self.failed = True
            self.console.print_exception(show_locals=False)
        if self.failed:
            await asyncio.sleep(2)  # let commands already sent finish before the worker stops
        if self.exit_when_done:
            os.kill(os.getpid(), signal.SIGTERM)  # stop the stack as Ctrl-C would
        elif self.failed:
            self.console.print("[dim]The stack keeps running so you can look around; Ctrl-C stops it.[/]")

    def finish(
        self, state: dict[str, Any], tokens: dict[str, str], story: Story, ready: float, told: float
    ) -> None:
        tp = state["temporal"]
        total = time.monotonic() - self.began
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        table.add_row("API docs", state["api"]["docs_url"])
        if tp.get("ui_url"):
            workflow = plan_id(story.cycle_id, co.STORY_UNIT)
            table.add_row("Temporal UI", f"{tp['ui_url']}/namespaces/{tp['namespace']}/workflows/{workflow}")
        table.add_row("Admin token", tokens["planning-office"])
        table.add_row("Auditor token", tokens["auditor"])
        table.add_row("Data folder", state["data_dir"])
        self.console.print()
        self.console.print(table)
        self.console.print(
            f"\n[bold]Wall time:[/] {total:.1f} s in all: the stack ready in {ready:.1f} s, the story of "
            f"{story.steps} steps told in {told:.1f} s.",
            highlight=False,
        )
        if not self.exit_when_done:
            self.console.print("[dim]planloop keeps running so you can explore; Ctrl-C stops it.[/]")


def run_demo(
    settings: Settings,
    *,
    data_dir: Path | None,
    month_seconds: float = DEFAULT_MONTH_SECONDS,
    exit_when_done: bool = False,
    console: Console | None = None,
) -> int:
    """Run the demo; return the process's exit code (0 when the whole story was told)."""
    from .stack import run_up

    if not 0.5 <= month_seconds <= 600:
        raise PlanloopError(
            f"--month-seconds {month_seconds:g} is out of range; give 0.5 to 600 seconds per calendar month"
        )
    temporary = None if data_dir is not None else Path(tempfile.mkdtemp(prefix="planloop-demo-"))
    # Always the embedded servers: the demo writes a whole made-up company, never into a configured database.
    settings = settings.model_copy(
        update={
            "data_dir": data_dir if data_dir is not None else temporary / "data",  # type: ignore[operator]
            "database_url": None,
            "temporal_address": None,
            # The story runs a year on a compressed calendar.
            "paced_cycles": True,
        }
    )
    # The story speaks for itself: planloop's own logs show warnings only, unless a level is configured.
    configure_logging(
        settings.log_format, settings.log_level if env_name("log_level") in os.environ else "WARNING"
    )
    if console is None:
        console = Console()
        if not console.is_terminal:  # a log file or a pipe: wide enough for one line per step
            console = Console(width=220)
    run = DemoRun(settings, console, month_seconds, exit_when_done)

    async def main() -> int:
        code = await run_up(settings, run.announce)
        if run.task is not None and not run.task.done():
            run.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run.task
        return code

    try:
        code = asyncio.run(main())
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    return code or (1 if run.failed or run.task is None else 0)
