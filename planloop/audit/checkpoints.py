"""Signed checkpoints of the event store, and the proof that history since a kept one was only appended to.

A checkpoint is a small JSON document, signed with Ed25519, that commits to every stream's head (stream id,
version, hash of the event at that version) through a Merkle root over the heads sorted by stream id, plus
its sequence number, time, totals, the previous checkpoint's digest (checkpoints chain too) and the id of
the signing key. It is taken in one snapshot of the store (a repeatable-read transaction), and before it is
signed the store must extend the checkpoint before it: every earlier head still there with its hash, and
every event since chained onto it. A store that does not is refused a checkpoint, so a signature never
blesses a rewrite.

Why this catches what plain chain verification cannot: a database administrator may switch the append-only
trigger off and rewrite a stream *consistently*, recomputing every digest and hash; the chain then verifies.
But the rewritten head hash no longer matches the hash a signed checkpoint recorded for that version, and
nobody without the key (a file on the API's host, not in the database) can sign a new one.

Nor can the administrator make the publisher sign over a rewrite by changing the checkpoints themselves: a
stored checkpoint counts only under a key trusted from outside the database (the signing key, or an earlier
one listed beside it), so a key of their own inserted into ``audit_keys`` proves nothing; and the publisher
keeps the sequence and digest of the last checkpoint it signed beside its key, so deleting checkpoints (or
all of them, to start again at 1) or putting a forged one after its last is refused, not signed over.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from eventstore import EventStore, jsoncodec
from eventstore.errors import InvalidEventError
from eventstore.types import ChainBreak
from planloop.errors import PlanloopError

from . import keys
from .proofs import ChainEvent, StreamHead, first_break, inclusion_path, merkle_root

FORMAT: Final = "planloop-checkpoint"
FORMAT_VERSION: Final = 1

#: Session advisory lock every publisher takes, so two never number a checkpoint alike ("auditckp").
PUBLISH_LOCK: Final = 0x6175646974636B70
_LOCK = "SELECT pg_advisory_lock($1)"
_UNLOCK = "SELECT pg_advisory_unlock($1)"

_HEADS = """
SELECT s.stream_id, s.version, s.last_hash, e.hash AS event_hash
  FROM streams s
  LEFT JOIN events e ON e.stream_id = s.stream_id AND e.version = s.version
 ORDER BY s.stream_id
"""
_LATEST = "SELECT sequence, document FROM audit_checkpoints ORDER BY sequence DESC LIMIT 1"
_GET = "SELECT sequence, document FROM audit_checkpoints WHERE sequence = $1"
_LIST = """
SELECT sequence, document FROM audit_checkpoints
 WHERE ($1::bigint IS NULL OR sequence < $1)
 ORDER BY sequence DESC
 LIMIT $2
"""
_HEADS_AT = """
SELECT DISTINCT ON (stream_id) stream_id, version, head_hash
  FROM audit_checkpoint_heads
 WHERE sequence <= $1
 ORDER BY stream_id, sequence DESC
"""
_ANCHORS = """
SELECT sequence, version, head_hash
  FROM audit_checkpoint_heads
 WHERE stream_id = $1
 ORDER BY version, sequence
"""
# The events now at the versions a checkpoint recorded (NULL where the event is gone).
_EVENTS_AT = """
SELECT h.stream_id, h.version, h.head_hash, e.hash AS now_hash, e.event_id, e.position
  FROM unnest($1::text[], $2::bigint[], $3::text[]) AS h (stream_id, version, head_hash)
  LEFT JOIN events e ON e.stream_id = h.stream_id AND e.version = h.version
 ORDER BY h.stream_id
"""
_EVENTS_AFTER = """
SELECT position, stream_id, version, event_id, type, schema_version, data::text AS data,
       metadata::text AS metadata, recorded_at, prev_hash, hash
  FROM events
 WHERE stream_id = $1 AND version > $2
 ORDER BY version, position
"""
_INSERT_KEY = "INSERT INTO audit_keys (key_id, public_key) VALUES ($1, $2) ON CONFLICT (key_id) DO NOTHING"
_INSERT_CHECKPOINT = """
INSERT INTO audit_checkpoints (sequence, published_at, digest, root, streams, events, key_id, document)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""
_INSERT_HEADS = """
INSERT INTO audit_checkpoint_heads (sequence, stream_id, version, head_hash)
SELECT $1, h.stream_id, h.version, h.head_hash
  FROM unnest($2::text[], $3::bigint[], $4::text[]) AS h (stream_id, version, head_hash)
"""


class CheckpointError(PlanloopError):
    """A checkpoint document that is malformed, or that does not verify."""


class CheckpointRefused(PlanloopError):
    """The store does not extend its last checkpoint, so no new one is signed."""

    def __init__(self, problems: Sequence[ChainBreak | str]) -> None:
        self.problems = list(problems)
        shown = "; ".join(p if isinstance(p, str) else describe_break(p) for p in self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(
            f"no checkpoint signed: the store does not extend the last checkpoint: {shown}{more}; "
            "run `planloop audit verify-store` and investigate before publishing again"
        )


def describe_break(found: ChainBreak) -> str:
    at = f" (event {found.event_id})" if found.event_id else ""
    return f"{found.stream_id} version {found.version}{at}: {found.reason}"


def break_json(found: ChainBreak) -> dict[str, Any]:
    return {
        "stream_id": found.stream_id,
        "version": found.version,
        "event_id": str(found.event_id) if found.event_id else None,
        "position": found.position,
        "reason": found.reason,
    }


_MAX_BIGINT: Final = 2**63 - 1
#: The signed fields besides format and version, and what each must be.
_FIELDS: Final = {
    "sequence": "count",
    "published_at": "text",
    "root": "text",
    "streams": "count",
    "events": "count",
    "previous": "text",
    "key_id": "text",
}


def _is(value: Any, kind: str) -> bool:
    if kind == "text":
        return isinstance(value, str)
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_BIGINT


# -- the signed document ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint's signed fields (``body``) and the Ed25519 signature over their canonical JSON."""

    body: dict[str, Any]
    signature: str

    @property
    def message(self) -> bytes:
        return jsoncodec.canonical(self.body).encode("utf-8")

    @property
    def digest(self) -> str:
        """SHA-256 of the signed bytes: what the next checkpoint names as its previous."""
        return hashlib.sha256(self.message).hexdigest()

    @property
    def sequence(self) -> int:
        return int(self.body["sequence"])

    @property
    def root(self) -> str:
        return str(self.body["root"])

    @property
    def key_id(self) -> str:
        return str(self.body["key_id"])

    def document(self) -> dict[str, Any]:
        """The document to keep or export: the signed fields, their digest and the signature."""
        return {"checkpoint": self.body, "digest": self.digest, "signature": self.signature}

    def text(self) -> str:
        return json.dumps(self.document(), sort_keys=True)

    @classmethod
    def from_document(cls, document: Any) -> SignedCheckpoint:
        """Read a document as ``document()`` wrote it; a CheckpointError says what is missing."""
        if not isinstance(document, dict) or not isinstance(document.get("checkpoint"), dict):
            raise CheckpointError(
                "not a checkpoint document: expected an object with 'checkpoint', 'digest' and 'signature' "
                "(as GET /audit/checkpoints/latest answers)"
            )
        body = document["checkpoint"]
        if body.get("format") != FORMAT or body.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(
                f"not a {FORMAT} document of version {FORMAT_VERSION} "
                f"(format {body.get('format')!r}, version {body.get('format_version')!r})"
            )
        wrong = [name for name, kind in _FIELDS.items() if not _is(body.get(name), kind)]
        if wrong or not isinstance(document.get("signature"), str):
            raise CheckpointError(
                f"the checkpoint's fields {', '.join(wrong or ['signature'])} are missing or malformed: "
                "pass the document unchanged, as GET /audit/checkpoints/latest answered it"
            )
        checkpoint = cls(body, document["signature"])
        try:
            checkpoint.message  # noqa: B018 - a value canonical JSON cannot hold is refused here
        except InvalidEventError as exc:
            raise CheckpointError(f"the checkpoint holds a value that is not JSON ({exc})") from None
        if "digest" in document and document["digest"] != checkpoint.digest:
            raise CheckpointError(
                f"the document's digest {document['digest']} is not the digest of its checkpoint "
                f"({checkpoint.digest}): the checkpoint was changed"
            )
        return checkpoint

    @classmethod
    def parse(cls, text: str | bytes) -> SignedCheckpoint:
        try:
            return cls.from_document(json.loads(text))
        except ValueError as exc:
            raise CheckpointError(f"the checkpoint is not JSON ({exc})") from None

    def verify(self, public_key: Ed25519PublicKey) -> None:
        """Raise CheckpointError unless this checkpoint is signed by ``public_key`` and names it."""
        if keys.fingerprint(public_key) != self.key_id:
            raise CheckpointError(
                f"checkpoint {self.sequence} names key {self.key_id}, not {keys.fingerprint(public_key)}"
            )
        if not keys.signature_holds(public_key, self.message, self.signature):
            raise CheckpointError(
                f"the signature of checkpoint {self.sequence} does not hold: its fields were changed "
                "after signing, or it was not signed by this key"
            )


@dataclass(frozen=True)
class Inclusion:
    """The proof that a stream's head is leaf ``index`` of checkpoint ``sequence``'s tree."""

    sequence: int
    head: StreamHead
    index: int
    tree_size: int
    path: list[str]

    def as_json(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "stream_id": self.head.stream_id,
            "version": self.head.version,
            "head_hash": self.head.head_hash,
            "leaf_index": self.index,
            "tree_size": self.tree_size,
            "path": self.path,
        }


@dataclass
class ConsistencyReport:
    """Whether the store extends a kept checkpoint: every head it recorded still there with its hash, and
    every stream's chain intact. ``rewrites`` pins each rewritten stream to the first event that may differ.
    """

    sequence: int
    digest: str
    key_id: str
    latest_sequence: int | None = None
    streams_checked: int = 0
    events_checked: int = 0
    problems: list[str] = field(default_factory=list)
    rewrites: list[ChainBreak] = field(default_factory=list)
    breaks: list[ChainBreak] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.problems or self.rewrites or self.breaks)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "sequence": self.sequence,
            "digest": self.digest,
            "key_id": self.key_id,
            "latest_sequence": self.latest_sequence,
            "streams_checked": self.streams_checked,
            "events_checked": self.events_checked,
            "problems": self.problems,
            "rewrites": [break_json(r) for r in self.rewrites],
            "breaks": [break_json(b) for b in self.breaks],
        }


def _chain_event(row: asyncpg.Record) -> ChainEvent:
    return ChainEvent(
        stream_id=row["stream_id"],
        version=row["version"],
        event_id=row["event_id"],
        type=row["type"],
        schema_version=row["schema_version"],
        data=jsoncodec.loads(row["data"]),
        metadata=jsoncodec.loads(row["metadata"]),
        recorded_at=row["recorded_at"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
        position=row["position"],
    )


def _columns(heads: Sequence[StreamHead]) -> tuple[list[str], list[int], list[str]]:
    return [h.stream_id for h in heads], [h.version for h in heads], [h.head_hash for h in heads]


def _stored(row: asyncpg.Record | None) -> SignedCheckpoint | None:
    """The checkpoint in a row of audit_checkpoints (None for no row); a CheckpointError naming the row
    when its document cannot be read or is another checkpoint's."""
    if row is None:
        return None
    try:
        checkpoint = SignedCheckpoint.parse(row["document"])
    except CheckpointError as exc:
        raise CheckpointError(
            f"the stored checkpoint {row['sequence']} cannot be read ({exc}): its record in the database "
            "was altered"
        ) from None
    if checkpoint.sequence != row["sequence"]:
        raise CheckpointError(
            f"the stored checkpoint {row['sequence']} holds the document of checkpoint "
            f"{checkpoint.sequence}: its record in the database was altered"
        )
    return checkpoint


async def _release_lock(conn: asyncpg.Connection) -> None:
    """Release the publish lock, or close the connection when that fails: the store's pool does not reset a
    session on release (eventstore's _keep_session), so a connection still holding the lock must never go
    back to it, where it would block every later publish."""
    try:
        await conn.fetchval(_UNLOCK, PUBLISH_LOCK)
    except BaseException as exc:
        conn.terminate()  # the server drops the session's locks with it
        if not isinstance(exc, Exception):
            raise


# -- the store's checkpoints ---------------------------------------------------------------------------------


class Checkpoints:
    """Publishing, reading and checking the signed checkpoints of one store.

    The signing key is the PEM file ``key_file``, read only when first needed and created only when a
    checkpoint is first published. A stored checkpoint is believed only under a key trusted from outside the
    database: the signing key, or an earlier one listed in ``<key file>.trusted``. The publisher records the
    last checkpoint it signed in ``<key file>.last-checkpoint`` and signs nothing while the database's latest
    checkpoint disagrees with that record (see ``keys``).
    """

    def __init__(self, store: EventStore, key_file: Path) -> None:
        self.store = store
        self.key_file = key_file
        self._key: Ed25519PrivateKey | None = None
        self._loaded_from: tuple[int, int] | None = None  # the key file's inode and mtime when read

    def _key_file_identity(self) -> tuple[int, int] | None:
        """The key file's inode and mtime: they change when `planloop audit rotate-key` replaces it."""
        try:
            st = self.key_file.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns)

    @property
    def signing_key(self) -> Ed25519PrivateKey:
        """The private key, generated on first use: only publishing asks for it. Read again when the file
        was replaced, so a rotated key signs from the next checkpoint on without a restart."""
        identity = self._key_file_identity()  # before reading: a file replaced meanwhile is read again
        if self._key is None:
            self._key = keys.load_or_create_signing_key(self.key_file)
            self._loaded_from = identity
        elif identity is None:
            # Gone after it was read: a new key would sign what nothing trusts, so none is made here.
            raise keys.SigningKeyError(
                f"the checkpoint signing key {self.key_file} was removed while the API ran; restore it (a "
                "new key is made only on first use; to replace the key, run `planloop audit rotate-key`)"
            )
        elif identity != self._loaded_from:
            self._key = keys.load_signing_key(self.key_file) or self._key
            self._loaded_from = identity
        return self._key

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.signing_key.public_key()

    @property
    def key_id(self) -> str:
        return keys.fingerprint(self.public_key)

    @property
    def record_file(self) -> Path:
        return keys.record_file(self.key_file)

    def existing_public_key(self) -> Ed25519PublicKey | None:
        """The signing key's public half, or None while no key exists (reading never creates one)."""
        identity = self._key_file_identity()
        if identity is not None and (self._key is None or identity != self._loaded_from):
            self._key = keys.load_signing_key(self.key_file)
            self._loaded_from = identity
        return self._key.public_key() if self._key is not None else None

    def trusted_keys(self) -> dict[str, Ed25519PublicKey]:
        """The keys a stored checkpoint may be signed by, by fingerprint: the signing key and the earlier
        ones in ``<key file>.trusted``. Never a key from the database, whose administrator could add one."""
        # The key first, then the list: a rotation writes them in the other order (the old key listed before
        # the new takes its place), so a rotation between the two reads never leaves the old key untrusted.
        own = self.existing_public_key()
        found = {keys.fingerprint(k): k for k in keys.load_trusted_keys(keys.trusted_file(self.key_file))}
        if own is not None:
            found[keys.fingerprint(own)] = own
        return found

    def verified(
        self, checkpoint: SignedCheckpoint, trusted: Mapping[str, Ed25519PublicKey] | None = None
    ) -> None:
        """Raise CheckpointError unless ``checkpoint``'s signature holds under a trusted key it names."""
        key = (self.trusted_keys() if trusted is None else trusted).get(checkpoint.key_id)
        if key is None:
            raise CheckpointError(
                f"checkpoint {checkpoint.sequence} is signed by key {checkpoint.key_id}, which this API does "
                "not trust (only its signing key and the earlier keys listed beside it count, never a key "
                "found in the database)"
            )
        checkpoint.verify(key)

    # -- reading --------------------------------------------------------------------------------------------

    async def latest(self) -> SignedCheckpoint | None:
        return _stored(await self.store.pool.fetchrow(_LATEST))

    async def get(self, sequence: int) -> SignedCheckpoint | None:
        return _stored(await self.store.pool.fetchrow(_GET, sequence))

    async def list(self, limit: int = 50, before: int | None = None) -> list[SignedCheckpoint]:
        rows = await self.store.pool.fetch(_LIST, before, limit)
        return [c for c in map(_stored, rows) if c is not None]

    async def heads_at(
        self, checkpoint: SignedCheckpoint, conn: asyncpg.Connection | None = None
    ) -> list[StreamHead]:
        """The heads behind ``checkpoint``'s root, as stored; a CheckpointError if they no longer give it."""
        rows = await (conn or self.store.pool).fetch(_HEADS_AT, checkpoint.sequence)
        heads = [StreamHead(r["stream_id"], r["version"], r["head_hash"]) for r in rows]
        if merkle_root(heads) != checkpoint.root:
            raise CheckpointError(
                f"the stream heads stored for checkpoint {checkpoint.sequence} do not give its signed root: "
                "the checkpoint's records in the database were altered"
            )
        return heads

    async def inclusion(self, checkpoint: SignedCheckpoint, stream_id: str) -> Inclusion | None:
        """The proof that ``stream_id``'s head is in ``checkpoint``; None if the stream came later."""
        heads = await self.heads_at(checkpoint)
        index = next((i for i, h in enumerate(heads) if h.stream_id == stream_id), None)
        if index is None:
            return None
        return Inclusion(checkpoint.sequence, heads[index], index, len(heads), inclusion_path(heads, index))

    # -- the publisher's own record -------------------------------------------------------------------------

    def against_record(self, latest: SignedCheckpoint | None, record: keys.LastSigned | None) -> str | None:
        """What is wrong with the database's latest checkpoint, measured against the last one this publisher
        signed (its record beside the key); None when the database is where the record says.

        No record means a first publish with this key (or a record removed on purpose): the latest checkpoint
        is then only checked under the trusted keys. The one disagreement accepted is the direct successor of
        the recorded checkpoint, signed by this publisher's key (or an earlier one of its, listed as trusted)
        and naming it as previous: a publish whose database commit succeeded and whose record was not written
        (a crash in between).
        """
        if record is None:
            return None
        signed = (
            f"this publisher last signed checkpoint {record.sequence} (digest {record.digest[:16]}…, "
            f"recorded in {self.record_file})"
        )
        fix = (
            "; find out who changed the checkpoint tables before publishing again. Once the database is "
            f"known to be right, remove {self.record_file} and the publisher adopts its latest checkpoint"
        )
        if latest is None:
            return f"the database holds no checkpoint, but {signed}: the checkpoint tables were emptied{fix}"
        if latest.sequence < record.sequence:
            return (
                f"the database's latest checkpoint is {latest.sequence}, but {signed}: the checkpoints after "
                f"{latest.sequence} were removed{fix}"
            )
        if latest.sequence == record.sequence:
            if latest.digest == record.digest:
                return None
            return (
                f"the database's checkpoint {latest.sequence} has digest {latest.digest[:16]}…, but "
                f"{signed}: it was replaced{fix}"
            )
        # Signed by this publisher's key, or by its key before a rotation (`<key file>.trusted`): a crash
        # between the commit and the record, then a rotation, must not look like tampering.
        signer = self.trusted_keys().get(latest.key_id)
        if (
            latest.sequence == record.sequence + 1
            and latest.body["previous"] == record.digest
            and signer is not None
        ):
            with contextlib.suppress(CheckpointError):
                latest.verify(signer)
                return None
        return (
            f"the database's latest checkpoint is {latest.sequence} (signed by key {latest.key_id}), but "
            f"{signed}; only its successor, signed by this publisher and naming it as previous, may follow "
            f"it: checkpoints were inserted (an API host that publishes with a copy of this key must share "
            f"its record){fix}"
        )

    def _read_record(self) -> keys.LastSigned | None:
        return keys.read_last_signed(self.record_file)

    def _write_record(self, checkpoint: SignedCheckpoint) -> None:
        try:
            keys.write_last_signed(self.record_file, keys.LastSigned(checkpoint.sequence, checkpoint.digest))
        except keys.SigningKeyError as exc:
            raise keys.SigningKeyError(
                f"checkpoint {checkpoint.sequence} is in the database, but {exc}; the next publish accepts "
                "it as the successor of the record, the one after refuses until the record is written"
            ) from None

    # -- publishing -----------------------------------------------------------------------------------------

    async def publish(self, now: datetime | None = None) -> tuple[SignedCheckpoint | None, bool]:
        """Sign a checkpoint of the store as it is now, if it changed since the last one.

        Returns the latest checkpoint and whether it is new (None, False for a store with no events and no
        checkpoint). Raises CheckpointRefused when the store does not extend the last checkpoint, or the
        database's checkpoints are not those this publisher signed.
        """
        key = self.signing_key
        async with self.store.pool.acquire() as conn:
            try:
                # A session lock, not a transaction's: taken before the transaction, so its snapshot (made
                # by its first statement) sees every checkpoint published before; and held until the record
                # is written after the commit, so two publishers never write their records out of order.
                await conn.execute(_LOCK, PUBLISH_LOCK)
                record = self._read_record()
                async with conn.transaction(isolation="repeatable_read"):
                    checkpoint, new = await self._publish(conn, key, now, record)
                signed = keys.LastSigned(checkpoint.sequence, checkpoint.digest) if checkpoint else None
                if checkpoint is not None and signed != record:
                    self._write_record(checkpoint)
                return checkpoint, new
            finally:
                await _release_lock(conn)

    async def _publish(
        self,
        conn: asyncpg.Connection,
        key: Ed25519PrivateKey,
        now: datetime | None,
        record: keys.LastSigned | None,
    ) -> tuple[SignedCheckpoint | None, bool]:
        previous: SignedCheckpoint | None = None
        previous_heads: list[StreamHead] = []
        try:
            previous = _stored(await conn.fetchrow(_LATEST))
            problem = self.against_record(previous, record)
            if problem is not None:
                raise CheckpointRefused([problem])
            if previous is not None:
                self.verified(previous)
                previous_heads = await self.heads_at(previous, conn)
        except CheckpointError as exc:
            raise CheckpointRefused([str(exc)]) from None
        rows = await conn.fetch(_HEADS)
        heads = [StreamHead(r["stream_id"], r["version"], r["last_hash"]) for r in rows]
        problems: list[ChainBreak | str] = [
            ChainBreak(
                r["stream_id"],
                r["version"],
                None,
                None,
                "the stream head names a version whose event is missing or has another hash",
            )
            for r in rows
            if r["event_hash"] != r["last_hash"]
        ]
        now_known = {h.stream_id: h for h in heads}
        before = {h.stream_id: h for h in previous_heads}
        problems += [
            f"stream {sid} (version {h.version} at checkpoint {previous.sequence}) has no head any more"
            for sid, h in before.items()
            if sid not in now_known and previous is not None
        ]
        problems += await self._rewritten(conn, previous_heads)
        changed = [h for h in heads if before.get(h.stream_id) != h]
        for head in changed:
            since = before.get(head.stream_id)
            after_version, after_hash = (since.version, since.head_hash) if since else (0, "")
            events = [_chain_event(r) for r in await conn.fetch(_EVENTS_AFTER, head.stream_id, after_version)]
            found = first_break(head.stream_id, events, after_version=after_version, after_hash=after_hash)
            if found is None and (not events or events[-1].version != head.version):
                found = ChainBreak(head.stream_id, head.version, None, None, "the events end before the head")
            if found is not None:
                problems.append(found)
        if problems:
            raise CheckpointRefused(problems)
        root = merkle_root(heads)
        if (previous is not None and previous.root == root) or (previous is None and not heads):
            return previous, False
        moment = now or datetime.now(UTC)
        body = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "sequence": previous.sequence + 1 if previous else 1,
            "published_at": jsoncodec.utc_stamp(moment),
            "streams": len(heads),
            "events": sum(h.version for h in heads),
            "root": root,
            "previous": previous.digest if previous else "",
            "key_id": keys.fingerprint(key.public_key()),
        }
        checkpoint = SignedCheckpoint(body, keys.sign(key, jsoncodec.canonical(body).encode("utf-8")))
        # The key is stored for whoever reads the tables; nothing here believes a key because it is stored.
        await conn.execute(_INSERT_KEY, checkpoint.key_id, keys.public_pem(key.public_key()))
        await conn.execute(
            _INSERT_CHECKPOINT,
            checkpoint.sequence,
            moment,
            checkpoint.digest,
            root,
            body["streams"],
            body["events"],
            checkpoint.key_id,
            checkpoint.text(),
        )
        await conn.execute(_INSERT_HEADS, checkpoint.sequence, *_columns(changed))
        return checkpoint, True

    async def _rewritten(self, conn: asyncpg.Connection, heads: Sequence[StreamHead]) -> list[ChainBreak]:
        """The streams whose event at a recorded head's version is gone or hashes otherwise now, each
        pinned as closely as every signed checkpoint's record of the stream allows."""
        if not heads:
            return []
        rows = await conn.fetch(_EVENTS_AT, *_columns(heads))
        rewritten = dict.fromkeys(r["stream_id"] for r in rows if r["now_hash"] != r["head_hash"])
        if not rewritten:
            return []
        trusted = self.trusted_keys()
        return [await self._pin(conn, stream_id, trusted) for stream_id in rewritten]

    async def _pin(
        self, conn: asyncpg.Connection, stream_id: str, trusted: Mapping[str, Ed25519PublicKey]
    ) -> ChainBreak:
        """The first event of a rewritten stream that may differ from what the checkpoints recorded.

        Every checkpoint whose head row for the stream still hashes as recorded bounds the rewrite from
        below; the first that does not, from above. Only rows of checkpoints that are still stored, readable
        and signed by a trusted key count.
        """
        anchors = []
        signed: dict[int, bool] = {}
        for row in await conn.fetch(_ANCHORS, stream_id):
            if row["sequence"] not in signed:
                try:
                    checkpoint = _stored(await conn.fetchrow(_GET, row["sequence"]))
                    if checkpoint is not None:
                        self.verified(checkpoint, trusted)
                    signed[row["sequence"]] = checkpoint is not None
                except CheckpointError:
                    signed[row["sequence"]] = False
            if signed[row["sequence"]]:
                anchors.append(StreamHead(stream_id, row["version"], row["head_hash"]))
        rows = await conn.fetch(_EVENTS_AT, *_columns(anchors)) if anchors else []
        now = {r["version"]: r for r in rows}
        good = 0
        bad: StreamHead | None = None
        for anchor in anchors:
            if now[anchor.version]["now_hash"] != anchor.head_hash:
                bad = bad or anchor
            elif bad is None:
                good = anchor.version
        first = good + 1
        at = await conn.fetchrow(
            "SELECT event_id, position FROM events WHERE stream_id = $1 AND version = $2", stream_id, first
        )
        if bad is None:  # no signed record of the stream holds the rewrite; say what is known
            return ChainBreak(stream_id, first, None, None, "rewritten since a checkpoint")
        where = (
            f"version {first} was rewritten"
            if first == bad.version
            else f"the first rewritten event is one of versions {first} to {bad.version}"
        )
        now_text = "is gone" if now[bad.version]["now_hash"] is None else "hashes otherwise now"
        kept = f"versions up to {good} still hash as the checkpoints recorded; " if good else ""
        return ChainBreak(
            stream_id,
            first,
            at["event_id"] if at else None,
            at["position"] if at else None,
            f"history was rewritten: a signed checkpoint recorded version {bad.version} with hash "
            f"{bad.head_hash[:16]}…, and that event {now_text}; {kept}{where}",
        )

    # -- consistency with a kept checkpoint -----------------------------------------------------------------

    async def consistency(self, kept: SignedCheckpoint) -> ConsistencyReport:
        """Prove the store only grew since ``kept`` (a checkpoint the auditor kept), or name what changed.
        Checkpoint records altered in the database are named among the problems, never raised."""
        report = ConsistencyReport(kept.sequence, kept.digest, kept.key_id)
        trusted = self.trusted_keys()
        try:
            self.verified(kept, trusted)
        except CheckpointError as exc:
            report.problems.append(f"the kept checkpoint does not verify: {exc}")
            return report
        latest: SignedCheckpoint | None = None
        latest_read = False
        try:
            latest = await self.latest()
            report.latest_sequence = latest.sequence if latest else None
            latest_read = True
        except CheckpointError as exc:
            report.problems.append(f"the latest checkpoint: {exc}")
        try:
            stored = await self.get(kept.sequence)
            if stored is None:
                report.problems.append(
                    f"checkpoint {kept.sequence} is no longer in the store: it was removed"
                )
            elif stored.digest != kept.digest:
                report.problems.append(
                    f"the store's checkpoint {kept.sequence} (digest {stored.digest}) is not the kept one "
                    f"({kept.digest}): it was replaced"
                )
        except CheckpointError as exc:
            report.problems.append(str(exc))
        record: keys.LastSigned | None = None
        try:
            record = self._read_record()
            problem = self.against_record(latest, record) if latest_read else None
        except keys.SigningKeyError as exc:
            problem = str(exc)
        if problem is not None:
            report.problems.append(f"the checkpoint publisher's record: {problem}")
        try:
            heads = await self.heads_at(kept)
        except CheckpointError as exc:
            report.problems.append(str(exc))
            heads = []
        # Later checkpoints too, when their signature and records hold: a stream appended to after the kept
        # checkpoint and rewritten since is caught by what they recorded. The latest, and the last one this
        # publisher signed, which still counts when a forged checkpoint was put after it.
        later: dict[str, SignedCheckpoint] = {}
        if latest is not None and latest.sequence > kept.sequence:
            later["the latest checkpoint"] = latest
        if (
            record is not None
            and record.sequence > kept.sequence
            and record.sequence != report.latest_sequence
        ):
            try:
                signed = await self.get(record.sequence)
            except CheckpointError as exc:
                report.problems.append(str(exc))
            else:
                if signed is not None and signed.digest == record.digest:
                    later["the last checkpoint this publisher signed"] = signed
                else:
                    report.problems.append(
                        f"checkpoint {record.sequence}, the last this publisher signed (digest "
                        f"{record.digest[:16]}…), is no longer in the store as signed"
                    )
        for name, checkpoint in later.items():
            try:
                self.verified(checkpoint, trusted)
                heads += [h for h in await self.heads_at(checkpoint) if h not in heads]
            except CheckpointError as exc:
                report.problems.append(f"{name}: {exc}")
        async with self.store.pool.acquire() as conn:
            report.rewrites = await self._rewritten(conn, heads)
        whole = await self.store.verify_all()
        report.streams_checked, report.events_checked = whole.streams_checked, whole.events_checked
        report.breaks = list(whole.breaks)
        return report
