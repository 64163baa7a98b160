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

from eventstore import EventStore
from planloop.api.auth import Role
from planloop.audit.integrity_cli import integrity_app
from tests.api.conftest import MakeToken, cycle_definition, unique_cycle, wait_for_plans
from tests.api.test_plans import draft
from tests.audit.test_checkpoints import append
from tests.audit.test_tamper import as_dba, rewrite_consistently
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
    keyed = {**admin, "Idempotency-Key": "publish-1"}
    first = await http.post("/audit/checkpoints", headers=keyed)
    assert first.status_code == 201, first.text
    assert first.json()["checkpoint"]["checkpoint"]["streams"] == 7
    replayed = await http.post("/audit/checkpoints", headers=keyed)
    assert (replayed.status_code, replayed.json()) == (201, first.json())  # the first answer, as it was
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
    async with httpx.AsyncClient(base_url=live_api) as http:
        key_id = (await http.get("/audit/public-key", headers=headers)).json()["key_id"]
        # The plans move on after the kept checkpoint, and the next checkpoint covers that.
        author = await make_token("de-mgr", Role.PLANNER)
        revised = await http.post(
            f"/cycles/{cycle}/plans/DE/commands/ReviseStrategy", json=draft(cycle, "DE"), headers=author
        )
        assert revised.status_code == 200, revised.text
    assert (await cli("checkpoint")).exit_code == 0
    pem = tmp_path / "signer.pem"
    shown_key = await cli("public-key", "-o", str(pem))
    assert shown_key.exit_code == 0 and f"signing key: {key_id}" in shown_key.output, shown_key.output
    assert pem.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    proved = await cli("consistency", str(kept), "--trusted-key", str(pem))
    assert proved.exit_code == 0, proved.output
    proved = await cli("consistency", str(kept), "--trusted-key", key_id)
    assert proved.exit_code == 0 and proved.output.startswith("PROVED: checkpoint 2 extends"), proved.output
    assert "1 grew" in proved.output and "each re-hashed here" in proved.output
    unpinned_proof = await cli("consistency", str(kept), "--json")
    assert unpinned_proof.exit_code == 3 and json.loads(unpinned_proof.output)["verdict"] == "self-consistent"
    checked = await cli("consistency", str(kept), "--by-server")
    assert checked.exit_code == 0 and "the store extends checkpoint 1" in checked.output, checked.output
    bundle = tmp_path / "de.jsonl"
    exported = await cli("export", cycle, "DE", "-o", str(bundle))
    assert exported.exit_code == 0 and bundle.read_bytes().startswith(b'{"record":"header"')
    unpinned = await asyncio.to_thread(runner.invoke, integrity_app, ["verify", str(bundle)])
    assert unpinned.exit_code == 3 and "checkpoint 2" in unpinned.output, unpinned.output
    assert "SELF-CONSISTENT, SIGNER NOT CHECKED" in unpinned.output
    verified = await asyncio.to_thread(
        runner.invoke, integrity_app, ["verify", str(bundle), "--trusted-key", key_id]
    )
    assert verified.exit_code == 0 and verified.output.startswith("VERIFIED"), verified.output
    unknown = await cli("verify-plan", cycle, "XX")
    assert unknown.exit_code == 1 and "plan_not_found" in unknown.output

    # The key is rotated on the API's host; the running API signs its next checkpoint with the new key,
    # and the kept checkpoint is proved across the rotation with both keys trusted.
    rotated = await asyncio.to_thread(runner.invoke, integrity_app, ["rotate-key", "--json"])
    assert rotated.exit_code == 0, rotated.output
    rotation = json.loads(rotated.output)
    assert rotation["retired"] == key_id != rotation["signing"]
    async with httpx.AsyncClient(base_url=live_api) as http:
        revised = await http.post(
            f"/cycles/{cycle}/plans/FR/commands/ReviseStrategy",
            json=draft(cycle, "FR"),
            headers=await make_token("fr-mgr", Role.PLANNER),
        )
        assert revised.status_code == 200, revised.text
    published = await cli("checkpoint", "--json")
    assert published.exit_code == 0, published.output
    assert json.loads(published.output)["checkpoint"]["checkpoint"]["key_id"] == rotation["signing"]
    shown_key = await cli("public-key")
    assert f"signing key: {rotation['signing']}" in shown_key.output, shown_key.output
    both = ("--trusted-key", key_id, "--trusted-key", rotation["signing"])
    across = await cli("consistency", str(kept), *both)
    assert across.exit_code == 0 and across.output.startswith("PROVED: checkpoint 3 extends"), across.output
    only_old = await cli("consistency", str(kept), "--trusted-key", key_id)
    assert only_old.exit_code == 2, only_old.output
    elsewhere = {"PLANLOOP_AUDIT_KEY_FILE": str(tmp_path / "elsewhere" / "audit-key.pem")}
    no_key = await asyncio.to_thread(runner.invoke, integrity_app, ["rotate-key"], env=elsewhere)
    assert no_key.exit_code == 1 and "no checkpoint signing key at" in no_key.output, no_key.output


async def test_reading_the_public_key_does_not_create_the_signing_key(
    http: httpx.AsyncClient, admin: Any, auditor: Any, store: EventStore, tmp_path: Path
) -> None:
    key_file = tmp_path / "audit-key.pem"
    before = await http.get("/audit/public-key", headers=auditor)
    assert before.status_code == 404 and "first checkpoint is published" in before.json()["message"]
    assert not key_file.exists(), "any role's read made the signing key"
    await append(store, "plan:FY2027:DE", 1)
    assert (await http.post("/audit/checkpoints", headers=admin)).status_code == 201
    after = await http.get("/audit/public-key", headers=auditor)
    assert after.status_code == 200 and key_file.exists()


async def test_a_consistency_document_without_its_digest_is_checked(
    http: httpx.AsyncClient, admin: Any, auditor: Any, store: EventStore
) -> None:
    """The digest is optional in the request, but was passed on as None and refused as a change."""
    await append(store, "plan:FY2027:DE", 1)
    kept = (await http.post("/audit/checkpoints", headers=admin)).json()["checkpoint"]
    without = {k: v for k, v in kept.items() if k != "digest"}
    answer = await http.post("/audit/checkpoints/consistency", json=without, headers=auditor)
    assert answer.status_code == 200 and answer.json()["ok"], answer.text
    wrong = await http.post(
        "/audit/checkpoints/consistency", json={**kept, "digest": "0" * 64}, headers=auditor
    )
    assert wrong.status_code == 422 and "the checkpoint was changed" in wrong.json()["message"]


async def test_a_tampered_checkpoint_row_is_a_409_naming_it_not_a_500(
    http: httpx.AsyncClient, admin: Any, auditor: Any, store: EventStore, database_url: str
) -> None:
    await append(store, "plan:FY2027:DE", 1)
    kept = (await http.post("/audit/checkpoints", headers=admin)).json()["checkpoint"]
    await append(store, "plan:FY2027:DE", 2)
    assert (await http.post("/audit/checkpoints", headers=admin)).status_code == 201
    conn = await asyncpg.connect(database_url)
    try:
        await as_dba(conn, ("UPDATE audit_checkpoints SET document = '{\"x\": 1}' WHERE sequence = 2", ()))
    finally:
        await conn.close()
    for path in ("/audit/checkpoints", "/audit/checkpoints/latest", "/audit/checkpoints/2"):
        answer = await http.get(path, headers=auditor)
        assert answer.status_code == 409, (path, answer.text)
        assert answer.json()["code"] == "store_not_consistent"
        assert "the stored checkpoint 2 cannot be read" in answer.json()["message"]
    refused = await http.post("/audit/checkpoints", headers=admin)
    assert (
        refused.status_code == 409 and "the stored checkpoint 2 cannot be read" in refused.json()["message"]
    )
    report = await http.post("/audit/checkpoints/consistency", json=kept, headers=auditor)
    assert report.status_code == 200 and not report.json()["ok"]
    assert any("the stored checkpoint 2 cannot be read" in p for p in report.json()["problems"])
