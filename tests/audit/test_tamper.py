"""Tampering in every way a database administrator could, caught by the auditor's tools and pinned to the
event: the store's chain verification for a careless edit, the signed checkpoints for a careful one.

The store holds an untouched stream ``kept`` and a five-event ``plan`` whose history was checkpointed as it
grew (versions 1-2, then 3, then 4-5), as the scheduled publisher does; the auditor kept the first
checkpoint. (tests/eventstore/test_tamper.py pins the same edits with the store's verify alone; these go
through Checkpoints.consistency and the publisher, which must also catch what verify cannot.)
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from eventstore import ANY, EventStore, jsoncodec
from eventstore.types import ChainBreak
from planloop.audit import keys
from planloop.audit.checkpoints import (
    CheckpointError,
    CheckpointRefused,
    Checkpoints,
    ConsistencyReport,
    SignedCheckpoint,
)
from planloop.audit.extension import (
    FAILED,
    PROVED,
    SELF_CONSISTENT,
    ExtensionReport,
    export_extension,
    prove_extension,
    read_extension,
)
from planloop.audit.proofs import StreamHead, merkle_root
from tests.audit.test_checkpoints import append, event

PLAN = "plan:FY2027:DE"


@dataclass
class Scene:
    store: EventStore
    checkpoints: Checkpoints
    dba: asyncpg.Connection
    kept: SignedCheckpoint  # the first checkpoint, kept by the auditor
    ids: dict[int, uuid.UUID]  # the plan's event ids by version

    async def consistency(self) -> ConsistencyReport:
        return await self.checkpoints.consistency(self.kept)


@pytest.fixture
async def scene(store: EventStore, database_url: str, tmp_path: Path) -> AsyncIterator[Scene]:
    checkpoints = Checkpoints(store, tmp_path / "audit-key.pem")
    await append(store, "kept", 0)
    await append(store, PLAN, 1, 2)
    kept, _ = await checkpoints.publish()
    await append(store, PLAN, 3)
    await checkpoints.publish()
    await append(store, PLAN, 4, 5)
    await checkpoints.publish()
    assert kept is not None
    ids = {e.version: e.event_id for e in await store.read_stream(PLAN)}
    conn = await asyncpg.connect(database_url)
    try:
        yield Scene(store, checkpoints, conn, kept, ids)
    finally:
        await conn.close()


async def as_dba(conn: asyncpg.Connection, *statements: tuple[str, tuple[object, ...]]) -> None:
    """What a superuser can do: switch the append-only triggers off for the session, change rows."""
    async with conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        for sql, args in statements:
            await conn.execute(sql, *args)


def only(found: list[ChainBreak]) -> ChainBreak:
    assert [b.stream_id for b in found] == [PLAN], f"expected one break, in {PLAN} only: {found}"
    return found[0]


async def test_an_untouched_store_extends_the_kept_checkpoint(scene: Scene) -> None:
    report = await scene.consistency()
    assert report.ok, report.as_json()
    assert (report.latest_sequence, report.streams_checked, report.events_checked) == (3, 2, 6)


async def test_an_edited_payload_is_pinned(scene: Scene) -> None:
    await as_dba(
        scene.dba, ("""UPDATE events SET data = '{"n": 3, "amount": "99.50"}' WHERE version = 3""", ())
    )
    report = await scene.consistency()
    found = only(report.breaks)
    assert (found.version, found.event_id) == (3, scene.ids[3])
    assert "content (type, data or metadata) was changed" in found.reason
    assert not report.ok


async def test_edited_metadata_naming_another_actor_is_pinned(scene: Scene) -> None:
    await as_dba(
        scene.dba,
        (
            """UPDATE events SET metadata = '{"actor": "mallory"}' WHERE stream_id = $1 AND version = 2""",
            (PLAN,),
        ),
    )
    found = only((await scene.consistency()).breaks)
    assert (found.version, found.event_id) == (2, scene.ids[2])


async def test_two_reordered_events_are_pinned(scene: Scene) -> None:
    swap = "UPDATE events SET version = $2 WHERE stream_id = $1 AND version = $3"
    await as_dba(scene.dba, (swap, (PLAN, 100, 2)), (swap, (PLAN, 2, 3)), (swap, (PLAN, 3, 100)))
    report = await scene.consistency()
    found = only(report.breaks)
    # Version 2 now holds the third event, which names the second's hash as its previous.
    assert (found.version, found.event_id) == (2, scene.ids[3])
    assert "previous-hash" in found.reason
    # The kept checkpoint recorded version 2, which is another event now; nothing recorded below it.
    rewrite = only(report.rewrites)
    assert (rewrite.version, rewrite.event_id) == (1, scene.ids[1])
    assert "one of versions 1 to 2" in rewrite.reason


async def test_a_deleted_event_is_pinned(scene: Scene) -> None:
    await as_dba(scene.dba, ("DELETE FROM events WHERE stream_id = $1 AND version = 3", (PLAN,)))
    report = await scene.consistency()
    found = only(report.breaks)
    assert (found.version, found.event_id) == (3, None)
    assert f"version 3 is missing: the next event is version 4 (id {scene.ids[4]})" in found.reason.replace(
        "stored event", "event"
    )
    # The heads the checkpoints recorded (versions 2 and 5) still hash as they did: the chain names it.
    assert not report.ok and not report.rewrites


async def test_an_event_inserted_with_the_trigger_disabled_is_pinned(scene: Scene) -> None:
    """A forged event slipped in as version 4 with a faultless link of its own; the later events move up."""
    v3 = await scene.dba.fetchrow(
        "SELECT hash, recorded_at FROM events WHERE stream_id = $1 AND version = 3", PLAN
    )
    forged = uuid.uuid4()
    data, metadata = {"n": 35, "amount": "1000000"}, {"actor": "de-mgr"}
    digest = jsoncodec.content_digest(forged, PLAN, "Noted", 1, data, metadata)
    link = jsoncodec.chain_hash(v3["hash"], 4, v3["recorded_at"], digest)
    move = "UPDATE events SET version = $2 WHERE stream_id = $1 AND version = $3"
    await as_dba(
        scene.dba,
        (move, (PLAN, 6, 5)),
        (move, (PLAN, 5, 4)),
        (
            """INSERT INTO events (stream_id, version, event_id, type, schema_version, data, metadata,
                                   recorded_at, content_digest, prev_hash, hash)
               VALUES ($1, 4, $2, 'Noted', 1, $3::jsonb, $4::jsonb, $5, $6, $7, $8)""",
            (
                PLAN,
                forged,
                jsoncodec.dumps(data),
                jsoncodec.dumps(metadata),
                v3["recorded_at"],
                digest,
                v3["hash"],
                link,
            ),
        ),
    )
    report = await scene.consistency()
    # The forged link holds; the first event after it does not.
    found = only(report.breaks)
    assert (found.version, found.event_id) == (5, scene.ids[4])
    # The checkpoints recorded version 3 (still intact) and version 5 (now another event): the first event
    # that can differ is the forged version 4.
    rewrite = only(report.rewrites)
    assert (rewrite.version, rewrite.event_id) == (4, forged)
    assert "one of versions 4 to 5" in rewrite.reason


async def rewrite_consistently(
    dba: asyncpg.Connection, version: int, metadata: dict[str, str], stream_id: str = PLAN
) -> None:
    """Change one event and recompute every digest and hash from it on, and the stream's head: the chain
    holds again, as if it had always read so."""
    rows = await dba.fetch("SELECT * FROM events WHERE stream_id = $1 ORDER BY version", stream_id)
    prev = rows[version - 2]["hash"] if version > 1 else ""
    statements = []
    for row in rows[version - 1 :]:
        meta = metadata if row["version"] == version else jsoncodec.loads(row["metadata"])
        digest = jsoncodec.content_digest(
            row["event_id"], stream_id, row["type"], row["schema_version"], jsoncodec.loads(row["data"]), meta
        )
        link = jsoncodec.chain_hash(prev, row["version"], row["recorded_at"], digest)
        statements.append(
            (
                """UPDATE events SET metadata = $2::jsonb, content_digest = $3, prev_hash = $4, hash = $5
                    WHERE position = $1""",
                (row["position"], jsoncodec.dumps(meta), digest, prev, link),
            )
        )
        prev = link
    statements.append(("UPDATE streams SET last_hash = $2 WHERE stream_id = $1", (stream_id, prev)))
    await as_dba(dba, *statements)


async def test_a_consistent_rewrite_passes_chain_verification_but_not_the_checkpoints(scene: Scene) -> None:
    await rewrite_consistently(scene.dba, 3, {"actor": "mallory"})
    assert (await scene.store.verify_all()).ok, "a consistent rewrite is invisible to the chain alone"
    assert (await scene.store.read_stream(PLAN))[2].metadata == {"actor": "mallory"}
    report = await scene.consistency()
    assert not report.ok and not report.breaks
    rewrite = only(report.rewrites)
    assert (rewrite.version, rewrite.event_id) == (3, scene.ids[3])
    assert "version 3 was rewritten" in rewrite.reason and "versions up to 2 still hash" in rewrite.reason
    # Nor does the publisher sign over it, even once the plan has moved on.
    await scene.store.append(PLAN, ANY, [event(6)])
    with pytest.raises(CheckpointRefused, match=f"{PLAN} version 3 .*history was rewritten") as refused:
        await scene.checkpoints.publish()
    assert [c.sequence for c in await scene.checkpoints.list()] == [3, 2, 1]
    assert f"(event {scene.ids[3]})" in str(refused.value)


async def test_a_rewrite_covered_only_by_the_kept_checkpoint_is_bounded_by_it(scene: Scene) -> None:
    await rewrite_consistently(scene.dba, 1, {"actor": "mallory"})
    rewrite = only((await scene.consistency()).rewrites)
    assert (rewrite.version, rewrite.event_id) == (1, scene.ids[1])
    assert "one of versions 1 to 2" in rewrite.reason


async def test_removed_checkpoints_and_a_forged_kept_checkpoint_are_named(scene: Scene) -> None:
    latest = await scene.checkpoints.latest()
    assert latest is not None
    await as_dba(
        scene.dba,
        ("DELETE FROM audit_checkpoint_heads WHERE sequence = 3", ()),
        ("DELETE FROM audit_checkpoints WHERE sequence = 3", ()),
    )
    report = await scene.checkpoints.consistency(latest)
    assert "checkpoint 3 is no longer in the store: it was removed" in report.problems
    assert any("do not give its signed root" in p for p in report.problems)
    forged = SignedCheckpoint({**scene.kept.body, "events": 99}, scene.kept.signature)
    report = await scene.checkpoints.consistency(forged)
    assert not report.ok and "signature of checkpoint 1 does not hold" in report.problems[0]


# -- what a database administrator can do to the checkpoints themselves ---------------------------------


def record_of(scene: Scene) -> Path:
    return scene.checkpoints.record_file


async def test_a_publisher_refuses_to_sign_after_its_latest_checkpoint_was_deleted(scene: Scene) -> None:
    """Deleting the latest checkpoint (or every one) would let the publisher sign the rewritten store anew."""
    await as_dba(
        scene.dba,
        ("DELETE FROM audit_checkpoint_heads WHERE sequence = 3", ()),
        ("DELETE FROM audit_checkpoints WHERE sequence = 3", ()),
    )
    await rewrite_consistently(scene.dba, 4, {"actor": "mallory"})
    await append(scene.store, PLAN, 6)
    with pytest.raises(
        CheckpointRefused, match="latest checkpoint is 2, but this publisher last signed checkpoint 3"
    ):
        await scene.checkpoints.publish()
    assert [c.sequence for c in await scene.checkpoints.list()] == [2, 1]
    report = await scene.consistency()
    assert any("checkpoints after 2 were removed" in p for p in report.problems), report.problems

    await as_dba(scene.dba, ("DELETE FROM audit_checkpoint_heads", ()), ("DELETE FROM audit_checkpoints", ()))
    with pytest.raises(
        CheckpointRefused, match=r"holds no checkpoint.*the checkpoint tables were emptied"
    ) as refused:
        await scene.checkpoints.publish()
    assert str(record_of(scene)) in str(refused.value), "the message names the record to remove once resolved"
    assert await scene.checkpoints.list() == []


async def test_a_checkpoint_forged_with_a_key_inserted_in_the_database_is_refused_and_named(
    scene: Scene,
) -> None:
    """A database administrator rewrites the plan, inserts their own key and signs checkpoint 4 over the
    rewrite, chained to checkpoint 3: a key in the database proves nothing, so nothing is signed after it."""
    await rewrite_consistently(scene.dba, 3, {"actor": "mallory"})
    latest = await scene.checkpoints.latest()
    assert latest is not None
    rows = await scene.dba.fetch("SELECT stream_id, version, last_hash FROM streams ORDER BY stream_id")
    heads = [StreamHead(r["stream_id"], r["version"], r["last_hash"]) for r in rows]
    mallory = Ed25519PrivateKey.generate()
    body = {
        **latest.body,
        "sequence": 4,
        "previous": latest.digest,
        "root": merkle_root(heads),
        "streams": len(heads),
        "events": sum(h.version for h in heads),
        "key_id": keys.fingerprint(mallory.public_key()),
    }
    forged = SignedCheckpoint(body, keys.sign(mallory, SignedCheckpoint(body, "").message))
    await as_dba(
        scene.dba,
        (
            "INSERT INTO audit_keys (key_id, public_key) VALUES ($1, $2)",
            (forged.key_id, keys.public_pem(mallory.public_key())),
        ),
        (
            """INSERT INTO audit_checkpoints (sequence, published_at, digest, root, streams, events, key_id,
                                              document) VALUES (4, now(), $1, $2, $3, $4, $5, $6)""",
            (forged.digest, forged.root, body["streams"], body["events"], forged.key_id, forged.text()),
        ),
        *(
            (
                "INSERT INTO audit_checkpoint_heads (sequence, stream_id, version, head_hash) "
                "VALUES (4, $1, $2, $3)",
                (h.stream_id, h.version, h.head_hash),
            )
            for h in heads
        ),
    )
    await append(scene.store, PLAN, 6)
    with pytest.raises(
        CheckpointRefused, match=f"latest checkpoint is 4 \\(signed by key {forged.key_id}\\)"
    ):
        await scene.checkpoints.publish()
    assert [c.sequence for c in await scene.checkpoints.list()] == [4, 3, 2, 1]

    report = await scene.consistency()
    assert not report.ok
    assert any(f"signed by key {forged.key_id}, which this API does not trust" in p for p in report.problems)
    assert any("checkpoints were inserted" in p for p in report.problems), report.problems
    # The last checkpoint the publisher signed still pins the rewrite, though a forged one came after it.
    rewrite = only(report.rewrites)
    assert (rewrite.version, rewrite.event_id) == (3, scene.ids[3])


async def test_a_publish_whose_record_was_not_written_is_accepted_as_its_successor_only(scene: Scene) -> None:
    """A crash between the database commit and the record: the database is one ahead, signed by our key and
    chained to the record; the next publish accepts that and catches the record up. Two ahead is refused."""
    record = record_of(scene)
    assert keys.read_last_signed(record) == keys.LastSigned(3, (await scene.checkpoints.get(3)).digest)  # type: ignore[union-attr]
    behind = record.read_bytes()
    await append(scene.store, PLAN, 6)
    fourth, new = await scene.checkpoints.publish()
    assert new and fourth is not None and fourth.sequence == 4
    record.write_bytes(behind)  # as if the process had died before writing the record

    assert (await scene.consistency()).ok
    again, new = await scene.checkpoints.publish()
    assert (again, new) == (fourth, False)
    assert keys.read_last_signed(record) == keys.LastSigned(4, fourth.digest), "the record caught up"

    record.write_bytes(behind)
    await append(scene.store, PLAN, 7)
    fifth, new = await scene.checkpoints.publish()
    assert new and fifth is not None and fifth.sequence == 5 and fifth.body["previous"] == fourth.digest
    assert keys.read_last_signed(record) == keys.LastSigned(5, fifth.digest)

    record.write_bytes(behind)  # two behind: not what a crash leaves
    await append(scene.store, PLAN, 8)
    with pytest.raises(CheckpointRefused, match="only its successor, signed by this publisher"):
        await scene.checkpoints.publish()


async def test_a_publish_whose_record_was_not_written_then_a_rotation_is_still_its_successor(
    scene: Scene,
) -> None:
    """The crash above, then `planloop audit rotate-key` before the next publish: the successor is signed by
    the retired key, which is listed as trusted, so it is accepted; the next checkpoint is the new key's."""
    record = record_of(scene)
    behind = record.read_bytes()
    await append(scene.store, PLAN, 6)
    fourth, _ = await scene.checkpoints.publish()
    assert fourth is not None
    record.write_bytes(behind)  # the process died before writing the record
    rotation = keys.rotate_signing_key(scene.checkpoints.key_file)
    await append(scene.store, PLAN, 7)
    fifth, new = await scene.checkpoints.publish()
    assert new and fifth is not None and fifth.body["previous"] == fourth.digest
    assert (fourth.key_id, fifth.key_id) == (rotation.retired, rotation.signing)


async def test_a_tampered_checkpoint_row_is_reported_not_raised(scene: Scene) -> None:
    """A stored document that is not a checkpoint any more, and a checkpoint row gone while its heads stay:
    the consistency report and the publisher name them instead of failing with an exception."""
    await rewrite_consistently(scene.dba, 1, {"actor": "mallory"})
    await as_dba(
        scene.dba,
        ("UPDATE audit_checkpoints SET document = 'not json' WHERE sequence = 3", ()),
        ("DELETE FROM audit_checkpoints WHERE sequence = 2", ()),
    )
    report = await scene.consistency()
    assert not report.ok
    assert any("the stored checkpoint 3 cannot be read" in p for p in report.problems), report.problems
    rewrite = only(report.rewrites)  # pinned by checkpoint 1 alone: 2 is gone, 3 unreadable
    assert (rewrite.version, rewrite.event_id) == (1, scene.ids[1])
    assert "one of versions 1 to 2" in rewrite.reason
    with pytest.raises(CheckpointRefused, match="the stored checkpoint 3 cannot be read"):
        await scene.checkpoints.publish()


# -- the auditor's own proof (planloop/audit/extension.py): the same edits, checked off the server -----------


async def prove(scene: Scene, trusted: object = "key", raw: bytes | None = None) -> ExtensionReport:
    """What `planloop audit consistency KEPT --trusted-key ...` finds: the server's extension document from
    the kept checkpoint to the latest, proved against the auditor's own copy of the kept checkpoint."""
    if raw is None:
        latest = await scene.checkpoints.latest()
        assert latest is not None
        raw = (await export_extension(scene.checkpoints, scene.kept, latest)).encode()
    key = scene.checkpoints.public_key if trusted == "key" else trusted
    return prove_extension(scene.kept, read_extension(raw), key)  # type: ignore[arg-type]


async def test_the_auditor_proves_an_untouched_store_extends_the_kept_checkpoint(scene: Scene) -> None:
    report = await prove(scene)
    assert report.verdict == PROVED, report.as_json()
    assert (report.later_sequence, report.streams_kept, report.streams_grown, report.events_appended) == (
        3,
        2,
        1,
        3,
    )
    assert (await prove(scene, trusted=scene.checkpoints.key_id)).verdict == PROVED
    assert (await prove(scene, trusted=None)).verdict == SELF_CONSISTENT
    stranger = await prove(scene, trusted="ed25519:" + "0" * 64)
    assert stranger.verdict == FAILED and "not by the trusted key" in stranger.problems[0]


async def test_the_auditor_catches_a_consistent_rewrite_after_and_before_the_kept_checkpoint(
    scene: Scene,
) -> None:
    await rewrite_consistently(scene.dba, 3, {"actor": "mallory"})
    report = await prove(scene)
    assert report.verdict == FAILED and len(report.problems) == 1, report.problems
    assert report.problems[0].startswith(f"stream {PLAN}: the events after the kept version 2 hash to")
    assert "rewritten after it was signed" in report.problems[0]

    await rewrite_consistently(scene.dba, 1, {"actor": "mallory"})
    [problem] = (await prove(scene)).problems
    assert (
        f"stream {PLAN}: the events after the kept version 2 do not continue its chain: version 3" in problem
    )


async def test_the_auditor_catches_a_server_that_hides_or_changes_what_it_sends(scene: Scene) -> None:
    latest = await scene.checkpoints.latest()
    assert latest is not None
    lines = (await export_extension(scene.checkpoints, scene.kept, latest)).splitlines(keepends=True)
    heads = [n for n, line in enumerate(lines) if '"record":"head"' in line and '"of":1' in line]
    without_a_head = "".join(line for n, line in enumerate(lines) if n != heads[0]).encode()
    hidden = await prove(scene, raw=without_a_head)
    assert hidden.verdict == FAILED and "do not give its signed root" in hidden.problems[0]
    events = [n for n, line in enumerate(lines) if '"record":"event"' in line]
    without_an_event = "".join(line for n, line in enumerate(lines) if n != events[0]).encode()
    [problem] = (await prove(scene, raw=without_an_event)).problems
    assert f"stream {PLAN}: the events after the kept version 2 do not continue its chain" in problem
    # Removed events: the store's head went back below what the kept checkpoint recorded.
    await as_dba(scene.dba, ("DELETE FROM events WHERE stream_id = $1 AND version > 2", (PLAN,)))
    [problem] = (await prove(scene)).problems
    assert problem.startswith(f"stream {PLAN}: the events sent end at version 2")


async def test_the_auditor_proves_a_kept_checkpoint_that_is_still_the_latest(scene: Scene) -> None:
    latest = await scene.checkpoints.latest()
    assert latest is not None
    raw = (await export_extension(scene.checkpoints, latest, latest)).encode()
    report = prove_extension(latest, read_extension(raw), scene.checkpoints.public_key)
    assert report.verdict == PROVED and (report.streams_grown, report.events_appended) == (0, 0), report
    # A server that sends another checkpoint under the kept one's number is caught.
    other = prove_extension(scene.kept, read_extension(raw.replace(b'"kept":3', b'"kept":1')), None)
    assert other.verdict == FAILED


@pytest.mark.parametrize(
    ("document", "says"),
    [
        (b"[1]\n", "not a planloop-checkpoint-extension"),
        (b'{"format":"planloop-checkpoint-extension","format_version":1}\n', "does not name both"),
        (b'{"format":"planloop-checkpoint-extension","format_version":1,"kept":1,"later":1}\n5\n', "line 2"),
        (
            b'{"format":"planloop-checkpoint-extension","format_version":1,"kept":1,"later":1}\n',
            "no checkpoint",
        ),
        (b"\xff\n", "not JSON Lines"),
    ],
)
def test_a_malformed_extension_document_is_a_clear_error(document: bytes, says: str) -> None:
    with pytest.raises(CheckpointError, match=says):
        read_extension(document)


async def test_the_auditor_refuses_events_that_no_head_accounts_for(scene: Scene) -> None:
    latest = await scene.checkpoints.latest()
    assert latest is not None
    text = await export_extension(scene.checkpoints, scene.kept, latest)
    stray = text.replace('"stream_id":"plan:FY2027:DE","version":3', '"stream_id":"elsewhere","version":3', 1)
    report = await prove(scene, raw=stray.encode())
    assert report.verdict == FAILED
    assert any("of stream elsewhere, which did not grow" in p for p in report.problems), report.problems
