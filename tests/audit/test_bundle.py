"""A plan's bundle, exported through the API from a recorded scenario (a real workflow behind it), verifies
offline in a process with no settings, no database and no server; one changed byte fails it, naming what;
and the plan as of any moment, folded from the bundle alone, is what the workflow reported then."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
from typer.testing import CliRunner

from eventstore import EventStore, jsoncodec
from planloop.audit import keys
from planloop.audit.bundle import FAILED, VERIFIED, export_bundle, plan_as_of, read_bundle, verify_bundle
from planloop.audit.checkpoints import Checkpoints
from planloop.audit.integrity_cli import integrity_app
from tests.audit.conftest import Recorded
from tests.audit.test_checkpoints import append
from tests.audit.test_tamper import rewrite_consistently

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def signing_key_of_the_test(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PLANLOOP_AUDIT_KEY_FILE", str(tmp_path / "audit-key.pem"))


def offline_verify(*args: str) -> subprocess.CompletedProcess[str]:
    """`planloop audit verify ...` in a process whose environment holds PATH and HOME only: no PLANLOOP_*
    setting, no database, no server to reach."""
    code = "from planloop.audit.integrity_cli import integrity_app; integrity_app()"
    return subprocess.run(
        [sys.executable, "-c", code, "verify", *args],
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "COLUMNS": "200"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
async def exported(
    recorded: Recorded, http: httpx.AsyncClient, admin: Any, auditor: Any, tmp_path: Path
) -> tuple[Path, str]:
    """The recorded plan's bundle, and the fingerprint of the signing key. No checkpoint is published
    before: the export signs one, since none covers the plan yet."""
    assert (await http.get("/audit/checkpoints", headers=auditor)).json() == []
    answer = await http.get(
        f"/audit/cycles/{recorded.cycle_id}/plans/{recorded.unit_id}/bundle", headers=auditor
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    path = tmp_path / "de.jsonl"
    path.write_bytes(answer.content)
    key = await http.get("/audit/public-key", headers=auditor)
    return path, key.json()["key_id"]


async def test_a_bundle_verifies_offline_and_shows_the_plan_as_the_workflow_reported_it(
    exported: tuple[Path, str], recorded: Recorded, tmp_path: Path
) -> None:
    path, fingerprint = exported
    checked = offline_verify(str(path))
    assert checked.returncode == 3, checked.stdout + checked.stderr
    assert "SELF-CONSISTENT, SIGNER NOT CHECKED" in checked.stdout and fingerprint in checked.stdout
    assert "key not checked" in checked.stdout  # the key shipped inside proves nothing on its own
    last = recorded.moments[-1].version
    assert f"covered: versions 1 to {last} are in the signed checkpoint" in checked.stdout

    trusted = offline_verify(str(path), "--trusted-key", fingerprint)
    assert trusted.returncode == 0 and "the key is the one you trust" in trusted.stdout
    assert trusted.stdout.startswith("VERIFIED: bundle of")
    stranger = offline_verify(str(path), "--trusted-key", "ed25519:" + "0" * 64)
    assert stranger.returncode == 2 and "not by the trusted key" in stranger.stdout

    bundle = read_bundle(path.read_bytes())
    for moment in recorded.moments:
        assert plan_as_of(bundle, version=moment.version) == moment.state, moment.step
        assert plan_as_of(bundle, at=moment.wall_time) == moment.state, moment.step
    signed_off = recorded.moment("signed off")
    shown = offline_verify(
        str(path), "--version", str(signed_off.version), "--json", "--trusted-key", fingerprint
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["plan"] == signed_off.state.model_dump(mode="json")
    at_time = offline_verify(
        str(path), "--as-of", signed_off.wall_time.isoformat(), "--trusted-key", fingerprint
    )
    assert at_time.returncode == 0 and f"Stream version  {signed_off.version}" in at_time.stdout


def changed(raw: bytes, line: int, old: bytes, new: bytes) -> bytes:
    """``raw`` with the first ``old`` on line ``line`` (1-based) replaced by ``new`` of the same length."""
    lines = raw.split(b"\n")
    assert old in lines[line - 1] and len(old) == len(new)
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    return b"\n".join(lines)


async def test_one_changed_byte_fails_the_bundle_naming_what(
    exported: tuple[Path, str], tmp_path: Path
) -> None:
    path, _ = exported
    raw = path.read_bytes()
    events = [json.loads(line) for line in raw.splitlines()[1:] if b'"record":"event"' in line]
    third = events[2]
    actor = third["metadata"]["actor"].encode()
    # One bit of the actor of version 3 (line 4; the header is line 1), checked by the offline CLI.
    tampered = tmp_path / "actor.jsonl"
    tampered.write_bytes(changed(raw, 4, actor, actor[:-1] + bytes([actor[-1] ^ 1])))
    result = offline_verify(str(tampered))
    assert result.returncode == 2, result.stdout
    shown = " ".join(result.stdout.split())
    assert "FAILED" in shown and f"chain broken at version 3 (event {third['event_id']})" in shown, shown

    checkpoint_line = len(events) + 2
    record = json.loads(raw.splitlines()[checkpoint_line - 1])
    signature = record["document"]["signature"].encode()
    flipped = signature[:10] + (b"A" if signature[10:11] != b"A" else b"B") + signature[11:]
    report = verify_bundle(read_bundle(changed(raw, checkpoint_line, signature, flipped)))
    assert not report.ok and any("signature of checkpoint" in p for p in report.problems)

    path_hash = record["inclusion"]["path"][0].encode() if record["inclusion"]["path"] else None
    if path_hash is not None:
        flipped_path = path_hash[:-1] + (b"0" if path_hash[-1:] != b"0" else b"1")
        report = verify_bundle(read_bundle(changed(raw, checkpoint_line, path_hash, flipped_path)))
        assert any("inclusion proof does not lead" in p for p in report.problems)

    report = verify_bundle(read_bundle(changed(raw, 3, b'"record":"event"', b'"record":"even\x00"')))
    assert not report.ok and any(p.startswith("line 3 is not valid JSON") for p in report.problems)

    without_last = b"\n".join(line for n, line in enumerate(raw.split(b"\n"), 1) if n != len(events) + 1)
    report = verify_bundle(read_bundle(without_last))
    assert not report.ok and any("events were removed" in p or "announces" in p for p in report.problems)

    # Bytes no hash chain covers: the export's time in the header, an event's global position. The seal
    # (the SHA-256 of every byte before it) fails them, and a bundle cut short has no seal.
    exported_at = json.loads(raw.splitlines()[0])["exported_at"].encode()
    later = exported_at[:-2] + (b"0" if exported_at[-2:-1] != b"0" else b"1") + exported_at[-1:]
    position = f'"position":{third["position"]}'.encode()
    other = position[:-1] + (b"0" if position[-1:] != b"0" else b"1")
    for line, old, new in ((1, exported_at, later), (4, position, other)):
        report = verify_bundle(read_bundle(changed(raw, line, old, new)))
        assert not report.ok and any("do not match the bundle's seal" in p for p in report.problems), line
    report = verify_bundle(read_bundle(b"\n".join(raw.split(b"\n")[:-2]) + b"\n"))
    assert not report.ok and any("has no seal as its last line" in p for p in report.problems)
    # Claiming the seal-less version 1 does not switch the seal off: it is there, so it is checked.
    report = verify_bundle(read_bundle(changed(raw, 1, b'"format_version":2', b'"format_version":1')))
    assert not report.ok and any("do not match the bundle's seal" in p for p in report.problems)
    # Untouched, the same bytes verify.
    assert verify_bundle(read_bundle(raw)).verdict == "self-consistent"


# -- bundles made straight from a store (events the domain does not know: only the chain matters) -----------


@pytest.fixture
async def store_bundle(store: EventStore, tmp_path: Path) -> tuple[Checkpoints, list[dict[str, Any]]]:
    """DE's bundle (three events, the last after the checkpoint) as records, and the checkpoints."""
    checkpoints = Checkpoints(store, tmp_path / "key.pem")
    await append(store, "plan:FY2027:DE", 1, 2)
    await append(store, "plan:FY2027:FR", 1)
    await checkpoints.publish()
    await append(store, "plan:FY2027:DE", 3)
    text = await export_bundle(
        checkpoints,
        "plan:FY2027:DE",
        cycle_id="FY2027",
        unit_id="DE",
        exported_at=datetime.now(UTC),
        publish=False,  # keep version 3 uncovered
    )
    return checkpoints, [json.loads(line) for line in text.splitlines()]


def written(path: Path, records: list[dict[str, Any]]) -> str:
    path.write_text("".join(jsoncodec.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


def rewritten(records: list[dict[str, Any]], version: int, metadata: dict[str, str]) -> list[dict[str, Any]]:
    """The records with event ``version``'s metadata changed and every digest and hash from it on
    recomputed, as anyone holding the bundle can: the chain holds again."""
    changed = copy.deepcopy(records)
    prev = ""
    for r in (r for r in changed if r["record"] == "event"):
        if r["version"] >= version:
            if r["version"] == version:
                r["metadata"] = metadata
            digest = jsoncodec.content_digest(
                UUID(r["event_id"]), r["stream_id"], r["type"], r["schema_version"], r["data"], r["metadata"]
            )
            r["prev_hash"] = prev
            r["hash"] = jsoncodec.chain_hash(
                prev, r["version"], datetime.fromisoformat(r["recorded_at"]), digest
            )
        prev = r["hash"]
    return changed


def verify(*args: str) -> Any:
    return CliRunner().invoke(integrity_app, ["verify", *args])


async def test_events_after_the_checkpoint_fail_the_verdict_unless_allowed(
    store_bundle: tuple[Checkpoints, list[dict[str, Any]]], tmp_path: Path
) -> None:
    checkpoints, records = store_bundle
    bundle = read_bundle("".join(jsoncodec.dumps(r) + "\n" for r in records).encode())
    report = verify_bundle(bundle, checkpoints.public_key)
    assert (report.covered_version, report.uncovered_events, report.trusted) == (2, 1, True)
    assert report.verdict == FAILED and any("--allow-uncovered" in p for p in report.problems)
    allowed = verify_bundle(bundle, checkpoints.public_key, allow_uncovered=True)
    assert allowed.ok and allowed.verdict == VERIFIED, allowed.as_json()

    path = written(tmp_path / "de.jsonl", records)
    refused = verify(path, "--trusted-key", checkpoints.key_id)
    assert refused.exit_code == 2 and "not accepted without --allow-uncovered" in refused.stdout, (
        refused.output
    )
    accepted = verify(path, "--trusted-key", checkpoints.key_id, "--allow-uncovered")
    assert accepted.exit_code == 0, accepted.output
    assert "VERIFIED" in accepted.stdout and "accepted as chain-verified only" in accepted.stdout


async def test_verify_with_a_trusted_key_fails_a_bundle_that_nothing_signed_covers(
    store_bundle: tuple[Checkpoints, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """Rewrite the plan's events, recompute their hashes, and drop the checkpoint and the key, or null the
    inclusion proof: `verify --trusted-key` passed such a bundle (exit 0), since the trusted key was only
    compared with a checkpoint there was."""
    checkpoints, records = store_bundle
    forged = rewritten(records, 1, {"actor": "mallory"})
    stripped = [r for r in forged if r["record"] not in ("checkpoint", "public_key")]
    stripped_path = written(tmp_path / "stripped.jsonl", stripped)
    for extra in ((), ("--allow-uncovered",)):
        result = verify(stripped_path, "--trusted-key", checkpoints.key_id, *extra)
        assert result.exit_code == 2, result.output
        assert "FAILED" in result.stdout and "nothing signed covers its 3 events" in result.stdout

    nulled = [{**r, "inclusion": None} if r["record"] == "checkpoint" else r for r in forged]
    result = verify(written(tmp_path / "nulled.jsonl", nulled), "--trusted-key", checkpoints.key_id)
    assert result.exit_code == 2 and "does not include this plan" in result.stdout, result.output

    # Kept inclusion and checkpoint, rewritten events: the proof no longer matches what is in the bundle.
    result = verify(written(tmp_path / "forged.jsonl", forged), "--trusted-key", checkpoints.key_id)
    assert result.exit_code == 2 and "the history up to it was rewritten" in result.stdout, result.output


async def test_verify_without_a_trusted_key_says_self_consistent_not_verified(
    store_bundle: tuple[Checkpoints, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """Anyone can make a bundle that holds together with its own key: without --trusted-key, the verdict
    says so and the exit code is 3, never the 0 of a verified bundle."""
    checkpoints, records = store_bundle
    path = written(tmp_path / "de.jsonl", records)
    result = verify(path, "--allow-uncovered")
    assert result.exit_code == 3, result.output
    assert "SELF-CONSISTENT, SIGNER NOT CHECKED" in result.stdout and checkpoints.key_id in result.stdout
    assert json.loads(verify(path, "--allow-uncovered", "--json").stdout)["verdict"] == "self-consistent"
    pem = tmp_path / "trusted.pem"
    pem.write_text(keys.public_pem(checkpoints.public_key))
    assert verify(path, "--allow-uncovered", "--trusted-key", str(pem)).exit_code == 0


async def test_bundle_values_are_shown_as_text_not_read_as_markup(
    store_bundle: tuple[Checkpoints, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """A published_at of "[/oops]" made `verify` crash with rich's MarkupError; a crafted one could print a
    green line of its own."""
    checkpoints, records = store_bundle
    changed = copy.deepcopy(records)
    [checkpoint] = [r for r in changed if r["record"] == "checkpoint"]
    checkpoint["document"]["checkpoint"]["published_at"] = "[/oops]"
    del checkpoint["document"]["digest"]
    result = verify(written(tmp_path / "oops.jsonl", changed), "--trusted-key", checkpoints.key_id)
    assert result.exit_code == 2, result.output
    assert "checkpoint 1 of [/oops]: signature does not hold" in result.stdout

    checkpoint["document"]["checkpoint"]["published_at"] = "[green]ok[/green]"
    result = verify(written(tmp_path / "green.jsonl", changed), "--json")
    shown = verify(written(tmp_path / "green.jsonl", changed))
    assert shown.exit_code == 2 and "[green]ok[/green]" in shown.stdout, shown.output
    assert json.loads(result.stdout)["checkpoint_published_at"] == "[green]ok[/green]"


async def test_the_plan_as_of_an_event_the_domain_cannot_fold_is_a_clear_error(
    store_bundle: tuple[Checkpoints, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """`verify --version` on an event the domain does not know gave a traceback (DomainError)."""
    checkpoints, records = store_bundle
    path = written(tmp_path / "de.jsonl", records)
    trusted = ("--trusted-key", checkpoints.key_id, "--allow-uncovered")
    unknown = verify(path, *trusted, "--version", "1")
    assert unknown.exit_code == 1 and isinstance(unknown.exception, SystemExit), unknown.output
    assert "VERIFIED" in unknown.stdout, "the verification is shown all the same"
    assert "error: version 1 (line 2, event " in unknown.stderr and "'Noted'" in unknown.stderr
    beyond = verify(path, *trusted, "--version", "9")
    assert beyond.exit_code == 1 and "no version 9: the bundle's events end at version 3" in beyond.stderr
    failed = verify(path, "--version", "1")  # uncovered events, not allowed: the integrity verdict wins
    assert failed.exit_code == 2 and "error: version 1" in failed.stderr


async def test_a_header_naming_another_plan_than_its_stream_fails(
    store_bundle: tuple[Checkpoints, list[dict[str, Any]]],
) -> None:
    checkpoints, records = store_bundle
    header = {**records[0], "unit_id": "FR"}
    bundle = read_bundle("".join(jsoncodec.dumps(r) + "\n" for r in [header, *records[1:]]).encode())
    report = verify_bundle(bundle, checkpoints.public_key, allow_uncovered=True)
    assert not report.ok
    assert (
        "the header names cycle 'FY2027' and unit 'FR', whose plan is 'plan:FY2027:FR'" in report.problems[0]
    )


async def test_an_export_when_the_publisher_refuses_to_sign_goes_out_with_the_last_checkpoint(
    store: EventStore, database_url: str, tmp_path: Path
) -> None:
    """A store that does not extend its last checkpoint gets no new one; the export still answers (it is
    evidence), and the bundle's verification names the rewrite."""
    checkpoints = Checkpoints(store, tmp_path / "key.pem")
    await append(store, "plan:FY2027:DE", 1, 2)
    await checkpoints.publish()
    dba = await asyncpg.connect(database_url)
    try:
        await rewrite_consistently(dba, 1, {"actor": "mallory"}, stream_id="plan:FY2027:DE")
    finally:
        await dba.close()
    await append(store, "plan:FY2027:DE", 3)
    text = await export_bundle(
        checkpoints, "plan:FY2027:DE", cycle_id="FY2027", unit_id="DE", exported_at=datetime.now(UTC)
    )
    assert [c.sequence for c in await checkpoints.list()] == [1]
    report = verify_bundle(read_bundle(text.encode()), checkpoints.public_key)
    assert report.verdict == FAILED and any(
        "the history up to it was rewritten" in p for p in report.problems
    )
