"""Files that hold keys: created once with mode 0600 even when two processes race, replaced atomically.

The checkpoint signing key (planloop.audit.keys) and the key that seals shared secrets
(planloop.integration.sealing) live in such files on the API's host, away from the database."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path


def create_exclusive(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` unless a file is there already, which is then kept (OSError on failure).

    Two processes creating it at once cannot both win: each writes a private temporary file and links it into
    place, which fails if the file appeared meanwhile; the loser reads the winner's.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _sync_folder(path)  # the new name survives a power loss (what it keys may be committed elsewhere)


def replace_atomically(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None = None) -> None:
    """Write ``data`` to ``path`` atomically and durably: after a crash, the old file or the new.

    ``owner`` (uid, gid) keeps the file its owner's when someone else (root) replaces it."""
    tmp = _temporary(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        if owner is not None and owner != (os.getuid(), os.getgid()):
            os.fchown(fd, *owner)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _sync_folder(path)
    finally:
        tmp.unlink(missing_ok=True)


def _sync_folder(path: Path) -> None:
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _temporary(path: Path) -> Path:
    # Unique per process and per thread: two writers never share a temporary file.
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")


def open_to_others(mode: int) -> bool:
    """Whether a file of ``mode`` (st_mode) can be read or written by anyone but its owner."""
    return bool(mode & (stat.S_IRWXG | stat.S_IRWXO))
