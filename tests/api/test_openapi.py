"""schemathesis against the served OpenAPI document: no generated request gets a 5xx answer."""

from __future__ import annotations

import asyncio
from typing import Any

import hypothesis
import schemathesis
from hypothesis import HealthCheck
from schemathesis.checks import not_a_server_error

from planloop.api.auth import Role
from tests.api.conftest import MakeToken

EXAMPLES_PER_OPERATION = 8


def fuzz(base_url: str, headers: dict[str, str]) -> list[str]:
    """Every operation, a few generated requests each; the failures found (blocking: run in a thread)."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

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

        try:
            check()
        except Exception as exc:  # collected and reported together
            failures.append(f"{operation.label}: {str(exc)[:500]}")
    return failures


async def test_no_generated_request_gets_a_server_error(live_api: str, make_token: MakeToken) -> None:
    headers = await make_token("fuzzer", Role.ADMIN)
    failures = await asyncio.to_thread(fuzz, live_api, headers)
    assert not failures, "\n\n".join(failures)
