"""schemathesis against the served OpenAPI document: no generated request gets a 5xx answer.

The store is seeded first (a cycle with its plans, one drafted and submitted, a webhook subscription, an
inbound source, a schedule, a signed checkpoint), and every generated request is sent twice: as generated,
and with its path parameters naming what exists. Random ids alone end in 404s; the real ones take the
generated queries and bodies into the handlers, the workflows and the read models behind them."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import hypothesis
import schemathesis
from hypothesis import HealthCheck
from schemathesis.checks import not_a_server_error

from planloop.api.auth import Role
from tests.api.conftest import MakeToken, cycle_definition, unique_cycle, wait_for_plans
from tests.api.test_plans import draft
from tests.workflows import scenario

EXAMPLES_PER_OPERATION = 8


async def seed(base_url: str, headers: dict[str, str], author: dict[str, str]) -> dict[str, str]:
    """What the fuzzer's requests may name: path parameter -> an id that exists."""
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as http:

        async def created(path: str, body: dict[str, Any], by: dict[str, str] = headers) -> dict[str, Any]:
            answer = await http.post(path, json=body, headers=by)
            assert answer.status_code in (200, 201), f"seeding {path}: {answer.text}"
            return dict(answer.json())

        cycle_id = unique_cycle()
        await created("/cycles", cycle_definition(cycle_id))
        await wait_for_plans(http, headers, cycle_id, scenario.UNITS)
        await created(f"/cycles/{cycle_id}/plans/DE/commands/ReviseStrategy", draft(cycle_id, "DE"), author)
        await created(f"/cycles/{cycle_id}/plans/DE/commands/SubmitForApproval", {}, author)
        subscription = await created("/webhooks/subscriptions", {"url": "http://127.0.0.1:9/hook"})
        await created("/inbound/sources", {"source": "erp"})
        template = {
            "hierarchy": scenario.hierarchy().model_dump(mode="json"),
            "cycle_id_pattern": "Z-FY{year}",
            "gate_deadline_days": {"region": 30, "global": 45},
        }
        schedule = await created(
            "/schedules", {"schedule_id": "fuzz-open", "kind": "open_cycle", "template": template}
        )
        checkpoint = await created("/audit/checkpoints", {})
    return {
        "cycle_id": cycle_id,
        "unit_id": "DE",
        "number": "1",
        "subscription_id": str(subscription["id"]),
        "source": "erp",
        "schedule_id": str(schedule["schedule_id"]),
        "sequence": str(checkpoint["checkpoint"]["checkpoint"]["sequence"]),
    }


def ending_last(operation: Any) -> bool:
    """Deletes and the commands that end a cycle or a plan go last, so the seeded ids live for the rest."""
    return operation.method.upper() == "DELETE" or operation.path.endswith(
        ("/CloseCycle", "/CancelPlan", "/RejectPlan")
    )


def fuzz(base_url: str, headers: dict[str, str], known: dict[str, str]) -> list[str]:
    """Every operation, a few generated requests each; the failures found (blocking: run in a thread)."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: list[str] = []
    for operation in sorted((r.ok() for r in schema.get_all_operations()), key=ending_last):

        @hypothesis.settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        )
        @hypothesis.given(case=operation.as_strategy())
        def check(case: Any) -> None:
            if case.operation.path == "/events":
                # A long poll of an empty feed would hold each generated request up to 30 s.
                case.query = {**(case.query or {}), "wait": 0}
            case.call_and_validate(base_url=base_url, headers=headers, checks=[not_a_server_error])
            if case.path_parameters:
                case.path_parameters = {
                    name: known.get(name, value) for name, value in case.path_parameters.items()
                }
                case.call_and_validate(base_url=base_url, headers=headers, checks=[not_a_server_error])

        try:
            check()
        except Exception as exc:  # collected and reported together
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    return failures


async def test_no_generated_request_gets_a_server_error(live_api: str, make_token: MakeToken) -> None:
    headers = await make_token("fuzzer", Role.ADMIN)
    author = await make_token("de-mgr", Role.PLANNER, scopes=("DE",))
    known = await seed(live_api, headers, author)
    failures = await asyncio.to_thread(fuzz, live_api, headers, known)
    assert not failures, "\n\n".join(failures)
