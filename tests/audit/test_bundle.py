"""A plan's bundle, exported through the API from a recorded scenario (a real workflow behind it), verifies
offline in a process with no settings, no database and no server; one changed byte fails it, naming what;
and the plan as of any moment, folded from the bundle alone, is what the workflow reported then."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventstore import EventStore
from planloop.audit.bundle import export_bundle, plan_as_of, read_bundle, verify_bundle
from planloop.audit.checkpoints import Checkpoints
from planloop.audit.keys import load_or_create_signing_key
from tests.audit.conftest import Recorded
from tests.audit.test_checkpoints import append

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
    """The recorded plan's bundle (after a checkpoint), and the fingerprint of the signing key."""
    published = await http.post("/audit/checkpoints", headers=admin)
    assert published.status_code == 201, published.text
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
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ok" in checked.stdout and fingerprint in checked.stdout
    assert "key not checked" in checked.stdout  # the key shipped inside proves nothing on its own
    last = recorded.moments[-1].version
    assert f"covered: versions 1 to {last} are in the signed checkpoint" in checked.stdout

    trusted = offline_verify(str(path), "--trusted-key", fingerprint)
    assert trusted.returncode == 0 and "the key is the one you trust" in trusted.stdout
    stranger = offline_verify(str(path), "--trusted-key", "ed25519:" + "0" * 64)
    assert stranger.returncode == 2 and "not by the trusted key" in stranger.stdout

    bundle = read_bundle(path.read_bytes())
    for moment in recorded.moments:
        assert plan_as_of(bundle, version=moment.version) == moment.state, moment.step
        assert plan_as_of(bundle, at=moment.wall_time) == moment.state, moment.step
    signed_off = recorded.moment("signed off")
    shown = offline_verify(str(path), "--version", str(signed_off.version), "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["plan"] == signed_off.state.model_dump(mode="json")
    at_time = offline_verify(str(path), "--as-of", signed_off.wall_time.isoformat())
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


async def test_events_after_the_checkpoint_are_chain_verified_but_not_yet_covered(
    store: EventStore, tmp_path: Path
) -> None:
    checkpoints = Checkpoints(store, lambda: load_or_create_signing_key(tmp_path / "key.pem"))
    await append(store, "plan:FY2027:DE", 1, 2)
    await append(store, "plan:FY2027:FR", 1)
    await checkpoints.publish()
    await append(store, "plan:FY2027:DE", 3)
    text = await export_bundle(
        checkpoints, "plan:FY2027:DE", cycle_id="FY2027", unit_id="DE", exported_at=datetime.now(UTC)
    )
    report = verify_bundle(read_bundle(text.encode()), checkpoints.public_key)
    assert report.ok, report.as_json()
    assert (report.covered_version, report.uncovered_events, report.trusted) == (2, 1, True)
