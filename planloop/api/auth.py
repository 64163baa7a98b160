"""API tokens and the principals they stand for.

A token is random (``pl_`` + 32 random bytes, URL-safe) and shown once; only its SHA-256 is stored. Each token
is bound to a principal: the id recorded as the actor of every event its requests cause, its roles, and the
org units it may act on. A principal scoped to a unit may act on that unit and every unit below it; a
principal without scopes acts on the whole company. Auditors read everything and change nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg
from fastapi import Request

from .errors import FORBIDDEN, UNAUTHENTICATED, ApiError

TOKEN_PREFIX = "pl_"

_INSERT = """
INSERT INTO api_tokens (token_hash, principal, display_name, roles, scopes)
VALUES ($1, $2, $3, $4, $5)
RETURNING created_at
"""
_LOOKUP = """
SELECT principal, display_name, roles, scopes
FROM api_tokens
WHERE token_hash = $1 AND revoked_at IS NULL
"""
_REVOKE = "UPDATE api_tokens SET revoked_at = now() WHERE principal = $1 AND revoked_at IS NULL"


class Role(StrEnum):
    PLANNER = "planner"  # plan authors: draft, revise, submit, plan and run execution
    APPROVER = "approver"  # decide at an approval gate
    LEADERSHIP = "leadership"  # approve, reopen, score, open and close cycles
    CSF_OWNER = "csf_owner"  # report actuals and explain deviations of their CSFs
    AUDITOR = "auditor"  # read everything, change nothing
    INTEGRATION = "integration"  # other systems: open cycles, post actuals
    ADMIN = "admin"  # everything


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: ``principal_id`` is the actor recorded on the events it causes."""

    principal_id: str
    display_name: str
    roles: frozenset[Role]
    scopes: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        return Role.ADMIN in self.roles

    @property
    def company_wide(self) -> bool:
        return self.is_admin or not self.scopes

    def require_role(self, allowed: Iterable[Role], action: str) -> None:
        """403 unless the principal holds one of ``allowed`` (admins hold them all)."""
        allowed = set(allowed)
        if self.is_admin or self.roles & allowed:
            return
        needed = " or ".join(sorted(r.value for r in allowed)) or "admin"
        held = ", ".join(sorted(r.value for r in self.roles)) or "none"
        raise ApiError(
            403,
            FORBIDDEN,
            f"{action} needs the role {needed}; {self.principal_id} holds {held}. "
            "Ask an admin for a token with that role",
        )

    def require_scope(self, unit_id: str, ancestors: Sequence[str]) -> None:
        """403 unless the principal may act on ``unit_id`` (its own scope or a unit above it)."""
        if self.company_wide or unit_id in self.scopes or any(a in self.scopes for a in ancestors):
            return
        raise ApiError(
            403,
            FORBIDDEN,
            f"{self.principal_id} is scoped to {', '.join(self.scopes)}, and unit {unit_id} is outside it; "
            f"this needs a token scoped to {unit_id} or a unit above it",
        )

    def require_company_wide(self, action: str) -> None:
        if not self.company_wide:
            raise ApiError(
                403,
                FORBIDDEN,
                f"{action} concerns the whole company, and {self.principal_id} is scoped to "
                f"{', '.join(self.scopes)}; use a token without org-unit scopes",
            )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def parse_roles(values: Iterable[str]) -> frozenset[Role]:
    """Roles from their names; an unknown name is a ValueError naming the valid ones."""
    roles = set()
    for value in values:
        try:
            roles.add(Role(value.strip().lower()))
        except ValueError:
            valid = ", ".join(r.value for r in Role)
            raise ValueError(f"unknown role {value!r}; use one of {valid}") from None
    if not roles:
        raise ValueError("a token needs at least one role")
    return frozenset(roles)


async def create_token(
    pool: asyncpg.Pool | asyncpg.Connection,
    principal: str,
    roles: Iterable[Role],
    scopes: Sequence[str] = (),
    display_name: str = "",
) -> tuple[str, datetime]:
    """Store a new token for ``principal`` and return it (the only time it is seen) and its creation time."""
    if not principal.strip():
        raise ValueError("a token needs a principal (the actor recorded on its events)")
    token = new_token()
    created = await pool.fetchval(
        _INSERT,
        hash_token(token),
        principal,
        display_name or principal,
        sorted(r.value for r in roles),
        list(scopes),
    )
    return token, created


async def revoke_tokens(pool: asyncpg.Pool | asyncpg.Connection, principal: str) -> int:
    """Revoke every live token of ``principal``; return how many."""
    status = await pool.execute(_REVOKE, principal)
    return int(status.split()[-1])


_LIST = """
SELECT principal, display_name, roles, scopes, created_at, revoked_at
FROM api_tokens
WHERE $1 OR revoked_at IS NULL
ORDER BY principal, created_at
"""


async def list_tokens(
    pool: asyncpg.Pool | asyncpg.Connection, include_revoked: bool = False
) -> list[dict[str, Any]]:
    """Every token's principal, name, roles, scopes and times (JSON-able); never a hash."""
    return [
        {
            **dict(row),
            "created_at": row["created_at"].isoformat(),
            "revoked_at": row["revoked_at"].isoformat() if row["revoked_at"] else None,
        }
        for row in await pool.fetch(_LIST, include_revoked)
    ]


async def find_principal(pool: asyncpg.Pool, token: str) -> Principal | None:
    row = await pool.fetchrow(_LOOKUP, hash_token(token))
    if row is None:
        return None
    return Principal(
        principal_id=row["principal"],
        display_name=row["display_name"],
        roles=frozenset(Role(r) for r in row["roles"] if r in Role._value2member_map_),
        scopes=tuple(row["scopes"]),
    )


_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def authenticated(request: Request) -> Principal:
    """FastAPI dependency: the principal of the request's bearer token, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise ApiError(
            401,
            UNAUTHENTICATED,
            "no API token: send 'Authorization: Bearer <token>' (`planloop token create` makes one)",
            _CHALLENGE,
        )
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401, UNAUTHENTICATED, "the Authorization header must read 'Bearer <token>'", _CHALLENGE
        )
    principal = await find_principal(request.app.state.store.pool, token.strip())
    if principal is None:
        raise ApiError(
            401,
            UNAUTHENTICATED,
            "the API token is unknown or revoked; ask an admin for a new one",
            _CHALLENGE,
        )
    request.state.principal = principal
    return principal
