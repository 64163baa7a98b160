"""The story `planloop demo` tells: Nordwind Group's FY2027, driven through the HTTP API as its people would
drive it (``demo_company`` holds the company; ``demo`` runs it on the embedded stack).

The driver never races the clock. It waits for the calendar moments it needs (a month must be over before
its actuals are posted) and for what the workflows do on their own timers (each month's close, each
quarter's review falling due, the period's end), which it learns from the event feed. Every deadline it
must meet has weeks of calendar time to spare, but for one: an off-track figure's explanation is due five
calendar days after it is recorded (under a second of wall time at the default pace), so the owner
explains as soon as the deviation opens. Each month follows the calendar on its own, so one slow plan
cannot make the later months late.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import httpx
from rich.console import Console
from rich.markup import escape

from domain import BudgetCut, CounterProposal, Gate, LessonLink, PlanContent, TargetChange, Team
from domain.base import month_add, month_start
from workflows import plan_id
from workflows.contracts import Pace

from . import demo_company as co
from .errors import PlanloopError

#: Longest the driver waits for something the workflows do on their own, beyond its calendar moment.
PATIENCE = 60.0

T = TypeVar("T")


class DemoError(PlanloopError):
    """The story could not go on: what was refused or never happened, and why."""


# -- the event feed, followed in the background ---------------------------------------------------------


class Feed:
    """Follows ``GET /events`` (long-polling) and keeps the cycle's events, so the driver can wait for what
    the workflows do on their own timers."""

    def __init__(self, http: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.http = http
        self.headers = headers
        self.events: list[dict[str, Any]] = []
        self.problem = ""  # why the last read failed, if it did: said when a wait gives up
        self._changed = asyncio.Event()

    async def follow(self) -> None:
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 1000, "wait": 2}
            if cursor is not None:
                params["after"] = cursor
            try:
                answer = await self.http.get("/events", params=params, headers=self.headers)
            except httpx.TransportError as err:
                self.problem = f"the event feed did not answer ({err})"
                await asyncio.sleep(0.2)
                continue
            if answer.status_code != 200:
                self.problem = f"the event feed answered {answer.status_code}: {answer.text[:200]}"
                await asyncio.sleep(0.2)
                continue
            self.problem = ""
            page = answer.json()
            cursor = page["next_cursor"]
            if page["events"]:
                self.events.extend(page["events"])
                self._changed.set()
                self._changed = asyncio.Event()

    def of(self, stream_id: str, *types: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["stream_id"] == stream_id and (not types or e["type"] in types)]

    async def wait_for(self, found: Callable[[], T | None], what: str, timeout: float = PATIENCE) -> T:
        """``found()``'s first answer that is not None (or empty), re-asked as events arrive."""
        deadline = time.monotonic() + timeout
        while True:
            changed = self._changed
            answer = found()
            if answer:
                return answer
            left = deadline - time.monotonic()
            if left <= 0:
                why = self.problem or "the machine may be overloaded"
                raise DemoError(f"{what} did not happen within {timeout:.0f} s; {why}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), left)


# -- the story ---------------------------------------------------------------------------------------------


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json")


def _money(amount: Decimal | float | str) -> str:
    value = Decimal(str(amount))
    return f"€{value / 1_000_000:.2f}M" if abs(value) >= 1_000_000 else f"€{value / 1000:.0f}k"


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{Decimal(str(value)):.0f}%"


def _expenses(content: Any) -> Decimal:
    return sum((line.amount.amount for line in content.budget), Decimal(0)) + sum(
        (p.cost.amount for p in content.programs), Decimal(0)
    )


@dataclass
class Story:
    """Drives FY2027 of Nordwind Group through the HTTP API, one line of output per step."""

    http: httpx.AsyncClient
    tokens: dict[str, str]
    console: Console
    month_seconds: float
    began: float = field(default_factory=time.monotonic)
    cycle_id: str = co.FISCAL_YEAR
    pace: Pace | None = None
    feed: Feed = field(init=False)
    steps: int = 0
    forecasts: dict[str, dict[str, Decimal]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.feed = Feed(self.http, self.auth("auditor"))

    # -- plumbing ------------------------------------------------------------------------------------------

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def calendar_now(self) -> datetime | None:
        return None if self.pace is None else self.pace.calendar_at(datetime.now(UTC))

    def say(self, unit_id: str | None, text: str) -> None:
        self.steps += 1
        wall = time.monotonic() - self.began
        now = self.calendar_now()
        day = f"{now:%d %b %Y}" if now is not None else "           "
        who = co.UNIT_BY_ID[unit_id].name if unit_id in co.UNIT_BY_ID else (unit_id or co.COMPANY)
        self.console.print(
            f"[dim]{wall:6.1f}s[/]  [cyan]{day}[/]  [bold]{escape(who):<30}[/] {escape(text)}",
            highlight=False,
        )

    async def request(self, method: str, path: str, who: str, **kwargs: Any) -> Any:
        """One API call as ``who``; writes carry an Idempotency-Key and are retried with it on a transport
        error or a 503, so a slow machine never applies a command twice."""
        headers = {**self.auth(who), "Idempotency-Key": f"demo-{uuid.uuid4()}"}
        for attempt in range(4):
            try:
                answer = await self.http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as err:
                if attempt == 3:
                    raise DemoError(f"{method} {path} as {who} failed: {err}") from None
                await asyncio.sleep(1)
                continue
            # 503: the workflow service did not answer; 409 in progress: our own first try is still running.
            busy = answer.status_code == 409 and "in_progress" in answer.text
            if (answer.status_code == 503 or busy) and attempt < 3:
                await asyncio.sleep(1)
                continue
            if answer.status_code >= 400 and answer.status_code != 207:
                try:
                    body = answer.json()
                    detail = f"{body.get('code')}: {body.get('message')}"
                except ValueError:
                    detail = answer.text
                raise DemoError(f"{method} {path} as {who} was refused ({answer.status_code} {detail})")
            return answer.json()
        raise AssertionError("unreachable")

    async def command(self, who: str, unit_id: str, name: str, body: dict[str, Any] | None = None) -> Any:
        path = f"/cycles/{self.cycle_id}/plans/{unit_id}/commands/{name}"
        return await self.request("POST", path, who, json=body or {})

    async def plan(self, unit_id: str, who: str = "auditor") -> Any:
        return await self.request("GET", f"/cycles/{self.cycle_id}/plans/{unit_id}", who)

    def stream(self, unit_id: str) -> str:
        return plan_id(self.cycle_id, unit_id)

    async def until_calendar(self, moment: datetime) -> None:
        """Sleep until the cycle's calendar reads ``moment``."""
        assert self.pace is not None
        left = (self.pace.real_at(moment) - datetime.now(UTC)).total_seconds()
        if left > 0:
            await asyncio.sleep(left)

    async def each(self, units: Sequence[co.Unit], step: Callable[[co.Unit], Any]) -> None:
        """``step`` for every unit side by side; the first failure cancels the others."""
        async with asyncio.TaskGroup() as group:
            for unit in units:
                group.create_task(step(unit))

    @property
    def months(self) -> tuple[str, ...]:
        return co.calendar(self.cycle_id).months()

    # -- 1. the cycle ----------------------------------------------------------------------------------

    async def open_cycle(self) -> None:
        for n in range(1, 100):
            candidate = co.FISCAL_YEAR if n == 1 else f"{co.FISCAL_YEAR}-R{n}"
            if (await self.http.get(f"/cycles/{candidate}", headers=self.auth("auditor"))).status_code == 404:
                self.cycle_id = candidate
                break
        body = {
            "calendar": _dump(co.calendar(self.cycle_id)),
            "hierarchy": _dump(co.hierarchy()),
            "currency": co.CURRENCY,
            "pace": {
                "month_seconds": self.month_seconds,
                "calendar_starts_at": co.CALENDAR_STARTS.isoformat(),
            },
        }
        opened = await self.request("POST", "/cycles", "planning-office", json=body)
        self.pace = Pace.model_validate(opened["pace"])
        units = ", ".join(co.UNIT_BY_ID[u].name for u in opened["plans"])
        self.say(
            None,
            f"the planning office opens cycle {self.cycle_id}: a plan for each unit ({units}); "
            f"a calendar month passes every {self.month_seconds:g} s",
        )
        await self.feed.wait_for(
            lambda: all(self.feed.of(self.stream(u.unit_id), "PlanOpened") for u in co.UNITS),
            "the opening of every plan",
        )

    # -- 2. strategy and the annual dance ------------------------------------------------------------------

    async def submitted_hash(self, unit_id: str) -> str:
        return str((await self.plan(unit_id))["submission"]["content_hash"])

    def chain(self, unit: co.Unit) -> tuple[Gate, ...]:
        return co.hierarchy().approval_chain(unit.unit_id, co.calendar(self.cycle_id))

    async def approve(self, unit: co.Unit, gates: Sequence[Gate], content_hash: str) -> list[str]:
        """``gates`` approve the submitted revision (bound to its hash); the events of the last approval."""
        events: list[str] = []
        for gate in gates:
            for approver in gate.approvers[: gate.required_approvals()]:
                answer = await self.command(
                    approver, unit.unit_id, "ApprovePlan", {"content_hash": content_hash}
                )
                events = answer["events"]
        return events

    async def sign_off(self, unit: co.Unit) -> None:
        """Every gate of the unit's chain approves the submitted revision, and the plan is signed off."""
        events = await self.approve(unit, self.chain(unit), await self.submitted_hash(unit.unit_id))
        if "PlanSignedOff" not in events:
            raise DemoError(f"the plan of {unit.name} passed every gate but was not signed off ({events})")

    async def draft_and_submit(self, unit: co.Unit, reason: str) -> Any:
        draft = co.content(unit, self.months)
        await self.command(
            unit.author, unit.unit_id, "ReviseStrategy", {"content": _dump(draft), "reason": reason}
        )
        await self.command(unit.author, unit.unit_id, "SubmitForApproval")
        return draft

    async def plain_sign_off(self, unit: co.Unit) -> None:
        draft = await self.draft_and_submit(unit, f"FY2027 plan of {unit.name}")
        await self.sign_off(unit)
        self.say(
            unit.unit_id,
            f"drafted, submitted and signed off at every gate: revenue {_money(draft.goals[0].target)}, "
            f"expenses {_money(_expenses(draft))}",
        )

    async def story_sign_off(self) -> None:
        unit = co.UNIT_BY_ID[co.STORY_UNIT]
        draft = await self.draft_and_submit(unit, "First draft: turnkey depot charging for German fleets")
        self.say(
            unit.unit_id,
            f"the business-unit head submits revision 1: revenue {_money(draft.goals[0].target)}, expenses "
            f"{_money(_expenses(draft))}, {len(draft.programs)} programs",
        )
        # Country management and regional leadership approve; global leadership pushes back.
        content_hash = await self.submitted_hash(unit.unit_id)
        for gate in self.chain(unit)[:-1]:
            await self.approve(unit, [gate], content_hash)
            self.say(unit.unit_id, f"{gate.name or gate.gate_id} approves revision 1")
        stretch = CounterProposal(
            target_changes=(TargetChange(goal_id="G-REV", percent=Decimal(10)),),
            forecast_change_pct=Decimal(10),
            budget_cuts=(
                BudgetCut(line_id="B-MARKETING", percent=Decimal(20)),
                BudgetCut(line_id="B-TRAVEL", percent=Decimal(25)),
            ),
            programs_to_drop=("P-WEBINAR",),
            comment="Revenue +10%, marketing -20%, travel -25%, and drop the webinars.",
        )
        await self.command(
            "ceo",
            unit.unit_id,
            "RequestChanges",
            {
                "content_hash": content_hash,
                "comment": "Germany is our strongest fleet market: aim higher and spend less getting there.",
                "counter_proposal": _dump(stretch),
            },
        )
        self.say(
            unit.unit_id,
            "global leadership pushes back with a counter-proposal: revenue +10% (stretched), "
            "marketing -20%, travel -25%, no webinars",
        )
        revised = await self.command(
            unit.author,
            unit.unit_id,
            "AcceptCounterProposal",
            {"reason": "Agreed with the CEO: two more depot pilots carry the stretch"},
        )
        diff = (
            await self.request(
                "GET",
                f"/cycles/{self.cycle_id}/plans/{unit.unit_id}/diff",
                "auditor",
                params={"from": 1, "to": 2},
            )
        )["diff"]
        changes = [
            f"{c['key']} {_money(c['old'])} -> {_money(c['new'])}"
            for c in (*diff["target_changes"][:1], *diff["budget_changes"])
        ]
        self.say(
            unit.unit_id,
            f"the business-unit head revises: revision {revised['revision']} takes the counter-proposal "
            f"({'; '.join(changes)}; dropped {', '.join(diff['programs_dropped'])})",
        )
        await self.command(unit.author, unit.unit_id, "SubmitForApproval")
        await self.sign_off(unit)
        signed = await self.plan(unit.unit_id)
        self.say(
            unit.unit_id,
            f"country, region and global leadership sign off revision {signed['signed_off_revision']} "
            f"(content hash {signed['submission']['content_hash'][:12]}…)",
        )

    async def strategy_and_sign_off(self) -> None:
        async def sign_off(unit: co.Unit) -> None:
            await (self.story_sign_off() if unit.unit_id == co.STORY_UNIT else self.plain_sign_off(unit))

        await self.each(co.UNITS, sign_off)

    # -- 3. execution planning -------------------------------------------------------------------------

    async def plan_execution(self, unit: co.Unit) -> None:
        await self.command(
            unit.author,
            unit.unit_id,
            "StartExecutionPlanning",
            {"sales_lead": unit.sales_lead, "marketing_lead": unit.marketing_lead},
        )
        csfs = co.csfs(unit, self.months)

        async def team_agrees(team: Team, lead: str) -> None:
            # Each lead shares their team's CSFs, then confirms the joint plan once the other team's are in.
            for csf in (c for c in csfs if c.team is team):
                await self.command(lead, unit.unit_id, "DefineCsf", {"csf": _dump(csf)})

        await asyncio.gather(
            team_agrees(Team.SALES, unit.sales_lead), team_agrees(Team.MARKETING, unit.marketing_lead)
        )
        await asyncio.gather(
            self.command(unit.sales_lead, unit.unit_id, "ConfirmAlignment", {"team": "sales"}),
            self.command(unit.marketing_lead, unit.unit_id, "ConfirmAlignment", {"team": "marketing"}),
        )
        await self.command(unit.author, unit.unit_id, "StartExecution")
        # Actuals are measured against the signed-off forecast (after any counter-proposal).
        signed = (await self.plan(unit.unit_id))["revision"]["content"]
        self.forecasts[unit.unit_id] = {
            line["month"]: Decimal(str(line["amount"]["amount"])) for line in signed["forecast"]
        }
        if unit.unit_id == co.STORY_UNIT:
            for team in Team:
                names = ", ".join(c.name for c in csfs if c.team is team)
                self.say(unit.unit_id, f"{team.value} agrees three CSFs, each with an owner: {names}")
            self.say(unit.unit_id, "both leads confirm the joint plan (aligned); execution starts")
        else:
            self.say(
                unit.unit_id, "three sales and three marketing CSFs agreed and aligned; execution starts"
            )

    # -- 4. the year -----------------------------------------------------------------------------------------

    def actual_rows(self, index: int, month: str) -> list[dict[str, str]]:
        rows = []
        for unit in co.UNITS:
            measures = [("revenue", self.forecasts[unit.unit_id][month], co.CURRENCY)]
            measures += [(c.csf_id, c.monthly_targets[index].target, "") for c in co.csfs(unit, self.months)]
            for measure, target, currency in measures:
                value = (target * co.actual_factor(unit.unit_id, index, measure)).quantize(Decimal(1))
                row = {"unit": unit.unit_id, "measure": measure, "month": month, "value": str(value)}
                rows.append({**row, "currency": currency, "source": "erp:sap"} if currency else row)
        return rows

    async def post_actuals(self, rows: list[dict[str, str]]) -> None:
        report = await self.request(
            "POST", f"/cycles/{self.cycle_id}/actuals/import", "erp", json={"rows": rows}
        )
        if report["applied"] != len(rows):
            raise DemoError(f"the ERP's actuals were not all applied: {report['errors'] or report['plans']}")

    async def off_track(self, month: str, rows: list[dict[str, str]]) -> None:
        """The ERP posts the story unit's two bad figures of ``month``; each opens a deviation that its owner
        explains at once (a deviation is due for explanation five calendar days after it opens)."""
        unit = co.UNIT_BY_ID[co.STORY_UNIT]
        stream = self.stream(unit.unit_id)
        texts = {
            "revenue": "Two fleet orders (a city utility and a parcel hub) slipped into June: their grid "
            "connection permits came late. Both are signed; the revenue lands next month.",
            co.OFF_TRACK_CSF: "Both pilot sites waited for the same grid permits as the orders; the pilots "
            "convert in June once the depots are connected.",
        }

        async def post_and_explain(row: dict[str, str]) -> None:
            body = {k: row[k] for k in ("measure", "month", "value")} | {"source": "erp:sap"}
            if row.get("currency"):
                body["currency"] = row["currency"]
            await self.command("erp", unit.unit_id, "RecordActual", body)

            def opened() -> dict[str, Any] | None:
                return next(
                    (
                        e
                        for e in self.feed.of(stream, "DeviationOpened")
                        if (e["data"]["month"], e["data"]["measure"]) == (month, row["measure"])
                    ),
                    None,
                )

            data = (await self.feed.wait_for(opened, f"the deviation of {row['measure']} in {month}"))["data"]
            await self.command(
                data["owner"],
                unit.unit_id,
                "ExplainDeviation",
                {"deviation_id": data["deviation_id"], "explanation": texts[row["measure"]]},
            )
            attainment = Decimal(str(data["actual"])) / Decimal(str(data["target"])) * 100
            late = any(
                e["data"]["deviation_id"] == data["deviation_id"]
                for e in self.feed.of(stream, "ExplanationOverdue")
            )
            self.say(
                unit.unit_id,
                f"{row['measure']} off track in {month} ({attainment:.0f}% of target); "
                f"{data['owner']} explains{' (after its deadline)' if late else ''}: "
                f"{texts[row['measure']].split(':')[0].split(';')[0]}",
            )

        await asyncio.gather(*(post_and_explain(row) for row in rows))

    async def monthly_close(self, month: str) -> dict[str, Any]:
        """Wait until the workflows have closed ``month`` (their own timers), and return the story unit's
        monthly report."""

        def closed() -> list[dict[str, Any]] | None:
            found = [
                e
                for u in co.UNITS
                for e in self.feed.of(self.stream(u.unit_id), "MonthlyReportIssued")
                if e["data"]["report"]["month"] == month
            ]
            return found if len(found) == len(co.UNITS) else None

        assert self.pace is not None
        close = co.calendar(self.cycle_id).close_at(month)
        wait = max(0.0, (self.pace.real_at(close) - datetime.now(UTC)).total_seconds()) + PATIENCE
        reports = await self.feed.wait_for(closed, f"the monthly close of {month}", timeout=wait)
        return next(r for r in reports if r["stream_id"] == self.stream(co.STORY_UNIT))["data"]["report"]

    async def hold_reviews(self, quarter: int) -> None:
        def due() -> bool:
            return all(
                any(
                    e["data"]["quarter"] == quarter
                    for e in self.feed.of(self.stream(u.unit_id), "QuarterlyReviewDue")
                )
                for u in co.UNITS
            )

        await self.feed.wait_for(due, f"Q{quarter}'s reviews falling due")
        decisions = {2: ("Start grid permits before the order is signed",)}.get(
            quarter, ("Keep the pilot program",)
        )

        async def review(unit: co.Unit) -> None:
            await self.command(
                unit.author,
                unit.unit_id,
                "HoldQuarterlyReview",
                {
                    "quarter": quarter,
                    "attendees": [unit.author, unit.sales_lead, unit.marketing_lead],
                    "decisions": list(decisions),
                    "improvement_actions": [
                        {
                            "description": "Win-loss review of the quarter's fleet deals",
                            "owner": unit.sales_lead,
                            "due": co.review_due(self.months).isoformat(),
                        }
                    ],
                },
            )

        await self.each(co.UNITS, review)
        self.say(None, f"Q{quarter} reviews held in all {len(co.UNITS)} units: decided '{decisions[0]}'")

    async def month_of_tracking(self, index: int, month: str) -> None:
        """The ERP posts ``month``'s actuals (the day after it ends); the plans' clocks close it; a quarter's
        last month brings the quarterly reviews."""
        rows = self.actual_rows(index, month)
        if index == co.OFF_TRACK_MONTH_INDEX:
            # The two bad figures first, each explained by its owner as soon as it is recorded.
            bad = [
                r
                for r in rows
                if r["unit"] == co.STORY_UNIT and r["measure"] in ("revenue", co.OFF_TRACK_CSF)
            ]
            await self.off_track(month, bad)
            rows = [r for r in rows if r not in bad]
        await self.post_actuals(rows)
        report = await self.monthly_close(month)
        actual = report["revenue_actual"]
        share = (
            "no revenue reported"
            if actual is None
            else f"{Decimal(str(actual)) / Decimal(str(report['revenue_forecast'])):.0%} of forecast"
        )
        self.say(
            None,
            f"{month} closed by the clock, a report for each plan; E-Mobility Germany at {share}, "
            f"year-end outlook {_money(report['year_end_extrapolation'])} "
            f"(plan {_money(report['year_end_forecast'])})",
        )
        quarter_ends = co.calendar(self.cycle_id).quarter_ends()
        if month in quarter_ends:
            await self.hold_reviews(quarter_ends.index(month) + 1)

    async def the_year(self) -> None:
        # Each month follows the calendar alone: its actuals are posted the day after it ends whether or
        # not the month before has been seen to close, so one slow plan cannot make the others late.
        async with asyncio.TaskGroup() as months:
            for index, month in enumerate(self.months):
                await self.until_calendar(month_start(month_add(month, 1)) + timedelta(days=1))
                months.create_task(self.month_of_tracking(index, month))

    # -- 5. learn and refine ---------------------------------------------------------------------------------

    async def learn_and_refine(self) -> None:
        def period_closed() -> list[dict[str, Any]] | None:
            found = [
                e for u in co.UNITS for e in self.feed.of(self.stream(u.unit_id), "ExecutionPeriodClosed")
            ]
            return found if len(found) == len(co.UNITS) else None

        closed = await self.feed.wait_for(period_closed, "the end of the execution period")
        self.say(None, "the period has ended: every plan moves on to learning, with evidence from its data")
        evidence = {e["stream_id"]: e["data"]["evidence"] for e in closed}
        next_months = co.calendar(self.cycle_id).shifted().months()

        async def learn(unit: co.Unit) -> None:
            found = evidence[self.stream(unit.unit_id)]
            quality = found["suggested_plan_quality"] or 7
            effectiveness = found["suggested_execution_effectiveness"] or 7
            reviewer = "ceo" if unit.unit_id == "EMEA" else "emea-president"
            await self.command(
                reviewer,
                unit.unit_id,
                "ScorePlan",
                {
                    "plan_quality": quality,
                    "execution_effectiveness": effectiveness,
                    "rationale": f"forecast accuracy {found['forecast_accuracy_pct']}%, "
                    f"CSF attainment {found['csf_attainment_pct']}%",
                },
            )
            self.say(
                unit.unit_id,
                f"scored by {reviewer}: plan quality {quality} x execution {effectiveness} = "
                f"{quality * effectiveness} (forecast accuracy {_pct(found['forecast_accuracy_pct'])}, "
                f"CSF attainment {_pct(found['csf_attainment_pct'])})",
            )
            story = unit.unit_id == co.STORY_UNIT
            lesson = (
                "Grid connection permits decide when fleet revenue lands: start them before the order."
                if story
                else "Fleet renewals cluster in spring and autumn: staff installers for the peaks."
            )
            await self.command(
                unit.author, unit.unit_id, "RecordLesson", {"text": lesson, "category": "execution"}
            )
            links: list[LessonLink] = []
            how_to_win = ""
            if story:
                (recorded,) = await self.feed.wait_for(
                    lambda: self.feed.of(self.stream(unit.unit_id), "LessonRecorded"), "the lesson"
                )
                how_to_win = "Turnkey depot charging in one contract, the grid permit filed before the order."
                links = [
                    LessonLink(changed_field="choices.how_to_win", lesson_id=recorded["data"]["lesson_id"])
                ]
            # The next iteration starts from the last strategy (programs included): only what a lesson
            # motivates changes; goals, forecast and budget are planned for the new period anyway.
            last = PlanContent.model_validate((await self.plan(unit.unit_id))["revision"]["content"])
            planned = co.content(unit, next_months, growth=Decimal("1.12"))
            choices = (
                last.choices.model_copy(update={"how_to_win": how_to_win}) if how_to_win else last.choices
            )
            refined = last.model_copy(
                update={"choices": choices, "goals": planned.goals, "forecast": planned.forecast}
            )
            await self.command(
                unit.author,
                unit.unit_id,
                "RefineStrategy",
                {
                    "content": _dump(refined),
                    "reason": "FY2028: the next iteration, refined from what FY2027 taught us",
                    "lesson_links": [_dump(link) for link in links],
                },
            )
            if story:
                self.say(
                    unit.unit_id,
                    "records the lesson and refines the strategy into the next iteration: how to win now "
                    f"files grid permits before the order (linked to the lesson); FY2028 revenue "
                    f"{_money(refined.goals[0].target)}",
                )

        await self.each(co.UNITS, learn)
        for unit in co.UNITS:
            await self.feed.wait_for(
                lambda unit=unit: self.feed.of(self.stream(unit.unit_id), "StrategyRefined"), "the refine"
            )
        story = await self.plan(co.STORY_UNIT)
        self.say(
            None,
            f"every plan is refined into iteration {story['iteration']} ({story['phase']}); "
            "strategy changes happened in the refine step, never during execution",
        )

    # -- all of it -------------------------------------------------------------------------------------------

    async def tell(self) -> None:
        follower = asyncio.create_task(self.feed.follow(), name="demo-feed")
        try:
            await self.open_cycle()
            await self.strategy_and_sign_off()
            await self.each(co.UNITS, self.plan_execution)
            await self.the_year()
            await self.learn_and_refine()
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
