"""Signed checkpoints on a real PostgreSQL: what they commit to, how they chain, when they are (not) signed,
and the publisher that runs them on a schedule."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import stat
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from eventstore import ANY, EventStore, NewEvent
from planloop.api.audit_integrity import PUBLISHER_LOCK, publish_on_schedule
from planloop.audit import keys
from planloop.audit.checkpoints import (
    PUBLISH_LOCK,
    CheckpointError,
    CheckpointRefused,
    Checkpoints,
    SignedCheckpoint,
)
from planloop.audit.extension import export_extension, prove_extension, read_extension
from planloop.audit.keys import SigningKeyError, load_or_create_signing_key
from planloop.audit.proofs import StreamHead, inclusion_path, merkle_root, verify_inclusion

PLAN = "plan:FY2027:DE"
OTHER = "plan:FY2027:FR"


def event(n: int, actor: str = "de-mgr") -> NewEvent:
    return NewEvent(uuid.uuid4(), "Noted", {"n": n, "amount": "12.50"}, {"actor": actor})


async def append(store: EventStore, stream_id: str, *numbers: int) -> None:
    await store.append(stream_id, ANY, [event(n) for n in numbers])


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "audit-key.pem"


@pytest.fixture
def checkpoints(store: EventStore, key_file: Path) -> Checkpoints:
    return Checkpoints(store, key_file)


@pytest.fixture
async def dba(database_url: str) -> asyncpg.Connection:
    """A superuser connection: what a database administrator holds."""
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


async def test_a_checkpoint_commits_to_every_head_and_proves_each_plans_inclusion(
    store: EventStore, checkpoints: Checkpoints, key_file: Path
) -> None:
    await append(store, PLAN, 1, 2, 3)
    await append(store, OTHER, 1)
    await append(store, "cycle:FY2027", 1, 2)
    checkpoint, new = await checkpoints.publish()
    assert new and checkpoint is not None
    body = checkpoint.body
    assert (body["sequence"], body["streams"], body["events"], body["previous"]) == (1, 3, 6, "")
    assert body["key_id"] == keys.fingerprint(checkpoints.public_key)
    # The key was made on first use, readable by its owner only.
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    checkpoint.verify(checkpoints.public_key)
    for stream_id in (PLAN, OTHER, "cycle:FY2027"):
        proof = await checkpoints.inclusion(checkpoint, stream_id)
        assert proof is not None
        head = (await store.read_stream(stream_id))[-1]
        assert (proof.head.version, proof.head.head_hash) == (head.version, head.hash)
        assert verify_inclusion(proof.head, proof.index, proof.tree_size, proof.path, checkpoint.root)
        forged = StreamHead(stream_id, proof.head.version, "0" * 64)
        assert not verify_inclusion(forged, proof.index, proof.tree_size, proof.path, checkpoint.root)
    assert await checkpoints.inclusion(checkpoint, "plan:FY2027:US") is None


async def test_checkpoints_chain_and_are_signed_only_when_the_store_changed(
    store: EventStore, checkpoints: Checkpoints
) -> None:
    assert await checkpoints.publish() == (None, False), "an empty store has nothing to sign"
    await append(store, PLAN, 1)
    first, _ = await checkpoints.publish()
    again, new = await checkpoints.publish()
    assert not new and again == first
    await append(store, PLAN, 2)
    second, new = await checkpoints.publish()
    assert new and second is not None and first is not None
    assert (second.sequence, second.body["previous"]) == (2, first.digest)
    assert [c.sequence for c in await checkpoints.list()] == [2, 1]
    assert await checkpoints.get(1) == first and await checkpoints.latest() == second


async def test_concurrent_publishers_number_checkpoints_one_after_another(
    store: EventStore, checkpoints: Checkpoints, key_file: Path
) -> None:
    other = Checkpoints(store, key_file)
    for n in range(1, 6):
        await append(store, PLAN, n)
        await asyncio.gather(checkpoints.publish(), other.publish())
    chain = list(reversed(await checkpoints.list()))
    assert [c.sequence for c in chain] == [1, 2, 3, 4, 5]
    assert all(b.body["previous"] == a.digest for a, b in itertools.pairwise(chain))


async def test_a_changed_field_breaks_the_signature_and_a_changed_digest_is_named() -> None:
    key = keys.Ed25519PrivateKey.generate()
    body = {
        "format": "planloop-checkpoint",
        "format_version": 1,
        "sequence": 7,
        "published_at": "2027-01-01T00:00:00.000000Z",
        "streams": 2,
        "events": 9,
        "root": "ab" * 32,
        "previous": "",
        "key_id": keys.fingerprint(key.public_key()),
    }
    signed = SignedCheckpoint(body, keys.sign(key, SignedCheckpoint(body, "").message))
    signed.verify(key.public_key())
    document = signed.document()
    document["checkpoint"] = {**body, "events": 8}
    with pytest.raises(CheckpointError, match=r"digest .* the checkpoint was changed"):
        SignedCheckpoint.from_document(document)
    del document["digest"]
    with pytest.raises(CheckpointError, match="signature of checkpoint 7 does not hold"):
        SignedCheckpoint.from_document(document).verify(key.public_key())
    with pytest.raises(CheckpointError, match="names key"):
        signed.verify(keys.Ed25519PrivateKey.generate().public_key())
    with pytest.raises(CheckpointError, match="sequence"):
        SignedCheckpoint.from_document({**document, "checkpoint": {**body, "sequence": "7"}})


def test_merkle_inclusion_proofs_hold_for_every_tree_size() -> None:
    for size in range(1, 34):
        heads = [StreamHead(f"plan:{i:03}", i + 1, f"{i:064x}") for i in range(size)]
        root = merkle_root(heads)
        for i in range(size):
            path = inclusion_path(heads, i)
            assert len(path) <= size.bit_length()
            assert verify_inclusion(heads[i], i, size, path, root)
            moved = StreamHead(heads[i].stream_id, heads[i].version + 1, heads[i].head_hash)
            assert not verify_inclusion(moved, i, size, path, root)
            if size > 1:
                assert not verify_inclusion(heads[i], (i + 1) % size, size, path, root)


async def test_audit_tables_are_append_only(
    store: EventStore, checkpoints: Checkpoints, dba: asyncpg.Connection
) -> None:
    await append(store, PLAN, 1)
    await checkpoints.publish()
    for statement in (
        "UPDATE audit_checkpoints SET events = 0",
        "DELETE FROM audit_checkpoint_heads",
        "TRUNCATE audit_keys CASCADE",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await dba.execute(statement)


async def test_altered_checkpoint_records_refuse_the_next_checkpoint(
    store: EventStore, checkpoints: Checkpoints, dba: asyncpg.Connection
) -> None:
    await append(store, PLAN, 1, 2)
    await checkpoints.publish()
    await dba.execute("ALTER TABLE audit_checkpoint_heads DISABLE TRIGGER USER")
    await dba.execute("UPDATE audit_checkpoint_heads SET version = 1")
    await append(store, PLAN, 3)
    with pytest.raises(CheckpointRefused, match="heads stored for checkpoint 1 do not give its signed root"):
        await checkpoints.publish()
    assert [c.sequence for c in await checkpoints.list()] == [1]


async def test_a_key_readable_by_others_or_not_a_key_is_refused_with_the_fix(tmp_path: Path) -> None:
    loose = tmp_path / "loose.pem"
    load_or_create_signing_key(loose)
    loose.chmod(0o644)
    with pytest.raises(SigningKeyError, match="chmod 600"):
        load_or_create_signing_key(loose)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    junk.chmod(0o600)
    with pytest.raises(SigningKeyError, match="not an unencrypted PEM private key"):
        load_or_create_signing_key(junk)


async def test_the_publisher_publishes_on_schedule_only_when_the_store_changed(
    store: EventStore, checkpoints: Checkpoints, database_url: str
) -> None:
    await append(store, PLAN, 1)
    stop = asyncio.Event()
    publisher = asyncio.create_task(publish_on_schedule(checkpoints, stop, database_url, 0.05))
    standby = asyncio.create_task(
        publish_on_schedule(checkpoints, stop, database_url, 0.05, standby_interval=0.05)
    )
    try:
        for expected in (1, 2):
            for _ in range(200):
                latest = await checkpoints.latest()
                if latest is not None and latest.sequence == expected:
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError(f"checkpoint {expected} was never published")
            await asyncio.sleep(0.3)  # several intervals with nothing new to sign
            assert (await checkpoints.latest()).sequence == expected  # type: ignore[union-attr]
            await append(store, PLAN, expected + 1)
        assert not standby.done(), "the second publisher stands by while the first holds the lock"
        holders = await store.pool.fetchval(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE d.datname = current_database() AND locktype = 'advisory' AND objid = $1 AND granted",
            PUBLISHER_LOCK & 0xFFFFFFFF,
        )
        assert holders == 1
    finally:
        stop.set()
        await asyncio.gather(publisher, standby)


async def test_a_publish_whose_unlock_fails_does_not_leak_the_publish_lock(
    store: EventStore, checkpoints: Checkpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool does not reset a session on release: a connection that failed to unlock went back to the pool
    holding the lock, and every later publish from another connection waited forever."""
    real_fetchval, real_execute = asyncpg.Connection.fetchval, asyncpg.Connection.execute
    failed_unlocks = []

    def failing(real: Any) -> Any:
        async def call(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
            if "pg_advisory_unlock(" in query:
                failed_unlocks.append(query)
                raise asyncpg.InterfaceError("the connection broke while unlocking (simulated)")
            return await real(self, query, *args, **kwargs)

        return call

    monkeypatch.setattr(asyncpg.Connection, "fetchval", failing(real_fetchval))
    monkeypatch.setattr(asyncpg.Connection, "execute", failing(real_execute))
    await append(store, PLAN, 1)
    published, new = await checkpoints.publish()
    assert new and published is not None and len(failed_unlocks) == 1
    monkeypatch.undo()

    held = -1
    for _ in range(100):  # a closed connection's session ends on the server a moment later
        held = await store.pool.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid::bigint = $1 AND objid::bigint = $2",
            PUBLISH_LOCK >> 32,
            PUBLISH_LOCK & 0xFFFFFFFF,
        )
        if held == 0:
            break
        await asyncio.sleep(0.1)
    assert held == 0, "a pooled connection still holds the publish lock"
    await append(store, PLAN, 2)
    second, new = await asyncio.wait_for(Checkpoints(store, checkpoints.key_file).publish(), 60)
    assert new and second is not None and second.sequence == 2


async def first_checkpoint(store: EventStore, checkpoints: Checkpoints) -> SignedCheckpoint:
    await append(store, PLAN, 1)
    first, _ = await checkpoints.publish()
    assert first is not None
    return first


async def test_after_a_key_rotation_earlier_checkpoints_count_only_under_keys_listed_beside_the_key(
    store: EventStore, checkpoints: Checkpoints, key_file: Path
) -> None:
    first = await first_checkpoint(store, checkpoints)
    retired = checkpoints.public_key
    key_file.rename(key_file.with_name("retired.pem"))  # a new key is made at the same place
    rotated = Checkpoints(store, key_file)
    await append(store, PLAN, 2)
    with pytest.raises(
        CheckpointRefused, match=f"signed by key {first.key_id}, which this API does not trust"
    ):
        await rotated.publish()
    keys.trusted_file(key_file).write_text(keys.public_pem(retired))
    second, new = await rotated.publish()
    assert new and second is not None and second.body["previous"] == first.digest
    assert second.key_id == rotated.key_id != first.key_id
    assert (await rotated.consistency(first)).ok
    # The auditor's own proof across the rotation: the kept checkpoint under the old key, the later one
    # under the new; with both keys trusted it is proved, with only the new one it is not.
    document = read_extension((await export_extension(rotated, first, second)).encode())
    across = prove_extension(first, document, [retired, rotated.key_id])
    assert across.verdict == "proved", across.as_json()
    only_new = prove_extension(first, document, rotated.public_key)
    assert only_new.verdict == "failed"
    assert f"checkpoint 1 is signed by {first.key_id}, not by the trusted key" in only_new.problems[0]
    keys.trusted_file(key_file).write_text("not a key")
    with pytest.raises(SigningKeyError, match="holds no PEM public key"):
        await rotated.publish()


def listed(key_file: Path) -> list[str]:
    """The fingerprints in ``<key file>.trusted``, in order."""
    return [keys.fingerprint(k) for k in keys.load_trusted_keys(keys.trusted_file(key_file))]


async def test_rotate_key_lists_the_old_key_and_a_running_publisher_signs_with_the_new_one(
    store: EventStore, checkpoints: Checkpoints, key_file: Path
) -> None:
    first = await first_checkpoint(store, checkpoints)
    retired = checkpoints.public_key
    rotation = keys.rotate_signing_key(key_file)
    assert rotation.retired == first.key_id != rotation.signing
    assert listed(key_file) == [first.key_id]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # The same publisher, never restarted, signs the next checkpoint with the new key, chained to the first.
    await append(store, PLAN, 2)
    second, new = await checkpoints.publish()
    assert new and second is not None and second.body["previous"] == first.digest
    assert second.key_id == rotation.signing == checkpoints.key_id
    assert (await checkpoints.consistency(first)).ok
    document = read_extension((await export_extension(checkpoints, first, second)).encode())
    assert prove_extension(first, document, [retired, rotation.signing]).verdict == "proved"
    # Rotating again lists the second key after the first; each checkpoint still verifies under its own.
    third = keys.rotate_signing_key(key_file)
    assert listed(key_file) == [first.key_id, second.key_id] and third.retired == second.key_id
    await append(store, PLAN, 3)
    latest, new = await checkpoints.publish()
    assert new and latest is not None and latest.key_id == third.signing
    assert (await checkpoints.consistency(first)).ok


def test_rotate_key_refuses_without_a_key_or_with_a_damaged_trusted_file(key_file: Path) -> None:
    with pytest.raises(SigningKeyError, match=r"no checkpoint signing key at .* to rotate"):
        keys.rotate_signing_key(key_file)
    assert not key_file.exists()
    original = keys.fingerprint(load_or_create_signing_key(key_file).public_key())
    keys.trusted_file(key_file).write_text("not a key")
    with pytest.raises(SigningKeyError, match="holds no PEM public key"):
        keys.rotate_signing_key(key_file)
    # Nothing changed: the key signs as before.
    assert keys.fingerprint(keys._load(key_file).public_key()) == original


def test_rotations_at_once_each_list_the_key_they_retire(key_file: Path) -> None:
    first = keys.fingerprint(load_or_create_signing_key(key_file).public_key())
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        rotations = list(pool.map(lambda _: keys.rotate_signing_key(key_file), range(4)))
    retired = listed(key_file)
    # One chain: each rotation retired the key the one before it made, and every retired key is listed.
    assert retired[0] == first and sorted(retired) == sorted(r.retired for r in rotations)
    assert {r.signing for r in rotations} - set(retired) == {
        keys.fingerprint(keys._load(key_file).public_key())
    }


async def test_a_key_removed_while_the_api_runs_is_not_replaced_by_a_new_one(
    store: EventStore, checkpoints: Checkpoints, key_file: Path
) -> None:
    first = await first_checkpoint(store, checkpoints)
    key_file.unlink()
    await append(store, PLAN, 2)
    with pytest.raises(SigningKeyError, match="was removed while the API ran; restore it"):
        await checkpoints.publish()
    assert not key_file.exists()
    assert checkpoints.existing_public_key() is not None  # reads still know the key that signed
    latest = await checkpoints.latest()
    assert latest is not None and latest.digest == first.digest  # nothing was signed


def test_rotate_key_keeps_the_files_the_api_users_when_root_rotates(key_file: Path) -> None:
    load_or_create_signing_key(key_file)
    if os.getuid() == 0:  # root (as CI runs) hands the key to another user, as a service account holds it
        os.chown(key_file, 4321, 4321)
    owner = (key_file.stat().st_uid, key_file.stat().st_gid)
    keys.rotate_signing_key(key_file)
    for path in (key_file, keys.trusted_file(key_file)):
        assert (path.stat().st_uid, path.stat().st_gid) == owner, path
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
