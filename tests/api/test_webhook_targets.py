"""Webhook targets inside the network (SSRF): refused at subscription when the URL names such an address,
and before each POST when a name resolves to one, unless PLANLOOP_WEBHOOK_PRIVATE_TARGETS allows them (the
other API tests' receivers listen on loopback, so their app allows them)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio.testing import WorkflowEnvironment

from eventstore import EventStore
from planloop.api import create_app
from planloop.api.auth import Role, create_token
from planloop.integration import WebhookSender, create_subscription
from planloop.integration.sealing import Sealer
from planloop.integration.webhooks import TargetCheck, check_target, target_refusal
from planloop.settings import Settings
from tests.conftest import free_port

REFUSED = [
    "http://127.0.0.1:9/hook",
    "http://localhost:8080/hook",
    "http://api.localhost/hook",
    "http://10.0.0.5/hook",
    "http://192.168.1.20/hook",
    "http://169.254.169.254/latest/meta-data",  # a cloud's metadata service
    "http://0.0.0.0/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[fe80::1]/hook",
    "http://2130706433/hook",  # 127.0.0.1 written as a number
    "http://0x7f.1/hook",
    # IPv4 addresses inside IPv6 forms, which look global as IPv6.
    "http://[::7f00:1]/hook",  # IPv4-compatible 127.0.0.1
    "http://[::ffff:0:7f00:1]/hook",  # IPv4-translated 127.0.0.1
    "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of 169.254.169.254
    "http://[2002:a9fe:a9fe::]/hook",  # 6to4 of 169.254.169.254
    "http://[64:ff9b:1::5db8:d822]/hook",  # a network's own NAT64 translator
]
ALLOWED = [
    "https://hooks.example.com/planloop",
    "http://93.184.216.34/hook",
    "https://[2606:4700::1111]/x",
    "http://[64:ff9b::5db8:d822]/hook",  # NAT64 of 93.184.216.34
    "http://[2002:5db8:d822::1]/hook",  # 6to4 of 93.184.216.34
]


@pytest.mark.parametrize("url", REFUSED)
def test_urls_naming_internal_addresses_are_refused(url: str) -> None:
    reason = target_refusal(url)
    assert reason is not None and "PLANLOOP_WEBHOOK_PRIVATE_TARGETS=true" in reason


@pytest.mark.parametrize("url", ALLOWED)
def test_public_addresses_and_names_pass_the_url_check(url: str) -> None:
    assert target_refusal(url) is None


async def test_the_subscription_is_refused_unless_the_setting_allows_it(
    store: EventStore, dev_server_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> None:
    token, _ = await create_token(store.pool, "crm", [Role.INTEGRATION])
    headers = {"Authorization": f"Bearer {token}"}
    for allowed in (False, True):
        settings = Settings(database_url=database_url, webhook_private_targets=allowed, data_dir=tmp_path)
        app = create_app(settings, store=store, client=dev_server_env.client)
        await app.state.sealer.prepare(store.pool)  # as the app's start does (its lifespan is not run here)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://planloop.test"
        ) as http:
            answer = await http.post(
                "/webhooks/subscriptions", json={"url": "http://169.254.169.254/hook"}, headers=headers
            )
            if allowed:
                assert answer.status_code == 201, answer.text
            else:
                assert answer.status_code == 422 and answer.json()["code"] == "invalid_request"
                assert "not a public address" in answer.json()["message"]
                assert await store.pool.fetchval("SELECT count(*) FROM webhook_subscriptions") == 0
    assert await store.pool.fetchval("SELECT count(*) FROM webhook_subscriptions") == 1


async def test_the_sender_fails_a_delivery_to_a_name_that_resolves_inside_without_contacting_it(
    store: EventStore, monkeypatch: pytest.MonkeyPatch, sealer: Sealer
) -> None:
    # A name passes the URL check; this one resolves (in this test's resolver) to a private address.
    async def resolve(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        assert (host, port) == ("hooks.corp.example", 80)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port))]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", resolve)
    assert target_refusal("http://hooks.corp.example/hook") is None
    subscription = await create_subscription(
        store.pool, sealer, "http://hooks.corp.example/hook", secret="s" * 16
    )
    await store.pool.execute(
        "INSERT INTO webhook_deliveries (id, subscription_id, event_id, event_type, body) "
        "VALUES ($1, $2, $3, 'PlanSubmitted', '{}')",
        uuid.uuid4(),
        subscription.id,
        uuid.uuid4(),
    )
    contacted: list[Any] = []

    def receive(request: httpx.Request) -> httpx.Response:
        contacted.append(request)
        return httpx.Response(204)

    async with httpx.AsyncClient(transport=httpx.MockTransport(receive)) as client:
        sender = WebhookSender(store.pool, client, sealer, target_guard=check_target)
        assert await sender.send_due() == 1
        assert await sender.send_due() == 0  # failed at once: nothing left to retry
    row = await store.pool.fetchrow("SELECT status, attempts, last_error FROM webhook_deliveries")
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert row["last_error"].startswith("refused target: ") and "resolves to 10.1.2.3" in row["last_error"]
    assert contacted == []


async def test_without_a_guard_the_sender_posts_to_any_target(store: EventStore, sealer: Sealer) -> None:
    subscription = await create_subscription(store.pool, sealer, "http://127.0.0.1:9/hook", secret="s" * 16)
    await store.pool.execute(
        "INSERT INTO webhook_deliveries (id, subscription_id, event_id, event_type, body) "
        "VALUES ($1, $2, $3, 'PlanSubmitted', '{}')",
        uuid.uuid4(),
        subscription.id,
        uuid.uuid4(),
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(204))) as client:
        assert await WebhookSender(store.pool, client, sealer).send_due() == 1
    assert await store.pool.fetchval("SELECT status FROM webhook_deliveries") == "delivered"


async def _one_delivery(store: EventStore, url: str, sealer: Sealer) -> uuid.UUID:
    subscription = await create_subscription(store.pool, sealer, url, secret="s" * 16)
    delivery_id = uuid.uuid4()
    await store.pool.execute(
        "INSERT INTO webhook_deliveries (id, subscription_id, event_id, event_type, body) "
        "VALUES ($1, $2, $3, 'PlanSubmitted', '{}')",
        delivery_id,
        subscription.id,
        uuid.uuid4(),
    )
    return delivery_id


async def test_the_post_connects_to_the_address_that_was_checked(
    store: EventStore, monkeypatch: pytest.MonkeyPatch, sealer: Sealer
) -> None:
    # DNS rebinding: the name resolves to a public address when checked, to loopback right after.
    answers = iter(["93.184.216.34", "127.0.0.1"])

    async def resolve(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", resolve)
    await _one_delivery(store, "https://hooks.example.com:8443/hook", sealer)
    contacted: list[httpx.Request] = []

    def receive(request: httpx.Request) -> httpx.Response:
        contacted.append(request)
        return httpx.Response(204)

    async with httpx.AsyncClient(transport=httpx.MockTransport(receive)) as client:
        assert await WebhookSender(store.pool, client, sealer, target_guard=check_target).send_due() == 1
    [request] = contacted
    assert (request.url.host, request.url.port, request.url.path) == ("93.184.216.34", 8443, "/hook")
    assert request.headers["host"] == "hooks.example.com:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.com"  # TLS: server name, certificate check
    assert await store.pool.fetchval("SELECT status FROM webhook_deliveries") == "delivered"


async def test_a_name_that_does_not_resolve_is_retried_without_a_post(
    store: EventStore, monkeypatch: pytest.MonkeyPatch, sealer: Sealer
) -> None:
    async def resolve(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", resolve)
    await _one_delivery(store, "http://hooks.gone.example/hook", sealer)
    contacted: list[httpx.Request] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(contacted.append)) as client:  # type: ignore[arg-type]
        sender = WebhookSender(store.pool, client, sealer, target_guard=check_target, jitter=lambda: 1.0)
        assert await sender.send_due() == 1
    row = await store.pool.fetchrow("SELECT status, attempts, last_error FROM webhook_deliveries")
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["last_error"].startswith("cannot resolve hooks.gone.example")
    assert contacted == []


def _certificate_authority(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for ``name`` only (no IP address in it): the CA's file, the server's
    certificate and key files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)

    def certificate(subject: str, key: Any, issuer: str, signer: Any, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("planloop test CA", ca_key, "planloop test CA", ca_key, ca=True)
    server = certificate(name, server_key, "planloop test CA", ca_key, ca=False)
    files = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server-key.pem"
    files[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


async def test_https_to_the_checked_address_verifies_the_certificate_against_the_name(
    store: EventStore, tmp_path: Path, sealer: Sealer
) -> None:
    # A receiver on loopback whose certificate names hooks.test only; the guard checked both names below
    # and found 127.0.0.1 (a guard of this test: the real one refuses loopback).
    ca_file, cert_file, key_file = _certificate_authority(tmp_path, "hooks.test")
    received: list[str] = []

    async def hook(request: Request) -> Response:
        received.append(request.headers["host"])
        return Response(status_code=204)

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=[Route("/hook", hook, methods=["POST"])]),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            ssl_certfile=str(cert_file),
            ssl_keyfile=str(key_file),
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)

    async def to_loopback(url: str) -> TargetCheck:
        return TargetCheck(address="127.0.0.1")

    try:
        named = await _one_delivery(store, f"https://hooks.test:{port}/hook", sealer)
        other = await _one_delivery(store, f"https://other.test:{port}/hook", sealer)
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(ca_file))) as client:
            sender = WebhookSender(store.pool, client, sealer, target_guard=to_loopback, max_attempts=1)
            assert await sender.send_due() == 2
    finally:
        server.should_exit = True
        await serving
    rows = {
        r["id"]: r for r in await store.pool.fetch("SELECT id, status, last_error FROM webhook_deliveries")
    }
    assert rows[named]["status"] == "delivered"
    assert received == [f"hooks.test:{port}"]
    # The same address under a name the certificate does not hold: refused by the certificate check.
    assert rows[other]["status"] == "failed" and "CERTIFICATE_VERIFY_FAILED" in rows[other]["last_error"]
