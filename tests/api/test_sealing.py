"""Shared secrets sealed at rest: the webhook subscriptions' and the inbound sources' secrets (and the stored
answers that showed them once) are never in the database in the clear; secrets stored before sealing keep
working and are sealed when the API starts."""

from __future__ import annotations

import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from eventstore import EventStore
from planloop.integration import WebhookSender
from planloop.integration.sealing import PREFIX, Sealer, SealingKeyError, seal_stored_secrets
from tests.api.test_inbound import signed

SECRET = "a-shared-secret-of-the-erp-0123"


def test_a_sealed_secret_opens_under_its_key_only(tmp_path: Path) -> None:
    sealer = Sealer(tmp_path / "keys" / "secrets-key")
    sealed = sealer.seal(SECRET)
    assert sealed.startswith(PREFIX) and SECRET not in sealed
    assert sealer.seal(SECRET) != sealed  # a fresh IV each time: equal secrets do not show as equal
    assert sealer.open(sealed) == SECRET
    assert (os.stat(sealer.key_file).st_mode & 0o777) == 0o600
    assert Sealer(sealer.key_file).open(sealed) == SECRET  # the key is kept, not made anew
    assert sealer.open("stored-before-sealing") == "stored-before-sealing"
    with pytest.raises(SealingKeyError, match=r"sealed under another key .*PLANLOOP_SECRETS_KEY_FILE"):
        Sealer(tmp_path / "other-key").open(sealed)


def test_a_key_file_open_to_others_or_damaged_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "secrets-key"
    Sealer(key_file).seal(SECRET)
    key_file.chmod(0o644)
    with pytest.raises(SealingKeyError, match=r"readable by others .*chmod 600"):
        Sealer(key_file).seal(SECRET)
    key_file.chmod(0o600)
    key_file.write_text("not a key\n")
    with pytest.raises(SealingKeyError, match="is not a key for sealing secrets"):
        Sealer(key_file).seal(SECRET)


def test_processes_making_the_key_at_once_share_one(tmp_path: Path) -> None:
    key_file = tmp_path / "secrets-key"
    sealed: list[str] = []

    def make_and_seal() -> None:
        sealed.append(Sealer(key_file).seal(SECRET))

    threads = [threading.Thread(target=make_and_seal) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader = Sealer(key_file)
    assert [reader.open(s) for s in sealed] == [SECRET] * 8


async def test_secrets_are_sealed_in_the_database_and_still_sign_and_verify(
    app: FastAPI, http: httpx.AsyncClient, admin: Any, store: EventStore
) -> None:
    created = await http.post(
        "/webhooks/subscriptions",
        json={"url": "http://127.0.0.1:9/hook", "secret": SECRET},
        headers={**admin, "Idempotency-Key": "subscribe-1"},
    )
    assert created.status_code == 201 and created.json()["secret"] == SECRET
    again = await http.post(
        "/webhooks/subscriptions",
        json={"url": "http://127.0.0.1:9/hook", "secret": SECRET},
        headers={**admin, "Idempotency-Key": "subscribe-1"},
    )
    assert again.json()["secret"] == SECRET  # the replay opens the sealed stored answer
    registered = await http.post("/inbound/sources", json={"source": "erp", "secret": SECRET}, headers=admin)
    assert registered.status_code == 201
    columns = await store.pool.fetch(
        "SELECT secret FROM webhook_subscriptions UNION ALL SELECT secret FROM inbound_sources"
    )
    answers = await store.pool.fetch("SELECT response::text AS response FROM idempotency_keys")
    assert len(columns) == 2 and all(r["secret"].startswith(PREFIX) for r in columns)
    assert all(SECRET not in r["response"] for r in answers)
    assert app.state.sealer.open(columns[0]["secret"]) == SECRET
    # The inbound source checks signatures made with the secret (a bad one is still refused).
    body = json.dumps({"cycle_id": "FY-NONE", "rows": []}).encode()
    good = await http.post("/inbound/erp/actuals", content=body, headers=signed(SECRET, body))
    assert good.status_code != 401, good.text
    bad = await http.post("/inbound/erp/actuals", content=body, headers=signed("x" * 20, body))
    assert bad.status_code == 401


async def test_secrets_stored_in_plain_text_keep_working_and_are_sealed_once(
    http: httpx.AsyncClient, store: EventStore, sealer: Sealer, app: FastAPI
) -> None:
    # As an earlier planloop stored them: in the clear, with a stored answer showing the secret.
    await store.pool.execute(
        "INSERT INTO webhook_subscriptions (id, url, secret) VALUES ($1, 'http://127.0.0.1:9/h', $2)",
        uuid.uuid4(),
        SECRET,
    )
    await store.pool.execute(
        "INSERT INTO inbound_sources (source, secret, actor, scopes, created_by) "
        "VALUES ('legacy', $1, 'inbound:legacy', '{}', 'admin')",
        SECRET,
    )
    await store.pool.execute(
        "INSERT INTO idempotency_keys (principal, key, method, path, request_hash, status_code, response) "
        "VALUES ('admin', 'old', 'POST', '/inbound/sources', 'h', 201, $1::jsonb)",
        json.dumps({"source": "legacy", "secret": SECRET}),
    )
    body = json.dumps({"cycle_id": "FY-NONE", "rows": []}).encode()
    before = await http.post("/inbound/legacy/actuals", content=body, headers=signed(SECRET, body))
    assert before.status_code != 401, before.text
    sealer = app.state.sealer
    assert await seal_stored_secrets(store.pool, sealer) == 3
    assert await seal_stored_secrets(store.pool, sealer) == 0
    rows = await store.pool.fetch(
        "SELECT secret FROM webhook_subscriptions UNION ALL SELECT secret FROM inbound_sources "
        "UNION ALL SELECT response ->> 'secret' FROM idempotency_keys WHERE key = 'old'"
    )
    assert [sealer.open(r["secret"]) for r in rows] == [SECRET] * 3
    assert all(r["secret"].startswith(PREFIX) for r in rows)
    after = await http.post("/inbound/legacy/actuals", content=body, headers=signed(SECRET, body))
    assert after.status_code == before.status_code, after.text


async def test_an_unusable_key_is_a_clear_503_that_changes_nothing_and_deliveries_wait(
    app: FastAPI, http: httpx.AsyncClient, admin: Any, store: EventStore, tmp_path: Path
) -> None:
    registered = await http.post("/inbound/sources", json={"source": "erp", "secret": SECRET}, headers=admin)
    assert registered.status_code == 201
    subscribed = await http.post(
        "/webhooks/subscriptions", json={"url": "http://127.0.0.1:9/h"}, headers=admin
    )
    assert subscribed.status_code == 201
    # The key file is swapped for another key (a host set up without the shared file).
    app.state.sealer.key_file.unlink()
    app.state.sealer._fernet = None
    before = await store.pool.fetchval("SELECT secret FROM inbound_sources WHERE source = 'erp'")
    body = json.dumps({"cycle_id": "FY-NONE", "rows": []}).encode()
    refused = await http.post("/inbound/erp/actuals", content=body, headers=signed(SECRET, body))
    assert (refused.status_code, refused.json()["code"]) == (503, "secrets_key_unusable"), refused.text
    assert "sealed under another key" in refused.json()["message"]
    again = await http.post("/inbound/sources", json={"source": "erp"}, headers=admin)
    assert again.status_code == 201  # a new secret, sealed under the new key: registering again recovers
    assert await store.pool.fetchval("SELECT secret FROM inbound_sources WHERE source = 'erp'") != before

    # A delivery whose secret cannot be opened is an attempt that failed, retried later; never stuck.
    subscription_id = uuid.UUID(subscribed.json()["id"])
    delivery_id = uuid.uuid4()
    await store.pool.execute(
        "INSERT INTO webhook_deliveries (id, subscription_id, event_id, event_type, body) "
        "VALUES ($1, $2, $3, 'PlanSubmitted', '{}')",
        delivery_id,
        subscription_id,
        uuid.uuid4(),
    )
    async with httpx.AsyncClient() as client:
        sender = WebhookSender(store.pool, client, Sealer(tmp_path / "yet-another-key"))
        sent = await sender.send_due()
    row = await store.pool.fetchrow(
        "SELECT status, attempts, last_error FROM webhook_deliveries WHERE id = $1", delivery_id
    )
    assert sent >= 1 and (row["status"], row["attempts"]) == ("pending", 1)
    assert row["last_error"].startswith("cannot sign: a stored secret was sealed under another key")
