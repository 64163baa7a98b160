"""`planloop actuals import FILE --cycle C` against a served API: the file goes plan by plan, the bad
rows come back with their lines, and running the same command again records nothing twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from temporalio.testing import WorkflowEnvironment

from eventstore import EventStore
from planloop.api.auth import Role, create_token
from tests.api import executing
from tests.api.test_cli import last_json, planloop


async def test_actuals_import_from_the_command_line(
    live_api: str, store: EventStore, dev_server_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    admin_token, _ = await create_token(store.pool, "office", [Role.ADMIN])
    erp_token, _ = await create_token(store.pool, "erp", [Role.INTEGRATION])
    admin = {"Authorization": f"Bearer {admin_token}"}
    units = ["C1", "C2"]
    async with httpx.AsyncClient(base_url=live_api, timeout=60) as http:
        cycle_id, months = await executing.executing_cycle(http, admin, dev_server_env.client, units, 2)
    table = executing.rows(units, months[:2], 2)
    table[-1]["value"] = "lots"  # C2's last row: C2 is not imported
    file = tmp_path / "actuals.csv"
    file.write_text(executing.to_csv(table))
    env = {"PLANLOOP_API_URL": live_api, "PLANLOOP_TOKEN": erp_token}

    code, output = await asyncio.to_thread(
        planloop, "actuals", "import", str(file), "--cycle", cycle_id, "--json", env=env
    )
    assert code == 1, output
    report = last_json(output)
    assert [(e["line"], e["unit"], e["code"]) for e in report["errors"]] == [
        (len(table) + 1, "C2", "invalid_value")
    ]
    assert {p["unit_id"]: (p["status"], p["applied"]) for p in report["plans"]} == {
        "C1": ("applied", 6),
        "C2": ("refused", 0),
    }
    version = await store.stream_version(f"plan:{cycle_id}:C1")

    # Again: the key comes from the file's content, so the first answers come back and nothing is re-sent.
    code, output = await asyncio.to_thread(
        planloop, "actuals", "import", str(file), "--cycle", cycle_id, env=env
    )
    assert code == 1 and "is not a number" in output, output
    assert await store.stream_version(f"plan:{cycle_id}:C1") == version
