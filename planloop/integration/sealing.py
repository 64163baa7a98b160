"""Shared secrets sealed at rest: the webhook subscriptions' and the inbound sources' HMAC secrets.

Those secrets must stay readable (the sender signs with them, the API checks signatures with them), so they
cannot be hashed like API tokens. They are stored sealed instead: encrypted and authenticated (Fernet:
AES-128-CBC and HMAC-SHA256) under a key kept in a file on the API's host, like the checkpoint signing key,
not in the database. Whoever reads the database, or a backup of it, learns no secret and cannot forge an
inbound webhook.

A sealed value reads ``sealed:v1:<token>``. A value without the prefix is one stored before sealing was
built: it is used as it is, and sealed when the API next starts (``seal_stored_secrets``).
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Final

import asyncpg
from cryptography.fernet import Fernet, InvalidToken

from planloop.errors import PlanloopError
from planloop.private_files import create_exclusive, open_to_others

PREFIX: Final = "sealed:v1:"


class SealingKeyError(PlanloopError):
    """The sealing key cannot be read or made, or a secret was sealed under another key."""


class Sealer:
    """Seals and opens shared secrets with the key in ``key_file`` (made with mode 0600 on first use)."""

    def __init__(self, key_file: Path) -> None:
        self.key_file = key_file
        self._fernet: Fernet | None = None

    @property
    def fernet(self) -> Fernet:
        if self._fernet is None:
            if not self.key_file.exists():
                try:
                    create_exclusive(self.key_file, Fernet.generate_key() + b"\n")
                except OSError as exc:
                    raise SealingKeyError(
                        f"cannot create the key that seals shared secrets {self.key_file} ({exc.strerror}); "
                        "make its folder writable or point PLANLOOP_SECRETS_KEY_FILE at an existing key"
                    ) from None
            self._fernet = _load(self.key_file)
        return self._fernet

    def seal(self, secret: str) -> str:
        return PREFIX + self.fernet.encrypt(secret.encode("utf-8")).decode("ascii")

    def open(self, stored: str) -> str:
        """The secret in ``stored``: sealed by this key, or (stored before sealing) as it is."""
        if not is_sealed(stored):
            return stored
        try:
            return self.fernet.decrypt(stored.removeprefix(PREFIX).encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise SealingKeyError(
                f"a stored secret was sealed under another key than {self.key_file}; every API host must "
                "use the same PLANLOOP_SECRETS_KEY_FILE (restore the key, or register the secret again)"
            ) from None


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)


def _load(path: Path) -> Fernet:
    try:
        mode = path.stat().st_mode
        data = path.read_bytes().strip()
    except OSError as exc:
        raise SealingKeyError(
            f"cannot read the key that seals shared secrets {path} ({exc.strerror})"
        ) from None
    if open_to_others(mode):
        raise SealingKeyError(
            f"the key that seals shared secrets {path} is readable by others (mode {stat.filemode(mode)}); "
            f"run `chmod 600 {path}`"
        )
    try:
        return Fernet(data)
    except ValueError:
        raise SealingKeyError(
            f"{path} is not a key for sealing secrets (32 url-safe base64-encoded bytes); restore it, or "
            "remove it to have one made (secrets sealed under the old key must then be registered again)"
        ) from None


# Rows stored before sealing was built. Each is sealed only if it still holds the value read, so two API
# processes starting at once never seal one twice.
_PLAIN = {
    "webhook_subscriptions": "SELECT id, secret FROM webhook_subscriptions WHERE secret NOT LIKE 'sealed:%'",
    "inbound_sources": "SELECT source AS id, secret FROM inbound_sources WHERE secret NOT LIKE 'sealed:%'",
}
_SEAL = {
    "webhook_subscriptions": "UPDATE webhook_subscriptions SET secret = $2 WHERE id = $1 AND secret = $3",
    "inbound_sources": "UPDATE inbound_sources SET secret = $2 WHERE source = $1 AND secret = $3",
}
_PLAIN_ANSWERS = """
SELECT principal, key, response ->> 'secret' AS secret FROM idempotency_keys
 WHERE jsonb_typeof(response -> 'secret') = 'string' AND response ->> 'secret' NOT LIKE 'sealed:%'
"""
_SEAL_ANSWER = """
UPDATE idempotency_keys SET response = jsonb_set(response, '{secret}', to_jsonb($3::text))
 WHERE principal = $1 AND key = $2 AND response ->> 'secret' = $4
"""


async def seal_stored_secrets(pool: asyncpg.Pool, sealer: Sealer) -> int:
    """Seal every secret still stored in plain text (subscriptions, sources, the stored answers of their
    Idempotency-Keys); return how many were sealed."""
    sealed = 0
    for table, select in _PLAIN.items():
        for row in await pool.fetch(select):
            result = await pool.execute(_SEAL[table], row["id"], sealer.seal(row["secret"]), row["secret"])
            sealed += int(result.split()[-1])
    for row in await pool.fetch(_PLAIN_ANSWERS):
        secret = row["secret"]
        result = await pool.execute(_SEAL_ANSWER, row["principal"], row["key"], sealer.seal(secret), secret)
        sealed += int(result.split()[-1])
    return sealed
