"""The auditor's own proof that the store was only appended to since a checkpoint they kept.

The server hands over an *extension document* (JSON Lines): the stream heads behind the kept checkpoint and
behind a later one (the latest, by default), that later checkpoint itself, and every event appended to a
stream between the two. The auditor's machine then checks, trusting nothing the server says:

1. the kept checkpoint (the auditor's own copy, not the server's) and the later one are signed by a key the
   auditor trusts;
2. each list of heads gives its checkpoint's signed Merkle root, so the server cannot leave out, add or
   change a head;
3. every stream of the kept checkpoint is still there in the later one, at the same or a later version;
   where it grew, the events in between re-walk the hash chain from the kept head's hash to the later
   head's hash, with eventstore.jsoncodec's own digest and chain functions (``proofs.first_break``).

So the later checkpoint commits to a history that extends the kept one: nothing the kept checkpoint covered
was rewritten, removed or reordered, in any stream. What was appended since is shown; events after the later
checkpoint are not covered (the next checkpoint covers them). The size of the document is that of the
events appended between the two checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from eventstore import jsoncodec

from . import keys
from .bundle import event_record, parse_event  # a bundle's event records have the same shape
from .checkpoints import CheckpointError, Checkpoints, SignedCheckpoint
from .proofs import ChainEvent, StreamHead, first_break, merkle_root

FORMAT: Final = "planloop-checkpoint-extension"
FORMAT_VERSION: Final = 1

PROVED: Final = "proved"  # both checkpoints signed by the trusted key, and the later one extends the kept one
SELF_CONSISTENT: Final = "self-consistent"  # all holds, but no trusted key was given to check the signatures
FAILED: Final = "failed"


# -- the server's side: the document ----------------------------------------------------------------------


async def export_extension(checkpoints: Checkpoints, kept: SignedCheckpoint, later: SignedCheckpoint) -> str:
    """The extension document from ``kept`` to ``later``: both lists of heads, the later checkpoint, and
    the events appended to each stream in between."""
    kept_heads = await checkpoints.heads_at(kept)
    later_heads = await checkpoints.heads_at(later)
    since = {h.stream_id: h.version for h in kept_heads}
    lines = [
        {
            "record": "header",
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kept": kept.sequence,
            "later": later.sequence,
        },
        {"record": "checkpoint", "document": later.document()},
    ]
    # The keys this server trusts for the two checkpoints; the auditor's --trusted-key is what counts.
    trusted = checkpoints.trusted_keys()
    for key_id in dict.fromkeys((kept.key_id, later.key_id)):
        if key_id in trusted:
            lines.append({"record": "public_key", "key_id": key_id, "pem": keys.public_pem(trusted[key_id])})
    lines += [{"record": "head", "of": kept.sequence, **_head(h)} for h in kept_heads]
    if later.sequence != kept.sequence:
        lines += [{"record": "head", "of": later.sequence, **_head(h)} for h in later_heads]
    for head in later_heads:
        after = since.get(head.stream_id, 0)
        if head.version > after:
            events = await checkpoints.store.read_stream(
                head.stream_id, after_version=after, up_to_version=head.version
            )
            lines += [event_record(e) for e in events]
    return "".join(jsoncodec.dumps(line) + "\n" for line in lines)


def _head(head: StreamHead) -> dict[str, Any]:
    return {"stream_id": head.stream_id, "version": head.version, "head_hash": head.head_hash}


# -- the auditor's side: reading and proving --------------------------------------------------------------


@dataclass
class Extension:
    """An extension document as read: the later checkpoint, both lists of heads, the events by stream."""

    kept_sequence: int
    later: SignedCheckpoint
    kept_heads: list[StreamHead]
    later_heads: list[StreamHead]
    events: dict[str, list[ChainEvent]]
    public_keys: dict[str, str] = field(default_factory=dict)  # key id -> PEM, as the server sent them


def read_extension(raw: bytes) -> Extension:
    """Parse an extension document; a CheckpointError says what is malformed, and on which line."""
    try:
        records = [jsoncodec.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"the extension document is not JSON Lines ({exc})") from None
    header = records[0] if records and isinstance(records[0], dict) else {}
    if header.get("format") != FORMAT or header.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"not a {FORMAT} of version {FORMAT_VERSION}")
    kept_sequence, later_sequence = header.get("kept"), header.get("later")
    if not all(type(n) is int for n in (kept_sequence, later_sequence)):
        raise CheckpointError("line 1 of the extension document does not name both checkpoints by number")
    later: SignedCheckpoint | None = None
    heads: dict[int, list[StreamHead]] = {kept_sequence: [], later_sequence: []}
    events: dict[str, list[ChainEvent]] = {}
    public_keys: dict[str, str] = {}
    for number, record in enumerate(records[1:], start=2):
        try:
            if not isinstance(record, dict):
                raise ValueError("not a record object")
            kind = record.get("record")
            if kind == "checkpoint":
                later = SignedCheckpoint.from_document(record["document"])
            elif kind == "head":
                head = StreamHead(str(record["stream_id"]), int(record["version"]), str(record["head_hash"]))
                heads[int(record["of"])].append(head)
            elif kind == "event":
                event = parse_event(record)
                events.setdefault(event.stream_id, []).append(event)
            elif kind == "public_key":
                public_keys[str(record["key_id"])] = str(record["pem"])
            else:
                raise ValueError(f"a record of unknown kind {kind!r}")
        except (KeyError, TypeError, ValueError, CheckpointError) as exc:
            raise CheckpointError(f"line {number} of the extension document is malformed ({exc})") from None
    if later is None:
        raise CheckpointError("the extension document holds no checkpoint")
    # The kept checkpoint may be the latest: then one list of heads serves as both.
    return Extension(kept_sequence, later, heads[kept_sequence], heads[later_sequence], events, public_keys)


@dataclass
class ExtensionReport:
    """What the proof found: PROVED only when both checkpoints are signed by the trusted key and every
    stream of the kept one is extended, never rewritten, in the later one."""

    kept_sequence: int
    later_sequence: int | None = None
    key_id: str | None = None
    trusted: bool | None = None
    signatures_ok: bool = False
    streams_kept: int = 0
    streams_grown: int = 0
    streams_new: int = 0
    events_appended: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if self.problems or not self.signatures_ok or self.trusted is False:
            return FAILED
        return PROVED if self.trusted else SELF_CONSISTENT

    def as_json(self) -> dict[str, Any]:
        return {**self.__dict__, "verdict": self.verdict, "ok": self.verdict == PROVED}


def prove_extension(
    kept: SignedCheckpoint,
    extension: Extension,
    trusted: Ed25519PublicKey | str | Sequence[Ed25519PublicKey | str] | None,
) -> ExtensionReport:
    """Check that ``extension.later`` extends ``kept`` (the auditor's own copy). ``trusted`` is the key (or
    its fingerprint), or the keys, the auditor trusts; without one the signatures are checked with the
    server's key and the verdict is at best SELF_CONSISTENT."""
    if trusted is None:
        trusted = []
    elif isinstance(trusted, (str, Ed25519PublicKey)):
        trusted = [trusted]
    later = extension.later
    report = ExtensionReport(kept.sequence, later.sequence, later.key_id)
    problems = report.problems
    if extension.kept_sequence != kept.sequence:
        problems.append(
            f"the document is about checkpoint {extension.kept_sequence}, not the kept {kept.sequence}"
        )
        return report
    if later.sequence < kept.sequence:
        problems.append(f"checkpoint {later.sequence} is older than the kept checkpoint {kept.sequence}")
    if later.sequence == kept.sequence and later.digest != kept.digest:
        problems.append(
            f"the server's checkpoint {later.sequence} is not the one kept (digest {later.digest[:16]}…, "
            f"kept {kept.digest[:16]}…): two different checkpoints carry that number"
        )
    report.signatures_ok = _signatures(kept, later, trusted, extension.public_keys, report)
    for checkpoint, heads in ((kept, extension.kept_heads), (later, extension.later_heads)):
        if merkle_root(heads) != checkpoint.root or len(heads) != checkpoint.body.get("streams"):
            problems.append(
                f"the {len(heads)} stream heads sent for checkpoint {checkpoint.sequence} do not give its "
                "signed root: the server left out, added or changed a head"
            )
    if problems:
        return report
    now = {h.stream_id: h for h in extension.later_heads}
    report.streams_kept = len(extension.kept_heads)
    report.streams_new = len(now.keys() - {h.stream_id for h in extension.kept_heads})
    kept_heads = {h.stream_id: h for h in extension.kept_heads}
    for head in extension.later_heads:
        # A stream new since the kept checkpoint is walked from its start, so every event counted is checked.
        since = kept_heads.get(head.stream_id, StreamHead(head.stream_id, 0, ""))
        _check_stream(since, head, extension.events.get(head.stream_id, []), report)
    for head in extension.kept_heads:
        if head.stream_id not in now:
            problems.append(
                f"stream {head.stream_id} (version {head.version} at the kept checkpoint) is gone"
            )
    # Every event sent must be one the proof walked: a stream that grew between the two heads.
    for stream_id, events in extension.events.items():
        since, head = kept_heads.get(stream_id), now.get(stream_id)
        if head is None or (since is not None and since.version >= head.version):
            problems.append(
                f"the server sent {len(events)} event(s) of stream {stream_id}, which did not grow between "
                "the two checkpoints"
            )
    return report


def _signatures(
    kept: SignedCheckpoint,
    later: SignedCheckpoint,
    trusted: Sequence[Ed25519PublicKey | str],
    shipped: dict[str, str],
    report: ExtensionReport,
) -> bool:
    """Verify both signatures: with a trusted key itself, or with the key the document ships, whose
    fingerprint must then be a trusted one (without a trusted key, nothing vouches for it). Two trusted keys
    prove across a key rotation: the kept checkpoint signed by the old key, the later one by the new."""
    fingerprints = {t if isinstance(t, str) else keys.fingerprint(t): t for t in trusted}
    ok = matched = True
    for checkpoint in (kept, later):
        given = fingerprints.get(checkpoint.key_id)
        try:
            if isinstance(given, Ed25519PublicKey):
                key = given
            elif checkpoint.key_id in shipped:
                key = keys.load_public_pem(shipped[checkpoint.key_id])
            else:
                raise CheckpointError(
                    f"no public key {checkpoint.key_id} to check it with; pass --trusted-key PEM"
                )
            checkpoint.verify(key)
        except (keys.SigningKeyError, CheckpointError) as exc:
            report.problems.append(f"checkpoint {checkpoint.sequence}: {exc}")
            ok = False
        if fingerprints and given is None:
            matched = False
            report.problems.append(
                f"checkpoint {checkpoint.sequence} is signed by {checkpoint.key_id}, not by the trusted key "
                f"({', '.join(fingerprints)})"
            )
    if fingerprints:
        report.trusted = matched
    return ok


def _check_stream(
    kept: StreamHead, now: StreamHead, events: list[ChainEvent], report: ExtensionReport
) -> None:
    """``kept``: the stream's head at the kept checkpoint (version 0 for a stream new since)."""
    problems = report.problems
    if now.version < kept.version:
        problems.append(
            f"stream {kept.stream_id} is at version {now.version}, below the kept checkpoint's "
            f"{kept.version}: events were removed"
        )
        return
    if now.version == kept.version:
        if now.head_hash != kept.head_hash:
            problems.append(
                f"stream {kept.stream_id}: version {kept.version} hashes otherwise than the kept checkpoint "
                "recorded: it was rewritten"
            )
        return
    report.streams_grown += kept.version > 0
    report.events_appended += len(events)
    found = first_break(kept.stream_id, events, after_version=kept.version, after_hash=kept.head_hash)
    if found is not None:
        event = f" (event {found.event_id})" if found.event_id else ""
        problems.append(
            f"stream {kept.stream_id}: the events after the kept version {kept.version} do not continue its "
            f"chain: version {found.version}{event}: {found.reason}; what the kept checkpoint covered was "
            "rewritten, or the events sent are not the stored ones"
        )
    elif not events or events[-1].version != now.version:
        last = events[-1].version if events else kept.version
        problems.append(
            f"stream {kept.stream_id}: the events sent end at version {last}, not at the later checkpoint's "
            f"head (version {now.version})"
        )
    elif events[-1].hash != now.head_hash:
        problems.append(
            f"stream {kept.stream_id}: the events after the kept version {kept.version} hash to "
            f"{events[-1].hash[:16]}… at version {now.version}, but the later checkpoint recorded "
            f"{now.head_hash[:16]}…: they were rewritten after it was signed"
        )
