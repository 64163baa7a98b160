"""Webhooks: outbound deliveries, at least once, signed; and checking the signature of inbound ones.

Outbound runs in two steps, each with its own guarantee:

1. The dispatcher is a projection of the feed: for each event it enqueues one delivery per matching
   subscription in the same transaction that advances its checkpoint, so no event is enqueued twice
   or skipped (the unique (subscription, event id) makes a repeat harmless anyway).
2. The sender claims due deliveries (pushing their next attempt a lease ahead, so a sender that
   dies mid-POST leaves the delivery to be retried), POSTs them, and marks them delivered on a 2xx,
   otherwise schedules a retry with exponential backoff and jitter, until ``max_attempts``.

A crash between a receiver's 2xx and the mark means the delivery is sent again: receivers
deduplicate on X-Planloop-Event-Id. Deliveries are not ordered across retries; the body carries the
event's feed position and stream version for receivers that need order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import random
import secrets
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg
import httpx
import structlog
from pydantic import BaseModel, ConfigDict

from eventstore import RecordedEvent
from planloop.integration.feed import feed_event
from planloop.integration.sealing import Sealer, SealingKeyError, subscription_context
from planloop.readmodels.projector import Projection

log = structlog.stdlib.get_logger("planloop.webhooks")

EVENT_ID_HEADER: Final = "X-Planloop-Event-Id"
DELIVERY_HEADER: Final = "X-Planloop-Delivery"
TIMESTAMP_HEADER: Final = "X-Planloop-Timestamp"
SIGNATURE_HEADER: Final = "X-Planloop-Signature"
ATTEMPT_HEADER: Final = "X-Planloop-Attempt"
SIGNATURE_SCHEME: Final = "sha256="

# -- subscriptions ----------------------------------------------------------------------------------

INSERT_SUBSCRIPTION: Final = """
INSERT INTO webhook_subscriptions (id, url, secret, event_types) VALUES ($1, $2, $3, $4)
RETURNING id, url, secret, event_types, active, created_at
"""
SET_ACTIVE: Final = """
UPDATE webhook_subscriptions SET active = $2 WHERE id = $1
RETURNING id, url, secret, event_types, active, created_at
"""
LIST_SUBSCRIPTIONS: Final = """
SELECT id, url, secret, event_types, active, created_at FROM webhook_subscriptions ORDER BY created_at, id
"""
# Its deliveries go with it (ON DELETE CASCADE): pending ones are never sent.
DELETE_SUBSCRIPTION: Final = "DELETE FROM webhook_subscriptions WHERE id = $1"
LIST_DELIVERIES: Final = """
SELECT id, event_id, event_type, status, attempts, next_attempt_at, last_error, created_at, delivered_at
  FROM webhook_deliveries
 WHERE subscription_id = $1 AND ($2::text IS NULL OR status = $2)
 ORDER BY created_at DESC, id
 LIMIT $3
"""
SUBSCRIPTION_EXISTS: Final = "SELECT EXISTS (SELECT 1 FROM webhook_subscriptions WHERE id = $1)"
COUNT_DELIVERIES: Final = """
SELECT status, count(*) AS n FROM webhook_deliveries WHERE subscription_id = $1 GROUP BY status
"""


class WebhookSubscription(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: uuid.UUID
    url: str
    secret: str
    event_types: list[str] | None  # None: every event type
    active: bool
    created_at: datetime


async def create_subscription(
    pool: asyncpg.Pool,
    sealer: Sealer,
    url: str,
    *,
    secret: str | None = None,
    event_types: list[str] | None = None,
) -> WebhookSubscription:
    """Subscribe ``url`` to events (of ``event_types``, or all) recorded from now on.

    Without a ``secret`` a random one is made; the receiver needs it to check signatures. It is stored
    sealed by ``sealer``; the subscription returned holds it in the clear, to hand to the receiver once.
    """
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"webhook url {url!r} must start with http:// or https://")
    try:
        httpx.URL(url)
    except httpx.InvalidURL as err:
        raise ValueError(f"webhook url {url!r} is not a valid URL ({err}); correct it") from None
    secret, subscription_id = secret or secrets.token_urlsafe(32), uuid.uuid4()
    sealed = sealer.seal(secret, subscription_context(subscription_id))
    row = await pool.fetchrow(INSERT_SUBSCRIPTION, subscription_id, url, sealed, event_types)
    return WebhookSubscription.model_validate({**dict(row), "secret": secret})


async def set_subscription_active(
    pool: asyncpg.Pool, subscription_id: uuid.UUID, active: bool
) -> WebhookSubscription | None:
    """Pause or resume a subscription; paused, its pending deliveries wait. None if it does not exist."""
    row = await pool.fetchrow(SET_ACTIVE, subscription_id, active)
    return None if row is None else WebhookSubscription.model_validate(dict(row))


async def list_subscriptions(pool: asyncpg.Pool) -> list[WebhookSubscription]:
    return [WebhookSubscription.model_validate(dict(r)) for r in await pool.fetch(LIST_SUBSCRIPTIONS)]


async def delete_subscription(pool: asyncpg.Pool, subscription_id: uuid.UUID) -> bool:
    """Delete a subscription and its deliveries (what is pending is never sent); False if it did not exist."""
    status = await pool.execute(DELETE_SUBSCRIPTION, subscription_id)
    return bool(status.endswith(" 1"))


class DeliveryRecord(BaseModel):
    """One event's delivery to one subscription: pending (with its next attempt), delivered or failed."""

    model_config = ConfigDict(frozen=True)

    id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


async def list_deliveries(
    pool: asyncpg.Pool, subscription_id: uuid.UUID, status: str | None = None, limit: int = 50
) -> tuple[list[DeliveryRecord], dict[str, int]] | None:
    """A subscription's latest deliveries (of ``status``, or all), newest first, and its counts by status;
    None if there is no such subscription."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        if not await conn.fetchval(SUBSCRIPTION_EXISTS, subscription_id):
            return None
        rows = await conn.fetch(LIST_DELIVERIES, subscription_id, status, limit)
        counts = {r["status"]: r["n"] for r in await conn.fetch(COUNT_DELIVERIES, subscription_id)}
    return [DeliveryRecord.model_validate(dict(r)) for r in rows], counts


# -- targets: no requests into the internal network (SSRF) unless allowed ---------------------------------

PRIVATE_TARGETS_HINT: Final = (
    "webhooks go to public addresses only; to allow loopback, private and link-local targets (tests, "
    "receivers inside your network) set PLANLOOP_WEBHOOK_PRIVATE_TARGETS=true"
)


@dataclass(frozen=True)
class TargetCheck:
    """What the guard found before a POST: a ``refusal`` (the target is never contacted), an ``error``
    (this attempt fails and is retried, e.g. the name does not resolve now), or the ``address`` to connect
    to: the one that was checked (None when the URL names an address itself)."""

    refusal: str | None = None
    error: str | None = None
    address: str | None = None


TargetGuard = Callable[[str], Awaitable[TargetCheck]]

# IPv6 forms that carry an IPv4 address in their last 32 bits: IPv4-compatible (::a.b.c.d), IPv4-mapped
# (::ffff:a.b.c.d), IPv4-translated (::ffff:0:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d). Judged as IPv6 they
# look global, yet a stack or a NAT64 gateway delivers them to the IPv4 address (::7f00:1 is loopback,
# 64:ff9b::a9fe:a9fe a cloud's metadata service), so the IPv4 address inside is what is judged.
_IPV4_IN_LAST_32_BITS = tuple(
    ipaddress.IPv6Network(net) for net in ("::/96", "::ffff:0:0/96", "::ffff:0:0:0/96", "64:ff9b::/96")
)
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")  # a network's own translator (RFC 8215): inside


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.sixtofour is not None:  # 6to4 (2002:a.b.c.d::/48) routes to the IPv4 address in bits 16-48
        return ip.sixtofour
    if any(ip in net for net in _IPV4_IN_LAST_32_BITS):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _not_public(address: str) -> bool:
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) names a link
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _LOCAL_NAT64:
            return True
        ip = _embedded_ipv4(ip) or ip
    return not ip.is_global or ip.is_multicast


def target_refusal(url: str) -> str | None:
    """Why ``url`` may not be a webhook target, from what the URL itself says (localhost, or an address
    that is loopback, private, link-local or reserved); None when it may. Names are resolved when sending
    (``check_target``), since a name can point anywhere."""
    host = httpx.URL(url).host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return f"{host} is this machine; {PRIVATE_TARGETS_HINT}"
    try:
        refused = _not_public(host)
    except ValueError:
        try:  # the legacy forms resolvers accept as addresses (2130706433, 0x7f.1), read without DNS
            refused = _not_public(socket.inet_ntoa(socket.inet_aton(host)))
        except OSError:
            return None  # a name, not an address
    return f"{host} is not a public address; {PRIVATE_TARGETS_HINT}" if refused else None


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


async def check_target(url: str) -> TargetCheck:
    """``target_refusal``, and for a name every address it resolves to now; the POST then connects to the
    first of those, never resolving the name again (see ``connect_to``)."""
    literal = target_refusal(url)
    if literal is not None:
        return TargetCheck(refusal=literal)
    parsed = httpx.URL(url)
    if _is_address(parsed.host):
        return TargetCheck()  # checked above; nothing to resolve
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parsed.host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as err:
        # Not left to the POST: it would resolve the name again, to whatever it points to by then.
        return TargetCheck(error=f"cannot resolve {parsed.host} ({err}); retried later")
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    private = sorted(a for a in addresses if _not_public(a))
    if private:
        return TargetCheck(
            refusal=f"{parsed.host} resolves to {', '.join(private)}, not a public address; "
            f"{PRIVATE_TARGETS_HINT}"
        )
    if not addresses:
        return TargetCheck(error=f"{parsed.host} resolves to no address; retried later")
    return TargetCheck(address=addresses[0])


def connect_to(request: httpx.Request, address: str) -> None:
    """Send ``request`` to ``address`` instead of resolving its host again. The name was checked by what it
    resolved to; resolved a second time by the client it could point inside (DNS rebinding). The request
    still names the host: its Host header is set from the URL already, and for TLS the server name sent and
    the name the certificate is verified against stay the host (httpcore's ``sni_hostname``)."""
    request.extensions["sni_hostname"] = request.url.host
    request.url = request.url.copy_with(host=address)


# -- dispatching: feed -> deliveries --------------------------------------------------------------------

# Only subscriptions that existed when the event was recorded get it: a new subscription does not
# receive history (the feed serves that). Paused ones get it too: their deliveries wait in the queue
# (the sender skips them) instead of being lost while the checkpoint moves on.
ENQUEUE: Final = """
INSERT INTO webhook_deliveries (id, subscription_id, event_id, event_type, body)
SELECT gen_random_uuid(), s.id, $1, $2, $3
  FROM webhook_subscriptions s
 WHERE (s.event_types IS NULL OR $2 = ANY (s.event_types))
   AND s.created_at <= $4
ON CONFLICT (subscription_id, event_id) DO NOTHING
"""


class WebhookDispatcher(Projection):
    """Follows the feed with its own checkpoint and enqueues a delivery per matching subscription.

    Run it like a read model: ``Projector(store, [WebhookDispatcher()]).run(stop)``.
    """

    name = "webhook_dispatch"
    decodes = False  # it forwards envelopes; it need not understand them

    async def apply(self, conn: asyncpg.Connection, recorded: RecordedEvent, decoded: Any) -> None:
        body = feed_event(recorded).model_dump_json()
        await conn.execute(ENQUEUE, recorded.event_id, recorded.type, body, recorded.recorded_at)


# -- sending: deliveries -> HTTP ---------------------------------------------------------------------

CLAIM_DUE: Final = """
WITH due AS (
    SELECT d.id
      FROM webhook_deliveries d
      JOIN webhook_subscriptions s ON s.id = d.subscription_id
     WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND s.active
     ORDER BY d.next_attempt_at
     LIMIT $1
       FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d
   SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
  FROM due, webhook_subscriptions s
 WHERE d.id = due.id AND s.id = d.subscription_id
RETURNING d.id, d.event_id, d.body, d.attempts, s.id AS subscription_id, s.url, s.secret
"""
# A delivery that could not be signed (the secrets key is unusable: planloop's fault, not the receiver's)
# goes back to waiting without counting the attempt, so it is never given up for it.
UNCLAIM: Final = """
UPDATE webhook_deliveries
   SET attempts = attempts - 1, next_attempt_at = now() + make_interval(secs => $2), last_error = $3
 WHERE id = $1
"""
MARK_DELIVERED: Final = """
UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now(), last_error = NULL WHERE id = $1
"""
MARK_FAILED_ATTEMPT: Final = """
UPDATE webhook_deliveries
   SET status = CASE WHEN attempts >= $3 THEN 'failed' ELSE 'pending' END,
       next_attempt_at = now() + make_interval(secs => $2),
       last_error = $4
 WHERE id = $1
"""


class Delivery(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: uuid.UUID
    event_id: uuid.UUID
    body: str
    attempts: int
    subscription_id: uuid.UUID
    url: str
    secret: str  # sealed


def sign(secret: str, timestamp: int | str, body: bytes | str) -> str:
    """The signature header value: HMAC-SHA256 over ``"{timestamp}.{body}"`` with the secret."""
    raw = body.encode() if isinstance(body, str) else body
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()
    return SIGNATURE_SCHEME + digest


class WebhookSender:
    """Sends due deliveries; run ``run(stop)`` in a task, or ``send_due()`` from a loop of your own."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        client: httpx.AsyncClient,
        sealer: Sealer,
        *,
        max_attempts: int = 10,
        base_delay: float = 2.0,
        max_delay: float = 3600.0,
        lease: float = 60.0,
        batch_size: int = 20,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        target_guard: TargetGuard | None = None,
    ) -> None:
        """``target_guard`` (e.g. ``check_target``) is asked before each POST; a target it refuses fails
        the delivery at once, with its reason, and is never contacted; an address it checked is the one
        the POST connects to."""
        self.pool = pool
        self.client = client
        self.sealer = sealer
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.lease = lease
        self.batch_size = batch_size
        self.jitter = jitter
        self.clock = clock
        self.target_guard = target_guard

    def backoff(self, attempts: int) -> float:
        """Seconds before the next attempt after ``attempts`` failed ones: doubling, capped, and
        spread over [half, full] so receivers that failed together are not retried together."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempts - 1))
        return ceiling * (0.5 + self.jitter() / 2)

    async def send_due(self) -> int:
        """Claim and send the deliveries that are due now; return how many were attempted."""
        rows = await self.pool.fetch(CLAIM_DUE, self.batch_size, self.lease)
        deliveries = [Delivery.model_validate(dict(r)) for r in rows]
        await asyncio.gather(*(self._send(d) for d in deliveries))
        return len(deliveries)

    async def _send(self, delivery: Delivery) -> None:
        check = await self.target_guard(delivery.url) if self.target_guard is not None else TargetCheck()
        if check.refusal is not None:
            # Retrying cannot help until the setting or the URL changes: failed now, with the reason.
            reason = f"refused target: {check.refusal}"
            await self.pool.execute(MARK_FAILED_ATTEMPT, delivery.id, 0, 0, reason)
            log.warning("webhook target refused", delivery=str(delivery.id), reason=check.refusal)
            return
        try:
            secret = self.sealer.open(delivery.secret, subscription_context(delivery.subscription_id))
        except SealingKeyError as exc:
            log.error("webhook delivery cannot be signed", delivery=str(delivery.id), error=str(exc))
            reason = "cannot sign: the server cannot open the subscription's secret (see the API's log)"
            await self.pool.execute(UNCLAIM, delivery.id, self.backoff(delivery.attempts), reason)
            return
        error = check.error or await self._post(delivery, check.address, secret)
        if error is None:
            await self._mark_delivered(delivery)
            return
        delay = self.backoff(delivery.attempts)
        await self.pool.execute(MARK_FAILED_ATTEMPT, delivery.id, delay, self.max_attempts, error)
        log.warning(
            "webhook delivery failed",
            delivery=str(delivery.id),
            event_id=str(delivery.event_id),
            attempt=delivery.attempts,
            error=error,
            retry_in=None if delivery.attempts >= self.max_attempts else round(delay, 3),
        )

    async def _post(self, delivery: Delivery, address: str | None, secret: str) -> str | None:
        """POST the delivery (to ``address`` when given); None on a 2xx, else what went wrong."""
        timestamp = int(self.clock().timestamp())
        headers = {
            "Content-Type": "application/json",
            EVENT_ID_HEADER: str(delivery.event_id),
            DELIVERY_HEADER: str(delivery.id),
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, timestamp, delivery.body),
            ATTEMPT_HEADER: str(delivery.attempts),
        }
        try:
            request = self.client.build_request("POST", delivery.url, content=delivery.body, headers=headers)
            if address is not None:
                connect_to(request, address)
            response = await self.client.send(request)
        except (httpx.HTTPError, httpx.InvalidURL) as err:
            # A failed attempt, never a dead sender: one bad subscription must not stop the others.
            return f"{type(err).__name__}: {err}"
        if response.is_success:
            return None
        return f"HTTP {response.status_code}: {response.text[:200]}"

    async def _mark_delivered(self, delivery: Delivery) -> None:
        # If the process dies before this, the lease runs out and the delivery is sent again.
        await self.pool.execute(MARK_DELIVERED, delivery.id)

    async def run(self, stop: asyncio.Event | None = None, idle_interval: float = 1.0) -> None:
        """Send until ``stop`` is set; sleep ``idle_interval`` when nothing is due."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                sent = await self.send_due()
            except (asyncpg.PostgresError, OSError) as err:
                log.error("webhook sender cannot reach the database; retrying", error=str(err))
                sent = 0
            if not sent:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), idle_interval)


# -- inbound -----------------------------------------------------------------------------------------


class SignatureError(Exception):
    """An inbound webhook's signature or timestamp is not acceptable; ``reason`` says which and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def verify_signature(
    secret: str,
    timestamp: str | int | None,
    body: bytes | str,
    signature: str | None,
    now: datetime | None = None,
    tolerance: timedelta = timedelta(minutes=5),
) -> None:
    """Accept an inbound webhook only if ``signature`` is HMAC-SHA256 over ``"{timestamp}.{body}"``
    with ``secret`` and ``timestamp`` (Unix seconds) is within ``tolerance`` of ``now``.

    The signature may list several comma-separated values (a sender rotating secrets). Raises
    SignatureError naming what was wrong; returns None when the webhook is genuine and fresh.
    """
    if not signature:
        raise SignatureError(
            f"the {SIGNATURE_HEADER} header is missing; sign the body with the shared secret"
        )
    if timestamp is None or not str(timestamp).strip().isdigit():
        raise SignatureError(
            f"the {TIMESTAMP_HEADER} header {timestamp!r} is not a Unix time in seconds; "
            "send the time the request was signed"
        )
    sent_at = datetime.fromtimestamp(int(timestamp), UTC)
    age = (now or datetime.now(UTC)) - sent_at
    if age > tolerance:
        raise SignatureError(
            f"the timestamp is {int(age.total_seconds())} s old, more than the "
            f"{int(tolerance.total_seconds())} s allowed; a replayed or long-delayed request is refused, "
            "so sign and send it again"
        )
    if -age > tolerance:
        raise SignatureError(
            f"the timestamp is {int(-age.total_seconds())} s in the future; check the sender's clock"
        )
    expected = sign(secret, int(timestamp), body)
    offered = [s.strip() for s in signature.split(",")]
    if not any(hmac.compare_digest(expected, s) for s in offered):
        raise SignatureError(
            "the signature does not match the body and timestamp; check the shared secret, and sign the raw "
            f"body exactly as sent, as {SIGNATURE_SCHEME}<hex of HMAC-SHA256 over 'timestamp.body'>"
        )
