"""Shared secrets sealed at rest: the webhook subscriptions' and the inbound sources' secrets (and the stored
answers that showed them once) are never in the database in the clear, nor guessable from a stored request
fingerprint; a sealed value opens only for its own row; secrets an earlier planloop stored in plain text are
sealed once, at the first start with sealing, and plain text planted after that is refused; an API host
whose key is not the database's does not start."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from eventstore import EventStore
from planloop.api.auth import Role
from planloop.api.idempotency import fingerprint, without_secret
from planloop.api.outbound import SubscriptionRequest
from planloop.integration import WebhookSender
from planloop.integration.sealing import (
    MARKER_SUFFIX,
    PREFIX,
    Sealer,
    SealingKeyError,
    answer_context,
    source_context,
    subscription_context,
)
from tests.api.test_inbound import signed

SECRET = "a-shared-secret-of-the-erp-0123"
NO_CYCLE = json.dumps({"cycle_id": "FY-NONE", "rows": []}).encode()


def test_a_sealed_secret_opens_under_its_key_and_for_its_row_only(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "secrets-key"
    Sealer.make_key(key_file)
    sealer = Sealer(key_file)
    sealed = sealer.seal(SECRET, source_context("erp"))
    assert sealed.startswith(PREFIX) and SECRET not in sealed
    assert sealer.seal(SECRET, source_context("erp")) != sealed  # a fresh nonce: equal secrets look unequal
    assert sealer.open(sealed, source_context("erp")) == SECRET
    assert (key_file.stat().st_mode & 0o777) == 0o600
    with pytest.raises(SealingKeyError, match="sealed under another key, or for another row"):
        sealer.open(sealed, source_context("crm"))  # moved to another row
    with pytest.raises(SealingKeyError, match="sealed under another key, or for another row"):
        sealer.open(sealed, answer_context("mallory", "k"))  # planted as a stored answer to replay
    with pytest.raises(SealingKeyError, match="stored in plain text, which is never used"):
        sealer.open(SECRET, source_context("erp"))
    Sealer.make_key(tmp_path / "other-key")
    with pytest.raises(SealingKeyError, match="sealed under another key"):
        Sealer(tmp_path / "other-key").open(sealed, source_context("erp"))
    # The digest for request fingerprints is keyed: equal for equal secrets, another under another key.
    assert sealer.digest(SECRET) == sealer.digest(SECRET) != Sealer(tmp_path / "other-key").digest(SECRET)
    assert SECRET not in sealer.digest(SECRET)


def test_a_missing_open_or_damaged_key_file_is_refused_and_never_made_on_the_way(tmp_path: Path) -> None:
    key_file = tmp_path / "secrets-key"
    with pytest.raises(SealingKeyError, match="does not exist; restore it"):
        Sealer(key_file).seal(SECRET, source_context("erp"))
    assert not key_file.exists()
    Sealer.make_key(key_file)
    key_file.chmod(0o644)
    with pytest.raises(SealingKeyError, match=r"readable by others .*chmod 600"):
        Sealer(key_file).seal(SECRET, source_context("erp"))
    key_file.chmod(0o600)
    key_file.write_text("not a key\n")
    with pytest.raises(SealingKeyError, match="is not a key for sealing secrets"):
        Sealer(key_file).seal(SECRET, source_context("erp"))


def test_a_replaced_key_file_is_read_again(tmp_path: Path) -> None:
    key_file = tmp_path / "secrets-key"
    Sealer.make_key(key_file)
    sealer = Sealer(key_file)
    first = sealer.check_value()
    key_file.rename(tmp_path / "kept")
    Sealer.make_key(key_file)
    assert sealer.check_value() != first  # a restored (here: another) key takes effect without a restart


def test_processes_making_the_key_at_once_share_one(tmp_path: Path) -> None:
    key_file = tmp_path / "secrets-key"
    start, sealed = threading.Barrier(8), []

    def make_and_seal() -> None:
        start.wait()
        Sealer.make_key(key_file)
        sealed.append(Sealer(key_file).seal(SECRET, source_context("erp")))

    threads = [threading.Thread(target=make_and_seal) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader = Sealer(key_file)
    assert [reader.open(s, source_context("erp")) for s in sealed] == [SECRET] * 8


async def test_secrets_are_sealed_in_the_database_and_still_sign_and_verify(
    app: FastAPI, http: httpx.AsyncClient, admin: Any, store: EventStore
) -> None:
    subscribe = {**admin, "Idempotency-Key": "subscribe-1"}
    body = {"url": "http://127.0.0.1:9/hook", "secret": SECRET}
    created = await http.post("/webhooks/subscriptions", json=body, headers=subscribe)
    assert created.status_code == 201 and created.json()["secret"] == SECRET
    again = await http.post("/webhooks/subscriptions", json=body, headers=subscribe)
    assert again.json()["secret"] == SECRET  # the replay opens the sealed stored answer
    registered = await http.post(
        "/inbound/sources",
        json={"source": "erp", "secret": SECRET},
        headers={**admin, "Idempotency-Key": "register-1"},
    )
    assert registered.status_code == 201
    columns = await store.pool.fetch(
        "SELECT secret FROM webhook_subscriptions UNION ALL SELECT secret FROM inbound_sources"
    )
    keys = await store.pool.fetch("SELECT request_hash, response::text AS response FROM idempotency_keys")
    assert len(columns) == 2 and all(r["secret"].startswith(PREFIX) for r in columns)
    assert len(keys) == 2 and all(SECRET not in r["response"] for r in keys)
    # The stored fingerprints cover the secret only through the keyed digest: a guess cannot be tested.
    request = SubscriptionRequest.model_validate(body)
    hashes = {r["request_hash"] for r in keys}
    assert fingerprint("POST", "/webhooks/subscriptions", request) not in hashes  # the guess fails
    keyed = without_secret(request, app.state.sealer)
    assert fingerprint("POST", "/webhooks/subscriptions", keyed) in hashes  # what was stored
    sealer: Sealer = app.state.sealer
    subscription_id = created.json()["id"]
    stored = await store.pool.fetchval(
        "SELECT secret FROM webhook_subscriptions WHERE id = $1", uuid.UUID(subscription_id)
    )
    assert sealer.open(stored, subscription_context(subscription_id)) == SECRET
    # The inbound source checks signatures made with the secret.
    good = await http.post("/inbound/erp/actuals", content=NO_CYCLE, headers=signed(SECRET, NO_CYCLE))
    assert good.status_code == 404 and good.json()["code"] == "cycle_not_found", good.text
    bad = await http.post("/inbound/erp/actuals", content=NO_CYCLE, headers=signed("x" * 20, NO_CYCLE))
    assert bad.status_code == 401


async def test_a_secret_planted_in_the_database_is_never_used(
    http: httpx.AsyncClient, admin: Any, store: EventStore, make_token: Any
) -> None:
    registered = await http.post("/inbound/sources", json={"source": "erp", "secret": SECRET}, headers=admin)
    assert registered.status_code == 201
    sealed = await store.pool.fetchval("SELECT secret FROM inbound_sources WHERE source = 'erp'")
    # A database writer copies the sealed secret into a stored answer of their own key, for the API to open
    # on replay: it was sealed for the source's row, so it does not open there.
    mallory = await make_token("mallory", Role.INTEGRATION)
    path = "/webhooks/subscriptions/00000000-0000-0000-0000-000000000000/pause"
    await store.pool.execute(
        "INSERT INTO idempotency_keys (principal, key, method, path, request_hash, status_code, response) "
        "VALUES ('mallory', 'k', 'POST', $1, $2, 200, $3::jsonb)",
        path,
        fingerprint("POST", path, None),
        json.dumps({"secret": sealed}),
    )
    replayed = await http.post(path, headers={**mallory, "Idempotency-Key": "k"})
    assert replayed.status_code == 503 and SECRET not in replayed.text
    # ... or sets a secret of their own in plain text, to sign forged actuals with: refused, not adopted.
    planted = "chosen-by-mallory-123"
    await store.pool.execute("UPDATE inbound_sources SET secret = $1 WHERE source = 'erp'", planted)
    forged = await http.post("/inbound/erp/actuals", content=NO_CYCLE, headers=signed(planted, NO_CYCLE))
    assert (forged.status_code, forged.json()["code"]) == (503, "secrets_key_unusable"), forged.text
    # The caller is told to see the operator; the server's files are named only in its log.
    assert "operator" in forged.json()["message"] and "/" not in forged.json()["message"]


async def test_plain_text_secrets_of_an_earlier_install_are_sealed_once_at_the_first_start(
    store: EventStore, tmp_path: Path
) -> None:
    # As an earlier planloop stored them: in the clear, with a stored answer showing the secret.
    subscription_id = uuid.uuid4()
    await store.pool.execute(
        "INSERT INTO webhook_subscriptions (id, url, secret) VALUES ($1, 'http://127.0.0.1:9/h', $2)",
        subscription_id,
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
    key_file = tmp_path / "host-a" / "secrets-key"
    sealer = Sealer(key_file)
    assert await sealer.prepare(store.pool) == 3  # the key is made, the three sealed
    assert key_file.with_name(key_file.name + MARKER_SUFFIX).exists()
    opened = [
        sealer.open(
            await store.pool.fetchval("SELECT secret FROM webhook_subscriptions"),
            subscription_context(subscription_id),
        ),
        sealer.open(
            await store.pool.fetchval("SELECT secret FROM inbound_sources"), source_context("legacy")
        ),
        sealer.open(
            await store.pool.fetchval("SELECT response ->> 'secret' FROM idempotency_keys"),
            answer_context("admin", "old"),
        ),
    ]
    assert opened == [SECRET] * 3
    # Plain text planted afterwards is not adopted at the next start.
    await store.pool.execute("UPDATE inbound_sources SET secret = 'planted-later-0123456'")
    assert await sealer.prepare(store.pool) == 0
    assert await store.pool.fetchval("SELECT secret FROM inbound_sources") == "planted-later-0123456"


async def test_a_host_whose_key_is_not_the_databases_does_not_start(
    store: EventStore, tmp_path: Path
) -> None:
    first = Sealer(tmp_path / "host-a" / "secrets-key")
    await first.prepare(store.pool)
    # A second host without the file: making a new key would seal what host A cannot open.
    missing = Sealer(tmp_path / "host-b" / "secrets-key")
    with pytest.raises(SealingKeyError, match="copy the key file of the API host that made it"):
        await missing.prepare(store.pool)
    assert not missing.key_file.exists()
    # A host with another key: refused too.
    Sealer.make_key(tmp_path / "host-c" / "secrets-key")
    with pytest.raises(
        SealingKeyError, match="is not the one the database's shared secrets are sealed under"
    ):
        await Sealer(tmp_path / "host-c" / "secrets-key").prepare(store.pool)
    # A copy of host A's key starts.
    (tmp_path / "host-b").mkdir()
    missing.key_file.write_bytes(first.key_file.read_bytes())
    missing.key_file.chmod(0o600)
    assert await missing.prepare(store.pool) == 0


async def test_a_delivery_whose_secret_cannot_be_opened_waits_without_counting_the_attempt(
    http: httpx.AsyncClient, admin: Any, store: EventStore, tmp_path: Path
) -> None:
    subscribed = await http.post(
        "/webhooks/subscriptions", json={"url": "http://127.0.0.1:9/h"}, headers=admin
    )
    assert subscribed.status_code == 201
    delivery_id = uuid.uuid4()
    await store.pool.execute(
        "INSERT INTO webhook_deliveries (id, subscription_id, event_id, event_type, body) "
        "VALUES ($1, $2, $3, 'PlanSubmitted', '{}')",
        delivery_id,
        uuid.UUID(subscribed.json()["id"]),
        uuid.uuid4(),
    )
    Sealer.make_key(tmp_path / "wrong-key")
    async with httpx.AsyncClient() as client:
        sender = WebhookSender(store.pool, client, Sealer(tmp_path / "wrong-key"), max_attempts=1)
        assert await sender.send_due() == 1
    row = await store.pool.fetchrow(
        "SELECT status, attempts, last_error FROM webhook_deliveries WHERE id = $1", delivery_id
    )
    # Not given up (max_attempts is 1), and the error says nothing of the server's files.
    assert (row["status"], row["attempts"]) == ("pending", 0)
    assert (
        row["last_error"].startswith("cannot sign: the server cannot open") and "/" not in row["last_error"]
    )
