"""The integrity routes and CLI commands through the real HTTP stack (a worker, a Temporal dev server and
PostgreSQL behind the app): verify a plan and the store, publish, list and keep checkpoints, check the store
against a kept one before and after a database administrator's rewrite, export a bundle."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from typer.testing import CliRunner

from planloop.api.auth import Role
from planloop.audit.integrity_cli import integrity_app
from tests.api.conftest import MakeToken, cycle_definition, unique_cycle, wait_for_plans
from tests.audit.test_tamper import rewrite_consistently
from tests.workflows import scenario
from workflows import plan_id

PLAN = "/audit/cycles/{cycle}/plans/{unit}"


@pytest.fixture(autouse=True)
def signing_key_of_the_test(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PLANLOOP_AUDIT_KEY_FILE", str(tmp_path / "audit-key.pem"))


@pytest.fixture
async def auditor(make_token: MakeToken) -> Any:
    return await make_token("auditor-1", Role.AUDITOR)


async def test_verify_publish_keep_and_check_consistency_through_the_api(
    http: httpx.AsyncClient, cycle: str, admin: Any, auditor: Any, make_token: MakeToken, database_url: str
) -> None:
    de = PLAN.format(cycle=cycle, unit="DE")
    verified = (await http.get(f"{de}/verify", headers=auditor)).json()
    assert (
        verified["ok"] and verified["events_checked"] >= 1 and verified["stream_id"] == plan_id(cycle, "DE")
    )
    store = (await http.get("/audit/verify", headers=auditor)).json()
    assert store["ok"] and store["streams_checked"] == 7  # the cycle and its six plans

    assert (await http.get("/audit/checkpoints/latest", headers=auditor)).status_code == 404
    first = await http.post("/audit/checkpoints", headers=admin)
    assert first.status_code == 201, first.text
    assert first.json()["checkpoint"]["checkpoint"]["streams"] == 7
    again = await http.post("/audit/checkpoints", headers=admin)
    assert again.status_code == 200 and not again.json()["published"]
    refused = await http.post("/audit/checkpoints", headers=auditor)
    assert refused.status_code == 403 and "admin" in refused.json()["message"]
    kept = (await http.get("/audit/checkpoints/latest", headers=auditor)).json()
    assert kept == first.json()["checkpoint"]
    assert (await http.get("/audit/checkpoints/1", headers=auditor)).json() == kept
    assert [
        c["checkpoint"]["sequence"] for c in (await http.get("/audit/checkpoints", headers=auditor)).json()
    ] == [1]
    key = (await http.get("/audit/public-key", headers=auditor)).json()
    assert key["key_id"] == kept["checkpoint"]["key_id"] and "BEGIN PUBLIC KEY" in key["pem"]

    consistent = (await http.post("/audit/checkpoints/consistency", json=kept, headers=auditor)).json()
    assert consistent["ok"], consistent

    # A database administrator rewrites DE's opening consistently: its actor, every hash after it, the head.
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT version, event_id FROM events WHERE stream_id = $1", plan_id(cycle, "DE")
        )
        ids = {r["version"]: r["event_id"] for r in rows}
        await rewrite_consistently(conn, 1, {"actor": "mallory"}, stream_id=plan_id(cycle, "DE"))
    finally:
        await conn.close()
    assert (await http.get(f"{de}/verify", headers=auditor)).json()["ok"], "the chain alone cannot tell"
    caught = (await http.post("/audit/checkpoints/consistency", json=kept, headers=auditor)).json()
    assert not caught["ok"] and caught["breaks"] == []
    [rewrite] = caught["rewrites"]
    assert (rewrite["stream_id"], rewrite["version"], rewrite["event_id"]) == (
        plan_id(cycle, "DE"),
        1,
        str(ids[1]),
    )
    refused = await http.post("/audit/checkpoints", headers=admin)
    assert refused.status_code == 409 and refused.json()["code"] == "store_not_consistent"


async def test_unknown_plans_foreign_scopes_and_malformed_checkpoints_are_clear_4xx(
    http: httpx.AsyncClient, cycle: str, auditor: Any, make_token: MakeToken
) -> None:
    missing = await http.get(f"{PLAN.format(cycle=cycle, unit='XX')}/verify", headers=auditor)
    assert missing.status_code == 404 and missing.json()["code"] == "plan_not_found"
    fr_planner = await make_token("fr-mgr", Role.PLANNER, scopes=("FR",))
    foreign = await http.get(f"{PLAN.format(cycle=cycle, unit='DE')}/bundle", headers=fr_planner)
    assert foreign.status_code == 403 and "outside" in foreign.json()["message"]
    own = await http.get(f"{PLAN.format(cycle=cycle, unit='FR')}/bundle", headers=fr_planner)
    assert own.status_code == 200 and own.text.startswith('{"record":"header"')
    scoped_store = await http.get(
        "/audit/verify", headers=await make_token("a2", Role.AUDITOR, scopes=("FR",))
    )
    assert scoped_store.status_code == 403 and "whole company" in scoped_store.json()["message"]
    garbage = await http.post(
        "/audit/checkpoints/consistency",
        json={"checkpoint": {"format": "x"}, "signature": ""},
        headers=auditor,
    )
    assert garbage.status_code == 422 and garbage.json()["code"] == "invalid_checkpoint"
    assert "planloop-checkpoint" in garbage.json()["message"]
    none = await http.get("/audit/checkpoints/42", headers=auditor)
    assert none.status_code == 404 and none.json()["code"] == "not_found"


async def test_the_cli_verifies_keeps_a_checkpoint_checks_it_and_exports(
    live_api: str, make_token: MakeToken, tmp_path: Path
) -> None:
    headers = await make_token("office", Role.ADMIN)
    admin_token = headers["Authorization"].removeprefix("Bearer ")
    cycle = unique_cycle()
    async with httpx.AsyncClient(base_url=live_api) as http:
        opened = await http.post("/cycles", json=cycle_definition(cycle), headers=headers)
        assert opened.status_code == 201, opened.text
        await wait_for_plans(http, headers, cycle, scenario.UNITS)
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(integrity_app, [*args, "--api-url", live_api, "--token", admin_token])

    async def cli(*args: str) -> Any:
        return await asyncio.to_thread(run, *args)

    plan = await cli("verify-plan", cycle, "DE")
    assert plan.exit_code == 0 and "the chain holds" in plan.output, plan.output
    whole = await cli("verify-store", "--json")
    assert whole.exit_code == 0 and json.loads(whole.output)["streams_checked"] == 7
    kept = tmp_path / "kept.json"
    published = await cli("checkpoint", "--save", str(kept))
    assert published.exit_code == 0 and "published checkpoint 1" in published.output, published.output
    listed = await cli("checkpoints")
    assert listed.exit_code == 0 and "Signed checkpoints" in listed.output
    checked = await cli("consistency", str(kept))
    assert checked.exit_code == 0 and "the store extends checkpoint 1" in checked.output, checked.output
    bundle = tmp_path / "de.jsonl"
    exported = await cli("export", cycle, "DE", "-o", str(bundle))
    assert exported.exit_code == 0 and bundle.read_bytes().startswith(b'{"record":"header"')
    verified = await asyncio.to_thread(runner.invoke, integrity_app, ["verify", str(bundle)])
    assert verified.exit_code == 0 and "checkpoint 1" in verified.output, verified.output
    unknown = await cli("verify-plan", cycle, "XX")
    assert unknown.exit_code == 1 and "plan_not_found" in unknown.output
