"""The Idempotency-Key header of every write: the same key returns the same answer and never acts twice.

The first request with a key claims it (an insert on the primary key (principal, key), so of two concurrent
duplicates exactly one acts and the other is told to retry), acts and stores its answer. A repeat with the
same request gets the stored answer; a repeat with another request is refused, since keys are single-use.

The key also travels to the plan's workflow as the command's ``request_id``: should a process die between
acting and storing the answer, the retry that takes over the stale claim is answered by the workflow's own
deduplication with the first answer, and nothing acts twice.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any

import asyncpg
from fastapi import Header, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from planloop.integration.sealing import Sealer, answer_context

from .auth import Principal
from .errors import IDEMPOTENCY_KEY_IN_PROGRESS, IDEMPOTENCY_KEY_REUSED, INVALID_REQUEST, ApiError

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# A claim older than this whose answer never came was left by a process that died: a retry may take it.
STALE_CLAIM = timedelta(minutes=2)

_CLAIM = """
INSERT INTO idempotency_keys (principal, key, method, path, request_hash)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (principal, key) DO NOTHING
RETURNING created_at
"""
_FIND = """
SELECT method, path, request_hash, status_code, response, now() - created_at > $3 AS stale
FROM idempotency_keys WHERE principal = $1 AND key = $2
"""
_TAKE_OVER = """
UPDATE idempotency_keys SET created_at = now()
WHERE principal = $1 AND key = $2 AND status_code IS NULL AND now() - created_at > $3
RETURNING created_at
"""
_STORE = """
UPDATE idempotency_keys SET status_code = $3, response = $4, completed_at = now()
WHERE principal = $1 AND key = $2
"""
_RELEASE = "DELETE FROM idempotency_keys WHERE principal = $1 AND key = $2 AND status_code IS NULL"

#: The header as an endpoint parameter: ``idempotency_key: IdempotencyKey = None``.
IdempotencyKey = Annotated[
    str | None,
    Header(alias=HEADER, description="Makes the write safe to retry: the same key answers the same."),
]

#: What an action answers: its status and a JSON-able body.
Answer = tuple[int, Any]


def fingerprint(method: str, path: str, body: Any) -> str:
    """SHA-256 of the request as understood (its validated body), so formatting never matters."""
    canonical = json.dumps(jsonable_encoder(body), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def without_secret(body: BaseModel, sealer: Sealer) -> BaseModel:
    """``body`` with its ``secret`` replaced by a keyed HMAC, for the fingerprint: the stored fingerprint of
    a request that carried a secret must not let anyone test guesses of it."""
    secret = getattr(body, "secret", None)
    return body.model_copy(update={"secret": sealer.digest(secret)}) if secret else body


def request_id(principal: Principal, key: str | None) -> str:
    """The request id a command carries to its workflow; keys are per principal, so it names both."""
    return f"{principal.principal_id}:{key}" if key else f"api:{uuid.uuid4()}"


class Idempotency:
    """Answers stored per key. An answer's ``secret`` (a shared secret shown once, which a retry must get
    again) is stored sealed by ``sealer``, as the secret itself is."""

    def __init__(self, pool: asyncpg.Pool, sealer: Sealer) -> None:
        self.pool = pool
        self.sealer = sealer

    async def run(
        self,
        principal: Principal,
        key: str | None,
        method: str,
        path: str,
        request_hash: str,
        action: Callable[[str], Awaitable[Answer]],
    ) -> Response:
        """Run ``action(request_id)`` once per key and answer with what it answered."""
        if key is None:
            return await self._act(principal, None, action)
        if not key.strip() or len(key) > MAX_KEY_LENGTH:
            raise ApiError(
                422,
                INVALID_REQUEST,
                f"the {HEADER} header must be 1 to {MAX_KEY_LENGTH} characters, e.g. a UUID",
            )
        pid = principal.principal_id
        if await self.pool.fetchval(_CLAIM, pid, key, method, path, request_hash) is None:
            row = await self.pool.fetchrow(_FIND, pid, key, STALE_CLAIM)
            if row is None:  # released meanwhile by a failed first request: claim it afresh
                return await self.run(principal, key, method, path, request_hash, action)
            if (row["method"], row["path"], row["request_hash"]) != (method, path, request_hash):
                raise ApiError(
                    422,
                    IDEMPOTENCY_KEY_REUSED,
                    f"the {HEADER} {key!r} was used for another request ({row['method']} {row['path']}); "
                    "keys are single-use: send a new key for a new request",
                )
            if row["status_code"] is not None:
                return _response(
                    self._opened(row["response"], answer_context(pid, key)),
                    row["status_code"],
                    {REPLAYED_HEADER: "true"},
                )
            if not row["stale"] or await self.pool.fetchval(_TAKE_OVER, pid, key, STALE_CLAIM) is None:
                raise ApiError(
                    409,
                    IDEMPOTENCY_KEY_IN_PROGRESS,
                    f"a request with the {HEADER} {key!r} is still being answered; retry in a moment",
                    {"Retry-After": "1"},
                )
        return await self._act(principal, key, action)

    async def _act(
        self, principal: Principal, key: str | None, action: Callable[[str], Awaitable[Answer]]
    ) -> Response:
        try:
            status, body = await action(request_id(principal, key))
        except ApiError as err:
            if err.status >= 500:
                await self._release(principal, key)
                raise
            # A refusal is an answer too: the same request gets the same refusal, without asking again.
            status, body = err.status, err.body()
        except BaseException:
            await self._release(principal, key)
            raise
        encoded = jsonable_encoder(body)
        if key is not None:
            stored = json.dumps(self._sealed(encoded, answer_context(principal.principal_id, key)))
            await self.pool.execute(_STORE, principal.principal_id, key, status, stored)
        return _response(encoded, status)

    def _sealed(self, answer: Any, context: str) -> Any:
        if isinstance(answer, dict) and isinstance(answer.get("secret"), str):
            return {**answer, "secret": self.sealer.seal(answer["secret"], context)}
        return answer

    def _opened(self, stored: Any, context: str) -> Any:
        # Sealed for this principal's key only: a sealed secret copied here from elsewhere does not open.
        answer = json.loads(stored) if isinstance(stored, str) else stored
        if isinstance(answer, dict) and isinstance(answer.get("secret"), str):
            return {**answer, "secret": self.sealer.open(answer["secret"], context)}
        return answer

    async def _release(self, principal: Principal, key: str | None) -> None:
        # Nothing was answered: free the key, so the caller's retry acts (the workflow dedups a repeat).
        if key is not None:
            await self.pool.execute(_RELEASE, principal.principal_id, key)


def _response(body: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    if status == 204:  # No Content: a body would break the HTTP answer
        return Response(status_code=204, headers=headers)
    return JSONResponse(body, status_code=status, headers=headers)


async def once(
    request: Request,
    principal: Principal,
    key: str | None,
    act: Callable[[str], Awaitable[Answer]],
    body: Any = None,
    *,
    path: str | None = None,
) -> Response:
    """The write of ``request`` answered once per Idempotency-Key: ``act(request_id)`` runs for the first
    request with the key, and a repeat of that request gets the same answer (a repeated DELETE its 204,
    not a 404). ``body`` is the request as understood (what the key's fingerprint covers, a ``secret`` in
    it only as a keyed HMAC); ``path`` names the write when two routes are one (a cycle opened from JSON
    or from a file)."""
    method, path = request.method, path or request.url.path
    idempotency: Idempotency = request.app.state.idempotency
    if isinstance(body, BaseModel):
        body = without_secret(body, idempotency.sealer)
    return await idempotency.run(principal, key, method, path, fingerprint(method, path, body), act)
