"""A plan's history as a self-contained bundle, and its verification with nothing but the bundle.

A bundle is JSON Lines, one record a line, each with a ``record`` field:

* ``header``: format name and version, the stream (and its cycle and unit), when it was exported, how many
  events follow;
* ``event``: one per event in version order, with its full envelope and chain fields (position, stream,
  version, event id, type, schema version, data, metadata, recorded at, previous hash, hash);
* ``checkpoint``: the latest signed checkpoint when exported, with the proof that the plan's head at that
  time is in it (absent when no checkpoint existed; its inclusion is null when the plan came later);
* ``public_key``: the PEM of the key that signed the checkpoint (absent when the exporting API does not
  trust that key itself);
* ``seal``: last, the SHA-256 of every byte before it. It is not signed (whoever rewrites a bundle can
  reseal it): it makes any changed byte fail, also in the fields no hash chain covers (the header, the
  events' global positions), so a bundle damaged in transit is never taken for the one exported.

Verification needs no database, no server and no settings: it re-walks the chain with eventstore.jsoncodec's
own digest and chain functions (planloop.audit.proofs), checks the checkpoint's signature, the inclusion
proof of the plan's head and the seal, and compares the key with one the auditor trusts. Everything in a
bundle can be rewritten by whoever hands it over, hashes and keys included, so nothing in it counts on its
own: only a checkpoint signed by a key the auditor names (``trusted``) proves the events it covers. Without a
trusted key the verdict is at best SELF_CONSISTENT: the bundle holds together, but anyone could have made
it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any, Final
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from domain import DomainError, PlanState, decode_event, evolve
from eventstore import jsoncodec
from eventstore.types import ChainBreak, RecordedEvent
from planloop.errors import PlanloopError
from workflows.plan import plan_id

from . import keys
from .checkpoints import CheckpointError, CheckpointRefused, Checkpoints, SignedCheckpoint
from .proofs import ChainEvent, StreamHead, first_break, verify_inclusion

FORMAT: Final = "planloop-audit-bundle"
FORMAT_VERSION: Final = 2  # 2 added the seal; bundles of version 1 are still read (without one)
READABLE_VERSIONS: Final = (1, 2)

#: The verdicts of an offline verification.
VERIFIED: Final = "verified"  # a checkpoint signed by the trusted key covers the events
SELF_CONSISTENT: Final = "self-consistent"  # all holds together, but no trusted key was given to check
FAILED: Final = "failed"


class BundleError(PlanloopError):
    """A bundle that cannot be read at all (not JSON Lines, no header, another format)."""


# -- export --------------------------------------------------------------------------------------------------


def _line(record: dict[str, Any]) -> str:
    return jsoncodec.dumps(record) + "\n"


def event_record(e: RecordedEvent) -> dict[str, Any]:
    """A stored event with every field its chain link covers, as a bundle (or an extension) carries it."""
    return {
        "record": "event",
        "position": e.position,
        "stream_id": e.stream_id,
        "version": e.version,
        "event_id": str(e.event_id),
        "type": e.type,
        "schema_version": e.schema_version,
        "data": e.data,
        "metadata": e.metadata,
        "recorded_at": jsoncodec.utc_stamp(e.recorded_at),
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    }


async def export_bundle(
    checkpoints: Checkpoints,
    stream_id: str,
    *,
    cycle_id: str,
    unit_id: str,
    exported_at: datetime,
    publish: bool = True,
) -> str:
    """The bundle of ``stream_id``: its events, the latest checkpoint with the stream's inclusion proof,
    and the public key. The checkpoint is read first, so every event it covers is in the bundle.

    With ``publish``, a checkpoint is signed first when the latest one does not cover the plan's head yet
    (checkpoints are otherwise published on a schedule), so that a fresh export verifies in full."""
    latest = await checkpoints.latest()
    inclusion = await checkpoints.inclusion(latest, stream_id) if latest else None
    if publish and (
        inclusion is None or inclusion.head.version < await checkpoints.store.stream_version(stream_id)
    ):
        try:
            latest, _ = await checkpoints.publish()
            inclusion = await checkpoints.inclusion(latest, stream_id) if latest else None
        except CheckpointRefused:
            # The store does not extend the last checkpoint: nothing new is signed, and the bundle goes out
            # with the last one; its verification then names what that checkpoint does not cover.
            pass
    events = await checkpoints.store.read_stream(stream_id)
    lines = [
        _line(
            {
                "record": "header",
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "stream_id": stream_id,
                "cycle_id": cycle_id,
                "unit_id": unit_id,
                "exported_at": jsoncodec.utc_stamp(exported_at),
                "events": len(events),
            }
        )
    ]
    lines += [_line(event_record(e)) for e in events]
    if latest is not None:
        lines.append(
            _line(
                {
                    "record": "checkpoint",
                    "document": latest.document(),
                    "inclusion": inclusion.as_json() if inclusion else None,
                }
            )
        )
        # Only a key this API trusts itself goes in; the bundle's reader trusts it no more than that.
        key = checkpoints.trusted_keys().get(latest.key_id)
        if key is not None:
            lines.append(
                _line({"record": "public_key", "key_id": latest.key_id, "pem": keys.public_pem(key)})
            )
    body = "".join(lines)
    return body + _line({"record": "seal", "sha256": hashlib.sha256(body.encode()).hexdigest()})


# -- reading -------------------------------------------------------------------------------------------------


@dataclass
class Bundle:
    header: dict[str, Any]
    events: list[ChainEvent]
    checkpoint: SignedCheckpoint | None = None
    inclusion: dict[str, Any] | None = None
    public_key_pem: str | None = None
    problems: list[str] = field(default_factory=list)  # lines that could not be read
    event_lines: list[int] = field(default_factory=list)  # the line of each event, in ``events``' order
    seal_problem: str | None = None  # what is wrong with the seal, if anything

    @property
    def stream_id(self) -> str:
        return str(self.header["stream_id"])


def parse_event(record: dict[str, Any]) -> ChainEvent:
    """An event record (of a bundle or an extension document) as a ChainEvent; ValueError if malformed."""
    try:
        return ChainEvent(
            stream_id=str(record["stream_id"]),
            version=int(record["version"]),
            event_id=UUID(record["event_id"]),
            type=str(record["type"]),
            schema_version=int(record["schema_version"]),
            data=record["data"],
            metadata=record["metadata"],
            recorded_at=datetime.fromisoformat(record["recorded_at"]),
            prev_hash=str(record["prev_hash"]),
            hash=str(record["hash"]),
            position=int(record["position"]) if record.get("position") is not None else None,
        )
    except KeyError as exc:
        raise ValueError(f"the event lacks the field {exc.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"an event field is malformed ({exc})") from None


def read_bundle(raw: bytes) -> Bundle:
    """Parse a bundle; lines that cannot be read are kept as problems naming their line number (so a
    changed byte is reported where it is), unless the header itself is unreadable (BundleError)."""
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    records: list[tuple[int, dict[str, Any]]] = []
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        try:
            record = jsoncodec.loads(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            problems.append(f"line {number} is not UTF-8 text (byte {exc.start + 1} of the line)")
            continue
        except ValueError as exc:
            problems.append(f"line {number} is not valid JSON ({exc})")
            continue
        if not isinstance(record, dict) or "record" not in record:
            problems.append(f"line {number} is not a bundle record (no 'record' field)")
            continue
        records.append((number, record))
    if not records or records[0][0] != 1 or records[0][1].get("record") != "header":
        raise BundleError(
            "not a planloop audit bundle: the first line must be its header; "
            "`planloop audit export CYCLE UNIT -o FILE` writes one"
        )
    header = records[0][1]
    if header.get("format") != FORMAT or header.get("format_version") not in READABLE_VERSIONS:
        raise BundleError(
            f"not a {FORMAT} of version {' or '.join(map(str, READABLE_VERSIONS))} (format "
            f"{header.get('format')!r}, version {header.get('format_version')!r})"
        )
    bundle = Bundle(header, [], problems=problems)
    # Version 1 had no seal; a seal, once there, is always checked (or a changed version byte would skip it).
    if header.get("format_version") != 1 or records[-1][1].get("record") == "seal":
        bundle.seal_problem = _check_seal(raw, records)
    for number, record in records[1:]:
        kind = record.get("record")
        try:
            if kind == "seal":
                continue  # checked above, over the bytes
            if kind == "event":
                bundle.events.append(parse_event(record))
                bundle.event_lines.append(number)
            elif kind == "checkpoint":
                bundle.checkpoint = SignedCheckpoint.from_document(record.get("document"))
                bundle.inclusion = record.get("inclusion")
            elif kind == "public_key":
                bundle.public_key_pem = str(record.get("pem", ""))
            else:
                problems.append(f"line {number} is a record of unknown kind {kind!r}")
        except (ValueError, CheckpointError) as exc:
            problems.append(f"line {number}: {exc}")
    return bundle


def _check_seal(raw: bytes, records: list[tuple[int, dict[str, Any]]]) -> str | None:
    """What is wrong with the seal (the last line: the SHA-256 of every byte before it), or None."""
    number, record = records[-1]
    if record.get("record") != "seal":
        return "the bundle has no seal as its last line: it was cut short, or lines were added after it"
    cut = raw.rstrip(b"\n").rfind(b"\n") + 1  # where the seal's line starts
    if hashlib.sha256(raw[:cut]).hexdigest() != record.get("sha256"):
        return (
            f"the bytes before line {number} do not match the bundle's seal: a byte was changed after the "
            "export (the events' chain and the signed checkpoint name what, if it is there)"
        )
    return None


# -- verification --------------------------------------------------------------------------------------------


@dataclass
class BundleReport:
    """What an offline verification found, and its verdict: VERIFIED only when a checkpoint signed by the
    trusted key covers the events (those after it only with ``allow_uncovered``); SELF_CONSISTENT when all
    that holds but no trusted key was given (``trusted`` is None); FAILED on any problem."""

    stream_id: str
    events: int
    chain_break: ChainBreak | None = None
    problems: list[str] = field(default_factory=list)
    checkpoint_sequence: int | None = None
    checkpoint_published_at: str | None = None
    key_id: str | None = None
    signature_ok: bool = False
    trusted: bool | None = None
    covered_version: int | None = None
    uncovered_events: int = 0
    allow_uncovered: bool = False

    @property
    def verdict(self) -> str:
        holds = self.chain_break is None and not self.problems
        if not (holds and self.signature_ok and self.covered_version is not None) or self.trusted is False:
            return FAILED
        return VERIFIED if self.trusted else SELF_CONSISTENT

    @property
    def ok(self) -> bool:
        return self.verdict == VERIFIED

    def as_json(self) -> dict[str, Any]:
        found = self.chain_break
        return {
            "ok": self.ok,
            "verdict": self.verdict,
            "stream_id": self.stream_id,
            "events": self.events,
            "chain_ok": found is None,
            "chain_break": None
            if found is None
            else {
                "stream_id": found.stream_id,
                "version": found.version,
                "event_id": str(found.event_id) if found.event_id else None,
                "reason": found.reason,
            },
            "problems": self.problems,
            "checkpoint_sequence": self.checkpoint_sequence,
            "checkpoint_published_at": self.checkpoint_published_at,
            "key_id": self.key_id,
            "signature_ok": self.signature_ok,
            "trusted": self.trusted,
            "covered_version": self.covered_version,
            "uncovered_events": self.uncovered_events,
            "allow_uncovered": self.allow_uncovered,
        }


def trusted_fingerprint(trusted: Ed25519PublicKey | str | None) -> str | None:
    if trusted is None or isinstance(trusted, str):
        return trusted
    return keys.fingerprint(trusted)


def _check_header(bundle: Bundle, report: BundleReport) -> None:
    header = bundle.header
    positions = [e.position for e in bundle.events if e.position is not None]
    if any(later <= earlier for earlier, later in pairwise(positions)):
        report.problems.append(
            "the events' global positions do not increase with their versions: the store never wrote them so"
        )
    if header.get("events") != len(bundle.events):
        report.problems.append(
            f"the header announces {header.get('events')} events, the bundle holds {len(bundle.events)}"
        )
    named = plan_id(str(header.get("cycle_id")), str(header.get("unit_id")))
    if named != bundle.stream_id:
        report.problems.append(
            f"the header names cycle {header.get('cycle_id')!r} and unit {header.get('unit_id')!r}, whose "
            f"plan is {named!r}, but its stream is {bundle.stream_id!r}"
        )


def verify_bundle(
    bundle: Bundle, trusted: Ed25519PublicKey | str | None = None, *, allow_uncovered: bool = False
) -> BundleReport:
    """Check every link of the bundle; ``trusted`` is the auditor's key (or its fingerprint). A trusted key
    checks the signature itself; a fingerprint must match the key the bundle carries."""
    report = BundleReport(
        bundle.stream_id, len(bundle.events), problems=list(bundle.problems), allow_uncovered=allow_uncovered
    )
    _check_header(bundle, report)
    if bundle.seal_problem is not None:
        report.problems.append(bundle.seal_problem)
    report.chain_break = first_break(bundle.stream_id, bundle.events)
    checkpoint = bundle.checkpoint
    if checkpoint is None:
        report.uncovered_events = len(bundle.events)
        report.problems.append(
            f"the bundle has no signed checkpoint: nothing signed covers its {len(bundle.events)} events; "
            "publish a checkpoint (`planloop audit checkpoint`) and export the plan again"
        )
        return report
    report.checkpoint_sequence = checkpoint.sequence
    report.checkpoint_published_at = str(checkpoint.body.get("published_at"))
    report.key_id = checkpoint.key_id
    try:
        if isinstance(trusted, Ed25519PublicKey):
            key = trusted
        elif bundle.public_key_pem:
            key = keys.load_public_pem(bundle.public_key_pem)
        else:
            raise CheckpointError(
                "the bundle has no public key to check its signature; pass the signer's PEM file as "
                "--trusted-key"
            )
        checkpoint.verify(key)
        report.signature_ok = True
    except (keys.SigningKeyError, CheckpointError) as exc:
        report.problems.append(f"checkpoint {checkpoint.sequence}: {exc}")
    expected = trusted_fingerprint(trusted)
    if expected is not None:
        report.trusted = expected == checkpoint.key_id
        if not report.trusted:
            report.problems.append(
                f"the checkpoint is signed by key {checkpoint.key_id}, not by the trusted key {expected}"
            )
    _check_inclusion(bundle, checkpoint, report)
    return report


def _check_inclusion(bundle: Bundle, checkpoint: SignedCheckpoint, report: BundleReport) -> None:
    proof = bundle.inclusion
    if proof is None:
        report.uncovered_events = len(bundle.events)
        report.problems.append(
            f"checkpoint {checkpoint.sequence} does not include this plan (the bundle carries no inclusion "
            "proof): nothing signed covers its events; export the plan again after the next checkpoint"
        )
        return
    try:
        head = StreamHead(str(proof["stream_id"]), int(proof["version"]), str(proof["head_hash"]))
        index, size, path = int(proof["leaf_index"]), int(proof["tree_size"]), list(proof["path"])
        sequence = int(proof["sequence"])
    except (KeyError, TypeError, ValueError) as exc:
        report.problems.append(f"the inclusion proof is malformed ({exc})")
        return
    if head.stream_id != bundle.stream_id or sequence != checkpoint.sequence:
        report.problems.append(
            f"the inclusion proof is for {head.stream_id} in checkpoint {sequence}, not for "
            f"{bundle.stream_id} in checkpoint {checkpoint.sequence}"
        )
        return
    if size != checkpoint.body.get("streams") or not verify_inclusion(
        head, index, size, [str(p) for p in path], checkpoint.root
    ):
        report.problems.append(
            f"the inclusion proof does not lead to checkpoint {checkpoint.sequence}'s root: "
            f"the plan's head (version {head.version}) is not what the checkpoint committed to"
        )
        return
    at = next((e for e in bundle.events if e.version == head.version), None)
    if at is None:
        report.problems.append(
            f"checkpoint {checkpoint.sequence} covers the plan up to version {head.version}, "
            f"but the bundle's events end at version {len(bundle.events)}: events were removed"
        )
        return
    if at.hash != head.head_hash:
        report.problems.append(
            f"version {head.version} (event {at.event_id}) hashes to {at.hash[:16]}…, but checkpoint "
            f"{checkpoint.sequence} recorded {head.head_hash[:16]}…: the history up to it was rewritten"
        )
        return
    report.covered_version = head.version
    report.uncovered_events = sum(1 for e in bundle.events if e.version > head.version)
    if report.uncovered_events and not report.allow_uncovered:
        report.problems.append(
            f"{report.uncovered_events} event(s) after version {head.version} are not covered by checkpoint "
            f"{checkpoint.sequence}: they are chain-verified only, which whoever rewrites the bundle can "
            "redo; export the plan again after the next checkpoint, or pass --allow-uncovered to accept "
            "them as chain-verified only"
        )


# -- the plan as of a moment ---------------------------------------------------------------------------------


def plan_as_of(bundle: Bundle, *, at: datetime | None = None, version: int | None = None) -> PlanState:
    """The plan folded from the bundle's events recorded up to ``at`` or up to ``version`` (all of them
    with neither), with the domain's own ``evolve``, the code the workflow runs. A BundleError names the
    version (and line) of an event that cannot be folded, or a version the bundle does not reach."""
    if at is not None and at.tzinfo is None:
        raise BundleError(f"the time {at.isoformat()} has no time zone; add one, e.g. Z or +01:00")
    last = max((e.version for e in bundle.events), default=0)
    if version is not None and version > last:
        raise BundleError(f"the plan has no version {version}: the bundle's events end at version {last}")
    state = PlanState.empty()
    for event, line in zip(bundle.events, bundle.event_lines, strict=True):
        if (at is not None and event.recorded_at > at) or (version is not None and event.version > version):
            continue
        try:
            state = evolve(state, decode_event(event.type, event.schema_version, event.data))  # type: ignore[arg-type]
        except (DomainError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BundleError(
                f"version {event.version} (line {line}, event {event.event_id}, type {event.type!r}) cannot "
                f"be folded into the plan ({type(exc).__name__}: {exc}); the plan as of a moment needs "
                "events this planloop knows"
            ) from None
    return state
