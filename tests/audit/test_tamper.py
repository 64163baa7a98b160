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

from eventstore import ANY, EventStore, jsoncodec
from eventstore.types import ChainBreak
from planloop.audit.checkpoints import CheckpointRefused, Checkpoints, ConsistencyReport, SignedCheckpoint
from planloop.audit.keys import load_or_create_signing_key
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
    checkpoints = Checkpoints(store, lambda: load_or_create_signing_key(tmp_path / "audit-key.pem"))
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
