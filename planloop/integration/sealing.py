"""Shared secrets sealed at rest: the webhook subscriptions' and the inbound sources' HMAC secrets.

Those secrets must stay readable (the sender signs with them, the API checks signatures with them), so they
cannot be hashed like API tokens. They are stored sealed instead: encrypted and authenticated with AES-256-GCM
under a key kept in a file on the API hosts, like the checkpoint signing key, not in the database. Whoever
reads the database, or a backup of it, learns no secret and cannot forge an inbound webhook.

Each sealed value is bound to the row it belongs to (the GCM tag covers a context such as
``inbound_sources:erp``): one copied to another row, or into a stored Idempotency-Key answer that the API
would replay, does not open. A secret in plain text is refused, except once: the secrets an earlier planloop
stored in plain text are sealed at the first start of an API with sealing (``prepare``), and the marker
file ``<key file>.plain-sealed`` says that was done, so plain text planted later is never adopted.

The database records a keyed check value of the key (table sealing_key): an API host whose key file is not
the one the database's secrets are sealed under refuses to start, instead of sealing what the others cannot
open. Requests are fingerprinted (Idempotency-Key) with the secret replaced by ``digest``, a keyed HMAC, so
the stored fingerprint does not let anyone test guesses of a secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import stat
from pathlib import Path
from typing import Final

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from planloop.errors import PlanloopError
from planloop.private_files import create_exclusive, open_to_others

PREFIX: Final = "sealed:v1:"
MARKER_SUFFIX: Final = ".plain-sealed"
_NONCE = 12


class SealingKeyError(PlanloopError):
    """The sealing key cannot be read, made or used, or a stored secret does not open. Its message is for
    the operator (it names files); the API logs it and tells callers only that secrets cannot be opened."""


def source_context(source: str) -> str:
    return f"inbound_sources:{source}"


def subscription_context(subscription_id: object) -> str:
    return f"webhook_subscriptions:{subscription_id}"


def answer_context(principal: str, key: str) -> str:
    return f"idempotency_keys:{principal}:{key}"


class Sealer:
    """Seals and opens shared secrets with the key in ``key_file``.

    The key is read when first needed and again whenever the file is replaced (a restored key takes effect
    without a restart). It is made only by ``prepare`` at the API's start (or ``make_key``), never on the
    way, so a host that lost its file cannot quietly seal under a new key.
    """

    def __init__(self, key_file: Path) -> None:
        self.key_file = key_file
        self._key: bytes | None = None
        self._loaded_from: tuple[int, int] | None = None

    # -- the key ------------------------------------------------------------------------------------------

    @staticmethod
    def make_key(key_file: Path) -> None:
        """Write a new random key to ``key_file`` (mode 0600) unless one is there already."""
        try:
            create_exclusive(key_file, base64.urlsafe_b64encode(os.urandom(32)) + b"\n")
        except OSError as exc:
            raise SealingKeyError(
                f"cannot create the key that seals shared secrets {key_file} ({exc.strerror}); make its "
                "folder writable or point PLANLOOP_SECRETS_KEY_FILE at the key the other API hosts use"
            ) from None

    @property
    def key(self) -> bytes:
        try:
            st = self.key_file.stat()
        except FileNotFoundError:
            raise SealingKeyError(
                f"the key that seals shared secrets {self.key_file} does not exist; restore it (every API "
                "host needs the same file, PLANLOOP_SECRETS_KEY_FILE)"
            ) from None
        except OSError as exc:
            raise SealingKeyError(
                f"cannot read the key that seals shared secrets {self.key_file} ({exc.strerror}); make it "
                "readable by the API's user"
            ) from None
        identity = (st.st_ino, st.st_mtime_ns)
        if self._key is None or identity != self._loaded_from:
            self._key, self._loaded_from = _load(self.key_file, st.st_mode), identity
        return self._key

    def check_value(self) -> str:
        """A keyed value that tells keys apart without revealing them (stored in the database)."""
        return hmac.new(self.key, b"planloop sealing key check", hashlib.sha256).hexdigest()

    # -- sealing ------------------------------------------------------------------------------------------

    def seal(self, secret: str, context: str) -> str:
        """``secret`` sealed for the row named by ``context`` (e.g. ``source_context("erp")``)."""
        nonce = os.urandom(_NONCE)
        sealed = AESGCM(self.key).encrypt(nonce, secret.encode("utf-8"), context.encode("utf-8"))
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, stored: str, context: str) -> str:
        """The secret sealed in ``stored`` for ``context``; SealingKeyError for anything else."""
        if not is_sealed(stored):
            raise SealingKeyError(
                f"the secret of {context} is stored in plain text, which is never used (secrets are sealed; "
                "one in plain text was put there by hand or by an older planloop still running): register it "
                "again through the API"
            )
        try:
            raw = base64.urlsafe_b64decode(stored.removeprefix(PREFIX).encode("ascii"))
            secret = AESGCM(self.key).decrypt(raw[:_NONCE], raw[_NONCE:], context.encode("utf-8"))
            return secret.decode("utf-8")
        except (InvalidTag, ValueError, binascii.Error, UnicodeError):
            raise SealingKeyError(
                f"the secret of {context} does not open under the key {self.key_file}: it was sealed under "
                "another key, or for another row; register it again through the API"
            ) from None

    def digest(self, secret: str) -> str:
        """A keyed HMAC of ``secret``: equal for equal secrets, useless for guessing one without the key."""
        tag = hmac.new(self.key, b"request fingerprint\x00" + secret.encode("utf-8"), hashlib.sha256)
        return "hmac-sha256:" + tag.hexdigest()

    # -- at the API's start -------------------------------------------------------------------------------

    async def prepare(self, pool: asyncpg.Pool) -> int:
        """Make sure this host's key is the database's, making it on a first start; seal, once, the secrets
        an earlier planloop stored in plain text. Returns how many were sealed. SealingKeyError (the API
        does not start) when this host's key is not the one the database's secrets are sealed under."""
        recorded = await pool.fetchval(_CHECK_VALUE)
        if not self.key_file.exists():
            if recorded is not None:
                raise SealingKeyError(
                    f"there is no key at {self.key_file}, but another API host set this database up with "
                    "one: copy the key file of the API host that made it here (PLANLOOP_SECRETS_KEY_FILE); "
                    "a key of this host's own could not open the secrets the others seal"
                )
            self.make_key(self.key_file)
        mine = self.check_value()
        if recorded is None:
            await pool.execute(_RECORD_CHECK_VALUE, mine)
            recorded = await pool.fetchval(_CHECK_VALUE)  # another host may have recorded first
        if recorded != mine:
            raise SealingKeyError(
                f"the key at {self.key_file} is not the one the database's shared secrets are sealed under; "
                "every API host needs the same file (PLANLOOP_SECRETS_KEY_FILE): copy it from the host "
                "that made it"
            )
        marker = self.key_file.with_name(self.key_file.name + MARKER_SUFFIX)
        if marker.exists():
            return 0
        sealed = await self._seal_plain(pool)
        try:
            create_exclusive(marker, b"the secrets stored in plain text before sealing have been sealed\n")
        except OSError as exc:
            raise SealingKeyError(
                f"cannot write {marker} ({exc.strerror}); make its folder writable"
            ) from None
        return sealed

    async def _seal_plain(self, pool: asyncpg.Pool) -> int:
        # Each row is sealed only if it still holds the value read: two API processes starting at once
        # never seal one twice.
        sealed = 0
        for row in await pool.fetch(_PLAIN_SUBSCRIPTIONS):
            value = self.seal(row["secret"], subscription_context(row["id"]))
            sealed += _count(await pool.execute(_SEAL_SUBSCRIPTION, row["id"], value, row["secret"]))
        for row in await pool.fetch(_PLAIN_SOURCES):
            value = self.seal(row["secret"], source_context(row["source"]))
            sealed += _count(await pool.execute(_SEAL_SOURCE, row["source"], value, row["secret"]))
        for row in await pool.fetch(_PLAIN_ANSWERS):
            value = self.seal(row["secret"], answer_context(row["principal"], row["key"]))
            result = await pool.execute(_SEAL_ANSWER, row["principal"], row["key"], value, row["secret"])
            sealed += _count(result)
        return sealed


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)


def _count(status: str) -> int:
    return int(status.split()[-1])  # "UPDATE 1"


def _load(path: Path, mode: int) -> bytes:
    if open_to_others(mode):
        raise SealingKeyError(
            f"the key that seals shared secrets {path} is readable by others (mode {stat.filemode(mode)}); "
            f"run `chmod 600 {path}`"
        )
    try:
        key = base64.urlsafe_b64decode(path.read_bytes().strip())
    except OSError as exc:
        raise SealingKeyError(
            f"cannot read the key that seals shared secrets {path} ({exc.strerror}); make it readable by the "
            "API's user"
        ) from None
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != 32:
        raise SealingKeyError(
            f"{path} is not a key for sealing secrets (32 bytes, url-safe base64); restore the file the "
            "other API hosts use"
        )
    return key


_CHECK_VALUE = "SELECT check_value FROM sealing_key"
_RECORD_CHECK_VALUE = "INSERT INTO sealing_key (check_value) VALUES ($1) ON CONFLICT DO NOTHING"
_PLAIN_SUBSCRIPTIONS = "SELECT id, secret FROM webhook_subscriptions WHERE secret NOT LIKE 'sealed:v1:%'"
_SEAL_SUBSCRIPTION = "UPDATE webhook_subscriptions SET secret = $2 WHERE id = $1 AND secret = $3"
_PLAIN_SOURCES = "SELECT source, secret FROM inbound_sources WHERE secret NOT LIKE 'sealed:v1:%'"
_SEAL_SOURCE = "UPDATE inbound_sources SET secret = $2 WHERE source = $1 AND secret = $3"
_PLAIN_ANSWERS = """
SELECT principal, key, response ->> 'secret' AS secret FROM idempotency_keys
 WHERE jsonb_typeof(response -> 'secret') = 'string' AND response ->> 'secret' NOT LIKE 'sealed:v1:%'
"""
_SEAL_ANSWER = """
UPDATE idempotency_keys SET response = jsonb_set(response, '{secret}', to_jsonb($3::text))
 WHERE principal = $1 AND key = $2 AND response ->> 'secret' = $4
"""
