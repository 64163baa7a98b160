"""A cycle whose country plans are executing, for the actuals tests: global (HQ, one approver) above N
countries, each with revenue and up to six CSFs (three a team), over up to 36 months. Opened through the
API; the plans are walked to execution through their workflows directly (quicker than HTTP, and not what
these tests are about)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from temporalio.client import Client

from domain import (
    ForecastLine,
    GateMode,
    Money,
    OrgHierarchy,
    OrgLevel,
    OrgUnit,
    PlanContent,
    PlanState,
    Team,
)
from domain import commands as cmd
from domain.base import month_add, month_start
from tests.api.conftest import unique_cycle, wait_for_plans
from tests.workflows import scenario
from workflows import PlanWorkflow, plan_id
from workflows.contracts import CommandResult, PlanCommand


def head(unit: str) -> str:
    return f"{unit.lower()}-mgr"


def csf_ids(count: int) -> list[str]:
    return [f"K{i:02d}" for i in range(1, count + 1)]


def hierarchy(units: list[str]) -> OrgHierarchy:
    return OrgHierarchy(
        units=(
            OrgUnit(
                unit_id="HQ",
                name="Global",
                level=OrgLevel.GLOBAL,
                approvers=("ceo",),
                approval_mode=GateMode.SINGLE,
                fallback_approver="board-chair",
            ),
            *(
                OrgUnit(unit_id=u, name=u, level=OrgLevel.COUNTRY, parent_id="HQ", head=head(u))
                for u in units
            ),
        )
    )


async def send(client: Client, cycle_id: str, unit: str, command: cmd.CommandBase) -> CommandResult:
    return await client.get_workflow_handle(plan_id(cycle_id, unit)).execute_update(
        command.type,  # type: ignore[attr-defined]
        PlanCommand(command=command),  # type: ignore[arg-type]
        result_type=CommandResult,
    )


async def executing_cycle(
    http: httpx.AsyncClient,
    admin: Any,
    client: Client,
    units: list[str],
    csfs: int,
    months: int = 12,
    execution_start: str | None = None,
) -> tuple[str, tuple[str, ...]]:
    """Open a cycle of ``units`` and bring each plan to execution; the cycle id and its months.

    ``execution_start`` (a month, e.g. one in the past) overrides the scenario's, the month after next."""
    cycle_id = unique_cycle()
    calendar = scenario.calendar(cycle_id, datetime.now(UTC))
    calendar = calendar.model_copy(
        update={"execution_months": months, "execution_start": execution_start or calendar.execution_start}
    )
    body = {
        "calendar": calendar.model_dump(mode="json"),
        "hierarchy": hierarchy(units).model_dump(mode="json"),
        "currency": "EUR",
    }
    opened = await http.post("/cycles", json=body, headers=admin)
    assert opened.status_code == 201, opened.text
    await wait_for_plans(http, admin, cycle_id, tuple(units))
    period = calendar.months()

    async def execute(unit: str) -> None:
        now = datetime.now(UTC)
        author, sales, marketing = head(unit), f"{unit}-sales", f"{unit}-marketing"
        content = plan_content(period)
        await send(
            client, cycle_id, unit, cmd.ReviseStrategy(actor=author, at=now, content=content, reason="d")
        )
        await send(client, cycle_id, unit, cmd.SubmitForApproval(actor=author, at=now))
        state = await client.get_workflow_handle(plan_id(cycle_id, unit)).query(
            PlanWorkflow.state, result_type=PlanState
        )
        assert state.submission is not None
        approve = cmd.ApprovePlan(actor="ceo", at=now, content_hash=state.submission.content_hash)
        await send(client, cycle_id, unit, approve)
        await send(
            client,
            cycle_id,
            unit,
            cmd.StartExecutionPlanning(actor=author, at=now, sales_lead=sales, marketing_lead=marketing),
        )
        for index, csf_id in enumerate(csf_ids(csfs)):
            team = Team.MARKETING if index % 2 == 0 else Team.SALES
            owner = marketing if team is Team.MARKETING else sales
            await send(
                client,
                cycle_id,
                unit,
                cmd.DefineCsf(actor=owner, at=now, csf=scenario.csf(csf_id, team, f"{unit}-owner", period)),
            )
        await send(client, cycle_id, unit, cmd.ConfirmAlignment(actor=sales, at=now, team=Team.SALES))
        await send(client, cycle_id, unit, cmd.ConfirmAlignment(actor=marketing, at=now, team=Team.MARKETING))
        result = await send(client, cycle_id, unit, cmd.StartExecution(actor=author, at=now))
        assert result.phase == "executing", result

    await asyncio.gather(*(execute(u) for u in units))
    return cycle_id, period


def plan_content(months: tuple[str, ...]) -> PlanContent:
    """The scenario's plan over any number of months: 100,000 EUR of revenue a month."""
    base = scenario.content("DE", months[:12], scale=1000)
    deadline = (month_start(month_add(months[-1], 1)) - timedelta(days=1)).date()
    return base.model_copy(
        update={
            "forecast": tuple(
                ForecastLine(month=m, amount=Money(amount=Decimal(100000), currency="EUR")) for m in months
            ),
            "goals": tuple(g.model_copy(update={"deadline": deadline}) for g in base.goals),
        }
    )


def rows(units: list[str], months: tuple[str, ...], csfs: int) -> list[dict[str, str]]:
    """Every actual of every plan: revenue in EUR and each CSF, every month; file order by unit."""
    out = []
    for unit in units:
        for month in months:
            out.append(
                {
                    "unit": unit,
                    "measure": "revenue",
                    "month": month,
                    "value": "98000.50",
                    "currency": "EUR",
                    "source": "erp:sap",
                }
            )
            for csf_id in csf_ids(csfs):
                out.append(
                    {
                        "unit": unit,
                        "measure": csf_id,
                        "month": month,
                        "value": "11",
                        "currency": "",
                        "source": "crm",
                    }
                )
    return out


def to_csv(table: list[dict[str, str]]) -> str:
    columns = ["unit", "measure", "month", "value", "currency", "source"]
    lines = [",".join(columns)]
    lines += [",".join(r.get(c, "") for c in columns) for r in table]
    return "\n".join(lines) + "\n"
