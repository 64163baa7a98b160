"""What the API sends is shown as sent: the CLI never reads the API's data as rich markup. Each command runs
against a small HTTP server whose answers carry text in brackets (an actor ``svc[erp]``, a reason holding
``[/]``): the text must appear whole, and ``[/]`` must not break the command (it did: rich read it as a
closing tag with nothing to close)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.api.test_cli_reads import cli
from tests.conftest import free_port

MARK = "svc[erp] [bold]x[/] y"  # lost as markup: "svc y" or a MarkupError
AT = "2027-01-05T10:00:00Z"

EVENT = {
    "position": 7,
    "recorded_at": AT,
    "stream_id": f"plan:FY:{MARK}",
    "type": "PlanSubmitted",
    "metadata": {"actor": MARK},
    "data": {},
}
REVISION = {
    "number": 1,
    "iteration": 1,
    "author": MARK,
    "at": AT,
    "source": MARK,
    "counter_proposal_by": MARK,
    "reason": MARK,
    "changed_fields": [MARK],
    "content_hash": "abc123",
}
SCHEDULE = {
    "schedule_id": MARK,
    "kind": "actuals_reminder",
    "request": {"cycle_id": MARK},
    "paused": False,
    "note": MARK,
    "next_firings": [AT],
    "recent_firings": [{"started_at": AT, "workflow_id": MARK}],
    "firings": 1,
    "created_by": MARK,
}
PROGRESS = {
    "cycle_id": MARK,
    "plans": 2,
    "started": 2,
    "phases": {MARK: 2},
    "signed_off": 0,
    "escalated": 0,
    "overdue": 0,
}
CHANGE = {"key": MARK, "old": "1", "new": "2", "change_pct": "100"}

# (method, path pattern, answer): the API's answers, with brackets in every text a person reads.
ANSWERS: list[tuple[str, str, Any]] = [
    ("GET", r"/events", {"events": [EVENT], "next_cursor": MARK}),
    (
        "GET",
        r"/webhooks/subscriptions",
        [
            {
                "id": MARK,
                "url": f"https://h.example/{MARK}",
                "event_types": [MARK],
                "active": True,
                "created_at": AT,
            }
        ],
    ),
    (
        "GET",
        r"/webhooks/subscriptions/[^/]+/deliveries",
        {
            "counts": {MARK: 1},
            "deliveries": [
                {
                    "event_id": "e1234567",
                    "event_type": MARK,
                    "status": MARK,
                    "attempts": 1,
                    "next_attempt_at": AT,
                    "delivered_at": None,
                    "last_error": MARK,
                }
            ],
        },
    ),
    ("POST", r"/webhooks/subscriptions/[^/]+/pause", {"id": MARK, "url": MARK, "active": False}),
    (
        "GET",
        r"/inbound/sources",
        [{"source": MARK, "actor": MARK, "scopes": [MARK], "created_by": MARK, "created_at": AT}],
    ),
    ("POST", r"/inbound/sources", {"source": MARK, "url": MARK, "secret": MARK}),
    ("GET", r"/schedules", [SCHEDULE]),
    ("GET", r"/schedules/[^/]+", SCHEDULE),
    ("POST", r"/schedules/[^/]+/trigger", SCHEDULE),
    ("POST", r"/schedules/[^/]+/(pause|resume)", SCHEDULE),
    ("DELETE", r"/schedules/[^/]+", None),
    (
        "GET",
        r"/cycles/[^/]+",
        {
            "cycle_id": MARK,
            "closed": False,
            "plans": 2,
            "calendar": {
                "execution_months": 12,
                "execution_start": MARK,
                "monthly_close_day": 5,
                "gate_deadlines": [{"level": MARK, "at": AT}],
            },
            "progress": PROGRESS,
        },
    ),
    (
        "GET",
        r"/cycles/[^/]+/rollup",
        {
            "unit_id": MARK,
            "plans": [MARK],
            "forecast": {"EUR": MARK},
            "budget": {},
            "program_cost": {},
            "phases": {MARK: 1},
            "targets": [{"metric": MARK, "total": "1", "unit": MARK}],
        },
    ),
    ("POST", r"/cycles/[^/]+/commands/CloseCycle", {"events": [MARK]}),
    (
        "GET",
        r"/cycles/[^/]+/plans",
        {
            "cycle_id": MARK,
            "total": 1,
            "plans": [
                {
                    "unit_id": MARK,
                    "level": MARK,
                    "phase": MARK,
                    "iteration": 1,
                    "revision": 1,
                    "signed_off_revision": None,
                    "pending_approvers": [MARK],
                    "gate_due_at": AT,
                    "escalated": True,
                    "overdue_months": 1,
                    "actuals_overdue_months": [MARK],
                    "explanations_overdue": 0,
                    "overdue": True,
                }
            ],
        },
    ),
    (
        "GET",
        r"/cycles/[^/]+/plans/[^/]+",
        {
            "plan_id": MARK,
            "phase": MARK,
            "iteration": 1,
            "authors": [MARK],
            "current_gate": {"gate": {"name": MARK, "approvers": [MARK], "deadline": MARK}},
            "signed_off_revision": None,
        },
    ),
    ("GET", r"/cycles/[^/]+/plans/[^/]+/revisions", [REVISION]),
    (
        "GET",
        r"/cycles/[^/]+/plans/[^/]+/revisions/1",
        {**REVISION, "diff": {"changed_fields": [MARK]}, "content": {MARK: [1]}},
    ),
    (
        "GET",
        r"/cycles/[^/]+/plans/[^/]+/diff",
        {
            "from_revision": 1,
            "to_revision": 2,
            "diff": {
                "changed_fields": [MARK],
                "target_changes": [CHANGE],
                "forecast_changes": [],
                "budget_changes": [],
                "programs_added": [MARK],
                "programs_dropped": [],
            },
            "changes": [{"field": MARK, "before": MARK, "after": MARK, "added": [], "removed": []}],
        },
    ),
    (
        "POST",
        r"/cycles/[^/]+/plans/[^/]+/commands/[^/]+",
        {
            "command": MARK,
            "events": [MARK],
            "phase": MARK,
            "revision": 1,
            "stream_version": 2,
            "duplicate": False,
        },
    ),
    (
        "GET",
        r"/audit/cycles/[^/]+/plans/[^/]+/history",
        [
            {
                "version": 1,
                "recorded_at": AT,
                "type": "PlanSubmitted",
                "actor": MARK,
                "on_behalf_of": None,
                "source": MARK,
                "summary": MARK,
                "reason": MARK,
            }
        ],
    ),
    (
        "GET",
        r"/audit/cycles/[^/]+/plans/[^/]+/as-of",
        {
            "as_of": None,
            "version": 1,
            "recorded_at": AT,
            "plan": {
                "plan_id": MARK,
                "phase": "drafting",
                "iteration": 1,
                "revision": {"number": 1, "author": MARK, "at": AT, "reason": MARK, "content_hash": "abc"},
                "signed_off_revision": None,
                "current_gate": None,
            },
            "state": {
                "decisions": [],
                "csfs": [{"csf_id": MARK, "owner": MARK}],
                "actuals": [{"month": MARK}],
                "deviations": [
                    {"deviation_id": MARK, "measure": MARK, "month": MARK, "owner": MARK, "explanation": MARK}
                ],
                "reviews": [{"quarter": 1}],
                "score": None,
                "lessons": [],
            },
        },
    ),
    (
        "GET",
        r"/audit/cycles/[^/]+/plans/[^/]+/diff-at",
        {
            "from_revision": 1,
            "to_revision": 2,
            "from_moment": {"as_of": MARK},
            "to_moment": {"as_of": AT},
            "diff": {
                "changed_fields": [MARK],
                "target_changes": [CHANGE],
                "forecast_changes": [],
                "budget_changes": [],
                "programs_added": [MARK],
                "programs_dropped": [],
            },
        },
    ),
    (
        "GET",
        r"/inbox",
        {
            "approver": MARK,
            "total": 1,
            "items": [
                {
                    "cycle_id": MARK,
                    "unit_id": MARK,
                    "gate_id": MARK,
                    "revision": 1,
                    "due_at": AT,
                    "escalated": True,
                    "via": "delegate",
                    "seat": MARK,
                    "content_hash": MARK,
                }
            ],
        },
    ),
    (
        "GET",
        r"/cycles/[^/]+/plans/[^/]+/tracking",
        {
            "lines": [
                {
                    "measure": MARK,
                    "month": "2027-01",
                    "target": "1",
                    "actual": "2",
                    "status": MARK,
                    "source": MARK,
                },
                {
                    "measure": "revenue",
                    "month": "2027-01",
                    "target": None,
                    "actual": None,
                    "status": "on_track",
                    "source": None,
                },
            ]
        },
    ),
]


@pytest.fixture
async def bracket_api() -> AsyncIterator[str]:
    """An HTTP server answering like the API, with brackets in its data; its base URL."""

    async def answer(request: Request) -> JSONResponse:
        for method, pattern, body in ANSWERS:
            if request.method == method and re.fullmatch(pattern, request.url.path):
                return JSONResponse(body)
        return JSONResponse({"code": "not_found", "message": f"no answer for {request.url.path}"}, 404)

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST", "DELETE"])]),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


COMMANDS = [
    ("events", "--follow", "--count", "1", "--wait", "0"),
    ("events",),
    ("webhook", "list"),
    ("webhook", "deliveries", "s1"),
    ("webhook", "pause", "s1"),
    ("inbound", "list"),
    ("inbound", "register", "erp"),
    ("schedule", "list"),
    ("schedule", "show", "s1"),
    ("schedule", "trigger", "s1"),
    ("schedule", "pause", "s1", "--reason", MARK),
    ("schedule", "resume", "s1", "--reason", MARK),
    ("cycle", "show", "FY"),
    ("cycle", "progress", "FY"),
    ("cycle", "rollup", "FY"),
    ("cycle", "close", "FY", "--reason", "r"),
    ("plan", "list", "FY"),
    ("plan", "show", "FY", "DE"),
    ("plan", "revisions", "FY", "DE"),
    ("plan", "revision", "FY", "DE", "1"),
    ("plan", "diff", "FY", "DE", "--from", "1", "--to", "2"),
    ("plan", "command", "FY", "DE", "SubmitForApproval"),
    ("inbox",),
    ("tracking", "FY", "DE"),
    ("audit", "history", "FY", "DE"),
    ("audit", "as-of", "FY", "DE", "--version", "1"),
    ("audit", "diff", "FY", "DE", "--from-time", AT, "--to-time", AT),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:3]))
async def test_the_api_data_is_shown_as_sent(bracket_api: str, command: tuple[str, ...]) -> None:
    result = await cli(
        *command, env={"PLANLOOP_API_URL": bracket_api, "PLANLOOP_TOKEN": "t", "COLUMNS": "400"}
    )
    assert result.exit_code == 0, result.output
    assert MARK in result.stdout, result.stdout


async def test_the_cursor_and_the_names_in_command_lines_are_shown_as_sent(bracket_api: str) -> None:
    env = {"PLANLOOP_API_URL": bracket_api, "PLANLOOP_TOKEN": "t", "COLUMNS": "400"}
    followed = await cli("events", "--follow", "--count", "1", "--wait", "0", env=env)
    assert f"resume with: planloop events --after {MARK}" in followed.stderr
    assert f"{EVENT['stream_id']}  PlanSubmitted  {MARK}" in followed.stdout
    deleted = await cli("schedule", "delete", "a[b]c", env=env)
    assert deleted.exit_code == 0 and "deleted schedule a[b]c" in deleted.stdout, deleted.output
