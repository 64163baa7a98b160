"""The pure mathematics of the auditor's proofs: a plan's hash chain re-walked from its events, and the Merkle
tree a checkpoint builds over every stream's head.

No database, no server, no settings: the offline bundle verifier runs exactly this code, and so do the
checkpoint publisher and the consistency check. The chain links are eventstore.jsoncodec's own
``content_digest`` and ``chain_hash``, the functions the store writes with, so nothing here can drift from it.

The Merkle tree is RFC 9162's (Certificate Transparency v2): a leaf is SHA-256(0x00 || leaf data), a node
SHA-256(0x01 || left || right), and a tree of n leaves splits at the largest power of two below n. The leaf
data of a stream head is the canonical JSON of ``{"head_hash", "stream_id", "version"}``; leaves are sorted
by stream id, so one plan's inclusion is proved with about log2(streams) hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventstore import jsoncodec
from eventstore.errors import InvalidEventError
from eventstore.types import ChainBreak


@dataclass(frozen=True, slots=True)
class ChainEvent:
    """An event with the fields its chain link covers, as the store holds it or a bundle carries it."""

    stream_id: str
    version: int
    event_id: UUID
    type: str
    schema_version: int
    data: Any
    metadata: Any
    recorded_at: datetime
    prev_hash: str
    hash: str
    position: int | None = None


def first_break(
    stream_id: str, events: Iterable[ChainEvent], *, after_version: int = 0, after_hash: str = ""
) -> ChainBreak | None:
    """The first event whose chain link does not hold, walking on from ``after_version`` (whose hash is
    ``after_hash``; 0 and "" walk from the stream's start); None when every link holds.

    Each event must be the next version of ``stream_id``, name the previous event's hash, and hash to its
    stored hash from its content (type, schema version, data, metadata), version and time.
    """
    prev_hash = after_hash
    expected = after_version + 1
    for event in events:

        def broken(reason: str, event: ChainEvent = event) -> ChainBreak:
            return ChainBreak(stream_id, event.version, event.event_id, event.position, reason)

        if event.stream_id != stream_id:
            return broken(f"it belongs to stream {event.stream_id!r}, not {stream_id!r}")
        if event.version > expected:
            return ChainBreak(
                stream_id,
                expected,
                None,
                None,
                f"version {expected} is missing: the next event is version {event.version} "
                f"(id {event.event_id}): events were removed",
            )
        if event.version < expected:
            return broken(f"version {event.version} appears again where version {expected} belongs")
        if event.prev_hash != prev_hash:
            return broken("its previous-hash does not match the hash of the event before it")
        try:
            digest = jsoncodec.content_digest(
                event.event_id, stream_id, event.type, event.schema_version, event.data, event.metadata
            )
        except InvalidEventError as err:
            return broken(f"its content cannot be encoded: {err}")
        if jsoncodec.chain_hash(prev_hash, event.version, event.recorded_at, digest) != event.hash:
            return broken("its hash does not match its content (type, data, metadata), version and time")
        prev_hash = event.hash
        expected += 1
    return None


# -- the Merkle tree over stream heads ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class StreamHead:
    """A stream's head: its version and the hash of the event at that version."""

    stream_id: str
    version: int
    head_hash: str

    def leaf(self) -> bytes:
        body = jsoncodec.canonical(
            {"head_hash": self.head_hash, "stream_id": self.stream_id, "version": self.version}
        )
        return hashlib.sha256(b"\x00" + body.encode("utf-8")).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _root(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _node(_root(leaves[:k]), _root(leaves[k:]))


def merkle_root(heads: Sequence[StreamHead]) -> str:
    """The hex root of the tree over ``heads`` (which must be sorted by stream id)."""
    return _root([h.leaf() for h in heads]).hex()


def inclusion_path(heads: Sequence[StreamHead], index: int) -> list[str]:
    """The audit path (hex sibling hashes, leaf first) proving ``heads[index]`` is in the tree."""
    if not 0 <= index < len(heads):
        raise ValueError(f"leaf {index} is outside a tree of {len(heads)} leaves")
    leaves = [h.leaf() for h in heads]
    path: list[bytes] = []

    def walk(m: int, part: Sequence[bytes]) -> None:
        if len(part) <= 1:
            return
        k = _split(len(part))
        if m < k:
            walk(m, part[:k])
            path.append(_root(part[k:]))
        else:
            walk(m - k, part[k:])
            path.append(_root(part[:k]))

    walk(index, leaves)
    return [p.hex() for p in path]


def verify_inclusion(head: StreamHead, index: int, tree_size: int, path: Sequence[str], root: str) -> bool:
    """Whether ``path`` proves ``head`` is leaf ``index`` of the tree of ``tree_size`` leaves with ``root``
    (RFC 9162, 2.1.3.2)."""
    if not 0 <= index < tree_size:
        return False
    try:
        siblings = [bytes.fromhex(p) for p in path]
    except ValueError:
        return False
    fn, sn, r = index, tree_size - 1, head.leaf()
    for sibling in siblings:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(sibling, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r.hex() == root
