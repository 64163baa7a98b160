"""The checkpoint signing key: an Ed25519 private key in a PEM file readable by its owner only, and the
two files the publisher keeps beside it.

The key lives on the API's host, not in the database, so a database administrator who rewrites history
cannot sign a checkpoint to match. Its public half is published (GET /audit/public-key, and inside every
bundle); its fingerprint, ``ed25519:`` + SHA-256 of the raw 32-byte public key in hex, is the key id every
checkpoint names, and what an auditor compares against the fingerprint they were given out of band.

Beside the key file ``K``, also off the database host:

* ``K.trusted`` (optional, written by whoever rotates the key): the public keys of earlier signing keys, PEM
  blocks one after another. The publisher believes a stored checkpoint only under its own key or one of
  these, never under a key the database holds, which its administrator could have put there.
* ``K.last-checkpoint`` (written by the publisher): the sequence and digest of the last checkpoint it
  signed, so checkpoints deleted from the database, or one inserted after it, are noticed.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from planloop.errors import PlanloopError
from planloop.private_files import create_exclusive, open_to_others, replace_atomically

KEY_PREFIX = "ed25519:"


class SigningKeyError(PlanloopError):
    """A key file that cannot be read, created or used."""


def fingerprint(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return KEY_PREFIX + hashlib.sha256(raw).hexdigest()


def public_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public_pem(text: str | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM; a clear error for anything else."""
    data = text.encode("ascii", "replace") if isinstance(text, str) else text
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise SigningKeyError(
            f"not a PEM public key ({exc}); pass the file GET /audit/public-key serves"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"the public key is {type(key).__name__}, not Ed25519")
    return key


def sign(private_key: Ed25519PrivateKey, message: bytes) -> str:
    return base64.b64encode(private_key.sign(message)).decode("ascii")


def signature_holds(public_key: Ed25519PublicKey, message: bytes, signature: str) -> bool:
    try:
        public_key.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def trusted_file(key_file: Path) -> Path:
    """Where the public keys of earlier signing keys are listed: ``<key file>.trusted``."""
    return key_file.with_name(key_file.name + ".trusted")


def record_file(key_file: Path) -> Path:
    """Where the publisher records the last checkpoint it signed: ``<key file>.last-checkpoint``."""
    return key_file.with_name(key_file.name + ".last-checkpoint")


_PEM_BLOCK = re.compile(r"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----", re.DOTALL)


def load_trusted_keys(path: Path) -> list[Ed25519PublicKey]:
    """The public keys listed in ``path`` (PEM blocks, one after another); none if there is no such file."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise SigningKeyError(f"cannot read the trusted public keys {path} ({exc})") from None
    blocks = _PEM_BLOCK.findall(text)
    if not blocks and text.strip():
        raise SigningKeyError(
            f"{path} holds no PEM public key; list earlier signing keys there as GET /audit/public-key "
            "served them (-----BEGIN PUBLIC KEY----- ...), or remove the file"
        )
    found = []
    for number, block in enumerate(blocks, start=1):
        try:
            found.append(load_public_pem(block))
        except SigningKeyError as exc:
            raise SigningKeyError(f"{path}, key {number}: {exc}") from None
    return found


@dataclass(frozen=True)
class LastSigned:
    """The last checkpoint this publisher signed, as it recorded it beside its key."""

    sequence: int
    digest: str


def read_last_signed(path: Path) -> LastSigned | None:
    """The publisher's record in ``path``; None when it has not recorded a checkpoint yet."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        record = LastSigned(data["sequence"], data["digest"])
        if not isinstance(record.sequence, int) or not isinstance(record.digest, str):
            raise TypeError("sequence or digest of the wrong type")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SigningKeyError(
            f"the record of the last signed checkpoint {path} is unreadable ({exc}); restore it from a "
            "backup, or remove it to have the publisher adopt the database's latest checkpoint (only once "
            "you have checked that checkpoint, e.g. against one an auditor kept)"
        ) from None
    return record


def write_last_signed(path: Path, record: LastSigned) -> None:
    """Replace the record in ``path`` atomically: a crash leaves the old record or the new, never half."""
    text = json.dumps({"sequence": record.sequence, "digest": record.digest}) + "\n"
    try:
        replace_atomically(path, text.encode("utf-8"), 0o600)
    except OSError as exc:
        raise SigningKeyError(
            f"cannot write the record of the last signed checkpoint {path} ({exc.strerror}); make its "
            "folder writable"
        ) from None


@dataclass(frozen=True)
class Rotation:
    retired: str  # the old key's fingerprint, now listed in <key file>.trusted
    signing: str  # the new key's fingerprint


def rotate_signing_key(path: Path) -> Rotation:
    """Replace the signing key in ``path`` with a new one, listing the old public key in ``<path>.trusted``.

    The old public key is listed before the new key takes its place: a crash in between leaves the old key
    signing and trusted twice over (harmless; rotating again finishes), never a key whose checkpoints
    nobody trusts. Checkpoints the old key signed keep verifying under ``.trusted``; its private half is
    gone once the new key is in place. A publisher that is running picks the new key up at its next
    checkpoint (it notices the file changed). Two rotations at once are serialised by a lock file.
    """
    trusted = trusted_file(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(path.with_name(path.name + ".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    except OSError as exc:
        raise SigningKeyError(
            f"cannot rotate the signing key {path} ({exc.strerror}); run it as the API's user, on the "
            "host where the key lives (PLANLOOP_AUDIT_KEY_FILE)"
        ) from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = load_signing_key(path)
        if old is None:
            raise SigningKeyError(
                f"there is no checkpoint signing key at {path} to rotate; the first checkpoint creates "
                "one (or check PLANLOOP_AUDIT_KEY_FILE and PLANLOOP_DATA_DIR)"
            )
        retired = old.public_key()
        st = path.stat()
        owner = (st.st_uid, st.st_gid)  # the API's user, also when root rotates
        listed = {fingerprint(k) for k in load_trusted_keys(trusted)}  # refuses a damaged file first
        new = Ed25519PrivateKey.generate()
        pem = new.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            if fingerprint(retired) not in listed:
                text = trusted.read_text(encoding="ascii") if trusted.exists() else ""
                if text and not text.endswith("\n"):
                    text += "\n"
                replace_atomically(trusted, (text + public_pem(retired)).encode("ascii"), 0o644, owner)
            replace_atomically(path, pem, 0o600, owner)
        except OSError as exc:
            raise SigningKeyError(
                f"cannot rotate the signing key {path} ({exc.strerror}); run it as the key's owner (or "
                "root), with the key's folder writable"
            ) from None
        return Rotation(retired=fingerprint(retired), signing=fingerprint(new.public_key()))
    finally:
        os.close(lock)  # releases the lock


def load_signing_key(path: Path) -> Ed25519PrivateKey | None:
    """The private key in ``path``, or None when there is none yet (nothing is created)."""
    if not path.exists():
        return None
    return _load(path)


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """The private key in ``path``; on first use a new key is generated there with mode 0600.

    Two processes starting at once cannot both create one: the key is written to a private temporary
    file and linked into place, which fails if the file appeared meanwhile; the loser reads the winner's.
    """
    if not path.exists():
        _create(path)
    return _load(path)


def _create(path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        create_exclusive(path, pem)
    except OSError as exc:
        raise SigningKeyError(
            f"cannot create the checkpoint signing key {path} ({exc.strerror}); "
            "make its folder writable or point PLANLOOP_AUDIT_KEY_FILE at an existing key"
        ) from None


def _load(path: Path) -> Ed25519PrivateKey:
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read the checkpoint signing key {path} ({exc.strerror})") from None
    if open_to_others(mode):
        raise SigningKeyError(
            f"the checkpoint signing key {path} is readable by others (mode {stat.filemode(mode)}); "
            f"run `chmod 600 {path}`"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(
            f"{path} is not an unencrypted PEM private key ({exc}); "
            "point PLANLOOP_AUDIT_KEY_FILE at an Ed25519 key, or remove the file to have one generated"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} holds a {type(key).__name__}; checkpoints are signed with Ed25519")
    return key
