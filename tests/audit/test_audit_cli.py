"""`planloop audit history | as-of | diff` against a served API, and `planloop audit replay-workflow` against
the Temporal server itself (configured, or found through the status file of a running `planloop up`)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from eventstore import EventStore
from planloop.api.auth import Role
from planloop.cli import app
from planloop.stack import STATE_FILE
from tests.api.conftest import MakeToken, cycle_definition, unique_cycle, wait_for_plans
from tests.audit.conftest import DELEGATE, Recorded, record_scenario
from tests.audit.test_workflow_replay import altered_replayer
from tests.workflows import scenario


def planloop(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


def last_json(output: str) -> Any:
    # The worker of this process logs to the same stdout the runner captures: the answer is the last line.
    return json.loads(output.strip().splitlines()[-1])


@pytest.fixture
async def served(
    live_api: str, make_token: MakeToken, dev_server_env: WorkflowEnvironment, store: EventStore
) -> Recorded:
    """The recorded scenario, driven through the served API (one worker per task queue and process)."""
    async with httpx.AsyncClient(base_url=live_api) as http:
        admin = await make_token("planning-office", Role.ADMIN)
        cycle_id = unique_cycle()
        opened = await http.post("/cycles", json=cycle_definition(cycle_id), headers=admin)
        assert opened.status_code == 201, opened.text
        await wait_for_plans(http, admin, cycle_id, scenario.UNITS)
        return await record_scenario(http, make_token, dev_server_env.client, store, cycle_id)


@pytest.fixture
async def cli_env(live_api: str, make_token: MakeToken) -> dict[str, str]:
    token = await make_token("auditor-cli", Role.AUDITOR)
    return {"PLANLOOP_API_URL": live_api, "PLANLOOP_TOKEN": token["Authorization"].removeprefix("Bearer ")}


async def test_history_as_of_and_diff_through_the_api(served: Recorded, cli_env: dict[str, str]) -> None:
    cycle_id, unit = served.cycle_id, served.unit_id

    async def run(*args: str) -> tuple[int, str]:
        return await asyncio.to_thread(planloop, "audit", *args, env=cli_env)

    code, output = await run("history", cycle_id, unit, "--actor", "eu-cfo", "--json")
    assert code == 0, output
    entries = last_json(output)
    assert [e["type"] for e in entries] == ["ChangesRequested", "ApprovalDelegated", "ApprovalRecorded"]
    assert (entries[-1]["actor"], entries[-1]["on_behalf_of"]) == (DELEGATE, "eu-cfo")
    assert entries[-1]["content_hash"] == served.hashes[3]
    code, output = await run(
        "history", cycle_id, unit, "--type", "ApprovalRecorded", "--type", "PlanSignedOff", "--json"
    )
    assert [e["type"] for e in last_json(output)] == ["ApprovalRecorded"] * 4 + ["PlanSignedOff"]
    signed = served.moment("signed off")
    code, output = await run("history", cycle_id, unit, "--until", signed.wall_time.isoformat())
    assert code == 0 and f"History of {unit} in {cycle_id} ({signed.version} events)" in output, output
    code, output = await run("history", cycle_id, unit, "--since", "2027-01-01T00:00")
    assert code == 1 and "time_zone_missing" in output and "no time zone" in output

    code, output = await run("as-of", cycle_id, unit, "--version", str(signed.version), "--json")
    assert code == 0, output
    shown = last_json(output)
    assert shown["version"] == signed.version and shown["plan"]["phase"] == "approved"
    assert shown["plan"]["signed_off_revision"] == 3
    pushed = served.moment("pushed back")
    code, output = await run("as-of", cycle_id, unit, "--at", pushed.wall_time.isoformat())
    assert code == 0 and f"stream version {pushed.version}" in output and "changes_requested" in output, (
        output
    )
    explained = served.moments[-1]
    code, output = await run("as-of", cycle_id, unit, "--version", str(explained.version))
    deviation = explained.state.deviations[0]
    assert code == 0 and f"Deviation {deviation.deviation_id}" in output, output
    assert f"explained: {deviation.explanation[:20]}" in output and "Actuals" in output and "CSFs" in output
    code, output = await run("as-of", cycle_id, unit)
    assert code == 1 and "either --at TIME" in output

    code, output = await run("diff", cycle_id, unit, "--from-revision", "1", "--to-revision", "3")
    assert code == 0 and "Revision 1 -> 3" in output and "programs dropped: P-WEBINAR" in output, output
    code, output = await run(
        "diff",
        cycle_id,
        unit,
        "--from-time",
        served.moment("drafted").wall_time.isoformat(),
        "--to-time",
        served.moment("revised").wall_time.isoformat(),
        "--json",
    )
    assert code == 0, output
    moments = last_json(output)
    assert (moments["from_revision"], moments["to_revision"]) == (1, 3)
    assert moments["to_moment"]["content_hash"] == served.hashes[3]
    code, output = await run(
        "diff", cycle_id, unit, "--from-time", signed.wall_time.isoformat(), "--to-time", "2100-01-01T00:00Z"
    )
    assert code == 0 and "content: no change" in output and "the rest of the plan" in output, output
    assert '"approved" -> "executing"' in output and "deviations" in output, output
    code, output = await run("diff", cycle_id, unit, "--from-revision", "1", "--to-time", "2027-01-01T00:00Z")
    assert code == 1 and "not a mix" in output


@pytest.fixture
def no_temporal_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLANLOOP_TEMPORAL_ADDRESS", raising=False)
    monkeypatch.delenv("PLANLOOP_TEMPORAL_NAMESPACE", raising=False)


@pytest.fixture
def running_up(tmp_path: Path, dev_server_env: WorkflowEnvironment) -> Iterator[Path]:
    """A data folder whose status file says `planloop up` runs there with the dev server as its Temporal:
    the pid is a live process whose command line names planloop, as a real `planloop up`'s does."""
    stand_in = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "planloop-up-stand-in"]
    )
    address = dev_server_env.client.service_client.config.target_host
    state = {
        "pid": stand_in.pid,
        "postgres": {"dsn": "postgresql://planloop@127.0.0.1:1/planloop", "embedded": True},
        "temporal": {"address": address, "namespace": "default", "embedded": True, "ui_url": None},
    }
    (tmp_path / STATE_FILE).write_text(json.dumps(state))
    try:
        yield tmp_path
    finally:
        stand_in.kill()
        stand_in.wait()


async def test_replay_workflow_reports_each_run_and_exits_non_zero_when_one_is_not_reproduced(
    served: Recorded,
    dev_server_env: WorkflowEnvironment,
    monkeypatch: pytest.MonkeyPatch,
    no_temporal_setting: None,
    running_up: Path,
    tmp_path: Path,
) -> None:
    env = {"PLANLOOP_TEMPORAL_ADDRESS": dev_server_env.client.service_client.config.target_host}
    plan = f"{served.cycle_id}/{served.unit_id}"

    code, output = await asyncio.to_thread(planloop, "audit", "replay-workflow", plan, env=env)
    assert code == 0, output
    assert "reproduces every recorded decision of 1 run(s)" in output
    code, output = await asyncio.to_thread(
        planloop, "audit", "replay-workflow", served.stream_id, "--json", env=env
    )
    report = last_json(output)
    assert code == 0 and report["reproduced"] and report["workflow_id"] == served.stream_id
    assert [r["reproduced"] for r in report["runs"]] == [True]

    # No address configured: the Temporal of the `planloop up` running on the data folder.
    code, output = await asyncio.to_thread(
        planloop, "audit", "replay-workflow", plan, "--data-dir", str(running_up), "--json"
    )
    assert code == 0 and last_json(output)["reproduced"], output
    nothing_runs = tmp_path / "empty"
    nothing_runs.mkdir()
    code, output = await asyncio.to_thread(
        planloop, "audit", "replay-workflow", plan, "--data-dir", str(nothing_runs)
    )
    assert code == 1 and "set PLANLOOP_TEMPORAL_ADDRESS, or start `planloop up`" in output

    code, output = await asyncio.to_thread(planloop, "audit", "replay-workflow", "FY-NONE/XX", env=env)
    assert code == 1 and "has no workflow plan:FY-NONE:XX" in output
    code, output = await asyncio.to_thread(planloop, "audit", "replay-workflow", "DE", env=env)
    assert code == 1 and "CYCLE/UNIT" in output

    # The code installed here changed without a patch guard: the run is not reproduced, exit 3.
    monkeypatch.setattr("planloop.worker.make_replayer", altered_replayer)
    code, output = await asyncio.to_thread(planloop, "audit", "replay-workflow", plan, env=env)
    assert code == 3, output
    assert "is not reproduced at history event" in output and "Nondeterminism" in output
