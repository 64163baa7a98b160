"""The CLI over the API: `planloop token create` on a fresh database, then `cycle open`, `plan command` and
`plan show` against a served API."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import yaml
from typer.testing import CliRunner

from eventstore import EventStore
from planloop.api.auth import hash_token
from planloop.cli import app
from tests.api.conftest import cycle_definition, unique_cycle, wait_for_plans
from tests.workflows import scenario


def planloop(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    # Wide enough that rich does not fold the revision table's cells.
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "220", **(env or {})})
    return result.exit_code, result.output


def last_json(output: str) -> dict:
    # The worker of this process logs to the same stdout the runner captures: the answer is the last line.
    return json.loads(output.strip().splitlines()[-1])


async def test_token_create_makes_the_first_admin_token(database_url: str, store: EventStore) -> None:
    env = {"PLANLOOP_DATABASE_URL": database_url}
    code, output = await asyncio.to_thread(
        planloop, "token", "create", "--principal", "ops", "--role", "admin", "--json", env=env
    )
    assert code == 0, output
    made = last_json(output)
    assert made["roles"] == ["admin"] and made["token"].startswith("pl_")
    stored = await store.pool.fetchrow("SELECT * FROM api_tokens")
    assert stored["token_hash"] == hash_token(made["token"]) and stored["principal"] == "ops"

    code, output = await asyncio.to_thread(
        planloop, "token", "create", "--principal", "x", "--role", "boss", env=env
    )
    assert code == 1 and "unknown role 'boss'" in output

    # Listed without the token or its hash; revoked ones only when asked for.
    code, output = await asyncio.to_thread(planloop, "token", "list", "--json", env=env)
    [listed] = last_json(output)
    assert (listed["principal"], listed["roles"], listed["revoked_at"]) == ("ops", ["admin"], None)
    assert made["token"] not in output and stored["token_hash"] not in output
    code, output = await asyncio.to_thread(
        planloop, "token", "revoke", "--principal", "ops", "--json", env=env
    )
    assert code == 0 and last_json(output) == {"principal": "ops", "revoked": 1}
    code, output = await asyncio.to_thread(planloop, "token", "list", "--json", env=env)
    assert last_json(output) == []
    code, output = await asyncio.to_thread(planloop, "token", "list", "--revoked", env=env)
    assert code == 0 and "ops" in output and "whole company" in output, output


async def test_cycle_open_plan_command_and_show_through_the_api(
    live_api: str, store: EventStore, database_url: str, tmp_path: Path
) -> None:
    env = {"PLANLOOP_DATABASE_URL": database_url, "PLANLOOP_API_URL": live_api}
    _, output = await asyncio.to_thread(
        planloop, "token", "create", "--principal", "office", "--role", "admin", "--json", env=env
    )
    admin = last_json(output)["token"]
    _, output = await asyncio.to_thread(
        planloop,
        "token",
        "create",
        "--principal",
        "de-mgr",
        "--role",
        "planner",
        "--scope",
        "DE",
        "--json",
        env=env,
    )
    author = last_json(output)["token"]

    cycle_id = unique_cycle()
    file = tmp_path / "cycle.yaml"
    file.write_text(yaml.safe_dump(cycle_definition(cycle_id)))
    code, output = await asyncio.to_thread(planloop, "cycle", "open", str(file), "--token", admin, env=env)
    assert code == 0 and f"opened cycle {cycle_id}" in output, output

    import httpx

    async with httpx.AsyncClient(base_url=live_api) as http:
        await wait_for_plans(http, {"Authorization": f"Bearer {admin}"}, cycle_id, ("DE",))

    months = scenario.calendar(cycle_id, datetime.now(UTC)).months()
    fields = {"content": scenario.content("DE", months).model_dump(mode="json"), "reason": "first draft"}
    code, output = await asyncio.to_thread(
        planloop,
        "plan",
        "command",
        cycle_id,
        "DE",
        "ReviseStrategy",
        "--data",
        json.dumps(fields),
        "--token",
        author,
        "--json",
        env=env,
    )
    assert code == 0, output
    assert last_json(output)["events"] == ["RevisionRecorded"]

    code, output = await asyncio.to_thread(
        planloop,
        "plan",
        "command",
        cycle_id,
        "DE",
        "ApprovePlan",
        "--data",
        '{"content_hash": "x"}',
        "--token",
        author,
        env=env,
    )
    assert code == 1 and "needs the role" in output

    code, output = await asyncio.to_thread(
        planloop, "plan", "show", cycle_id, "DE", "--token", author, env=env
    )
    assert code == 0 and "drafting" in output and "first draft" in output, output
