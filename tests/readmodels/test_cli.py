"""The `readmodels` sub-app the main CLI mounts: rebuild and status against PLANLOOP_DATABASE_URL.

Run in a child process: the commands call asyncio.run, which must not share the test session's loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest

from eventstore import EventStore
from planloop.readmodels import projections
from tests.domain.factory import drafted
from tests.readmodels.plans import PlanWriter


async def readmodels(database_url: str, *args: str) -> tuple[int, str]:
    env = {**os.environ, "PLANLOOP_DATABASE_URL": database_url, "COLUMNS": "200"}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from planloop.readmodels.cli import app; app()",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await child.communicate()
    return child.returncode or 0, output.decode()


async def test_rebuild_and_status_commands(store: EventStore, database_url: str) -> None:
    await PlanWriter(store, drafted()).flush()
    code, output = await readmodels(database_url, "rebuild", "plan_list", "tracking")
    assert code == 0, output
    assert "plan_list: rebuilt from 2 events" in output and "tracking: rebuilt from 0 events" in output
    code, output = await readmodels(database_url, "status")
    assert code == 0, output
    assert "plan_list" in output and "approval_inbox" in output

    # For scripts: one line of JSON each, no progress bar in the way.
    code, output = await readmodels(database_url, "rebuild", "plan_list", "--json")
    assert code == 0 and json.loads(output) == {"plan_list": 2}, output
    code, output = await readmodels(database_url, "status", "plan_list", "--json")
    [shown] = json.loads(output)
    assert (shown["name"], shown["caught_up"]) == ("plan_list", True) and shown["updated_at"], output
    code, output = await readmodels(database_url, "rebuild", "nope")
    assert code == 1 and "no read model called 'nope'" in output


def test_an_unknown_read_model_is_named_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="no read model called 'nope'; choose from plan_list"):
        projections(["nope"])
