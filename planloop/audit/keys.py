"""The checkpoint signing key: an Ed25519 private key in a PEM file readable by its owner only.

The key lives on the API's host, not in the database, so a database administrator who rewrites history
cannot sign a checkpoint to match. Its public half is published (GET /audit/public-key, and inside every
bundle); its fingerprint, ``ed25519:`` + SHA-256 of the raw 32-byte public key in hex, is the key id every
checkpoint names, and what an auditor compares against the fingerprint they were given out of band.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from planloop.errors import PlanloopError

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
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
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
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
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
