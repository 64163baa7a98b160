"""Inbound webhooks: other systems (an ERP, a CRM) post monthly actuals, signed instead of token-bearing.

    POST /inbound/{source}/actuals          X-Planloop-Timestamp, X-Planloop-Signature

The signature is HMAC-SHA256 over ``"{timestamp}.{raw body}"`` with the source's shared secret
(``planloop.integration.webhooks.sign``); a request with a missing or wrong signature, or a timestamp more
than five minutes off, is refused with 401 and the reason, before its body is even parsed. An accepted
request takes the same path as ``POST /cycles/{cycle_id}/actuals/import`` with JSON rows, as the source's
actor (role integration, the source's scopes).

A request is idempotent on its ``Idempotency-Key`` header or, without one, on its signature: the same
signed request sent twice (a sender's retry, or a replay inside the five minutes) is answered with the
first answer and records nothing twice.

Sources are registered by admins (``POST /inbound/sources``), each with its own secret, shown once.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from planloop.integration.sealing import source_context
from planloop.integration.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    verify_signature,
)

from .actuals import ImportReport, parse_json, run_import, storable
from .auth import Principal, Role, authenticated
from .errors import ERROR_RESPONSES, INVALID_REQUEST, NOT_FOUND, UNAUTHENTICATED, ApiError
from .idempotency import HEADER, Answer, IdempotencyKey, once

router = APIRouter(tags=["inbound webhooks"])

INVALID_SIGNATURE = "invalid_signature"

_UPSERT = """
INSERT INTO inbound_sources (source, secret, actor, scopes, created_by) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (source) DO UPDATE
   SET secret = EXCLUDED.secret, actor = EXCLUDED.actor, scopes = EXCLUDED.scopes,
       created_by = EXCLUDED.created_by, created_at = now(), revoked_at = NULL
RETURNING source, actor, scopes, created_by, created_at
"""
_FIND = "SELECT secret, actor, scopes FROM inbound_sources WHERE source = $1 AND revoked_at IS NULL"
_LIST = """
SELECT source, actor, scopes, created_by, created_at FROM inbound_sources WHERE revoked_at IS NULL
ORDER BY source
"""
_REVOKE = "UPDATE inbound_sources SET revoked_at = now() WHERE source = $1 AND revoked_at IS NULL"


def _storable(text: str) -> str:
    if not storable(text) or any(ord(c) < 32 for c in text):
        raise ValueError("control characters and unpaired surrogates cannot be stored")
    return text


Text = Annotated[str, AfterValidator(_storable)]


class SourceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", examples=["erp-sap"])
    secret: Text | None = Field(
        default=None, min_length=16, description="The shared secret; omitted: a random one is made."
    )
    actor: Text | None = Field(
        default=None, min_length=1, description="Recorded on its events; default inbound:{source}."
    )
    scopes: list[Annotated[Text, Field(min_length=1)]] = Field(
        default_factory=list, description="Org units it may post for; empty: all."
    )


class SourceView(BaseModel):
    source: str
    actor: str
    scopes: list[str]
    created_by: str
    created_at: datetime


class RegisteredSource(SourceView):
    secret: str = Field(description="Shown only now: configure the sender with it.")
    url: str


class InboundActuals(BaseModel):
    """The body of an inbound actuals webhook: the cycle and its rows (the import's JSON rows)."""

    cycle_id: str
    rows: list[dict[str, Any]]


Authenticated = Annotated[Principal, Depends(authenticated)]

# A registration's stored answer (its Idempotency-Key's) holds the secret it generated, so that a retry gets
# the same one. Once the source is registered again or revoked, that secret no longer works: it is blanked
# in the stored answers, which a late retry then gets with "secret": null.
_FORGET_SECRETS = """
UPDATE idempotency_keys SET response = jsonb_set(response, '{secret}', 'null')
WHERE method = 'POST' AND path = '/inbound/sources' AND response ->> 'source' = $1
  AND response ->> 'secret' IS NOT NULL
"""


@router.post("/inbound/sources", status_code=201, response_model=RegisteredSource, responses=ERROR_RESPONSES)
async def register_source(
    body: SourceRequest, request: Request, principal: Authenticated, idempotency_key: IdempotencyKey = None
) -> Response:
    """Register a system that posts signed webhooks (or replace its secret). Without a secret in the body
    one is generated: send an Idempotency-Key, so that a retry after a lost answer gets the same secret
    instead of replacing it with a new one. Roles: admin."""
    principal.require_role((), "registering an inbound source")

    async def act(_: str) -> Answer:
        secret = body.secret or secrets.token_urlsafe(32)
        # Sealed first: a key that fails changes nothing.
        sealed = request.app.state.sealer.seal(secret, source_context(body.source))
        pool = request.app.state.store.pool
        await pool.execute(_FORGET_SECRETS, body.source)  # the old secret stops working now
        row = await pool.fetchrow(
            _UPSERT,
            body.source,
            sealed,
            body.actor or f"inbound:{body.source}",
            body.scopes,
            principal.principal_id,
        )
        registered = RegisteredSource(**dict(row), secret=secret, url=f"/inbound/{body.source}/actuals")
        return 201, registered.model_dump(mode="json")

    return await once(request, principal, idempotency_key, act, body)


@router.get("/inbound/sources", response_model=list[SourceView], responses=ERROR_RESPONSES)
async def list_sources(request: Request, principal: Authenticated) -> list[SourceView]:
    """The registered inbound sources (without their secrets). Roles: admin, auditor."""
    principal.require_role((Role.AUDITOR,), "listing inbound sources")
    principal.require_company_wide("listing inbound sources")
    return [SourceView(**dict(r)) for r in await request.app.state.store.pool.fetch(_LIST)]


@router.delete("/inbound/sources/{source}", status_code=204, responses=ERROR_RESPONSES)
async def revoke_source(
    source: str, request: Request, principal: Authenticated, idempotency_key: IdempotencyKey = None
) -> Response:
    """Revoke a source: its requests are refused from now on. Roles: admin."""
    principal.require_role((), "revoking an inbound source")

    async def act(_: str) -> Answer:
        pool = request.app.state.store.pool
        status = await pool.execute(_REVOKE, source)
        if status.endswith(" 0"):
            raise ApiError(404, NOT_FOUND, f"there is no inbound source {source!r}")
        await pool.execute(_FORGET_SECRETS, source)
        return 204, None

    return await once(request, principal, idempotency_key, act)


def _refused(reason: str) -> ApiError:
    return ApiError(401, INVALID_SIGNATURE, reason)


async def _source(pool: asyncpg.Pool, source: str) -> asyncpg.Record:
    row = await pool.fetchrow(_FIND, source)
    if row is None:
        raise ApiError(
            401,
            UNAUTHENTICATED,
            f"no inbound source {source!r} is registered (or it was revoked); ask an admin to register it",
        )
    return row


@router.post(
    "/inbound/{source}/actuals",
    response_model=ImportReport,
    responses={
        **ERROR_RESPONSES,
        401: {"description": "Unknown source, or a missing, wrong or stale signature (the message says)."},
        207: {"model": ImportReport, "description": "Some plans were applied, others refused."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": InboundActuals.model_json_schema()}},
        }
    },
)
async def inbound_actuals(
    source: str,
    request: Request,
    timestamp: Annotated[
        str | None, Header(alias=TIMESTAMP_HEADER, description="Unix seconds when the request was signed.")
    ] = None,
    signature: Annotated[
        str | None, Header(alias=SIGNATURE_HEADER, description="sha256=<hex HMAC-SHA256 of 'timestamp.body'>")
    ] = None,
    idempotency_key: Annotated[str | None, Header(alias=HEADER)] = None,
) -> Response:
    """Monthly actuals from a registered system, signed with its secret: ``{"cycle_id": ..., "rows": [...]}``
    with the rows of the actuals import. Refused with 401 on a bad signature or an old timestamp."""
    pool = request.app.state.store.pool
    registered = await _source(pool, source)
    raw = await request.body()
    try:
        secret = request.app.state.sealer.open(registered["secret"], source_context(source))
        verify_signature(secret, timestamp, raw, signature)
    except SignatureError as err:
        raise _refused(err.reason) from None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise ApiError(422, INVALID_REQUEST, f"the body is not valid JSON: {err}") from None
    cycle_id = data.get("cycle_id") if isinstance(data, dict) else None
    if not isinstance(cycle_id, str) or not cycle_id or not storable(cycle_id):
        raise ApiError(422, INVALID_REQUEST, 'the body must name its cycle: {"cycle_id": ..., "rows": [...]}')
    rows = parse_json(raw)
    principal = Principal(
        principal_id=registered["actor"],
        display_name=source,
        roles=frozenset({Role.INTEGRATION}),
        scopes=tuple(registered["scopes"]),
    )
    # Without a key, the signature is the key: the same signed request acts once.
    key = idempotency_key or "sig:" + hashlib.sha256(f"{timestamp}.{signature}".encode()).hexdigest()
    key_body = {"sha256": hashlib.sha256(raw).hexdigest()}

    async def act(rid: str) -> Answer:
        return await run_import(request, principal, cycle_id, rows, rid, f"inbound:{source}")

    return await once(request, principal, key, act, key_body)
