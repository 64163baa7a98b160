"""The determinism guard: recorded histories of a whole fiscal year replay against the current code.

A workflow change that would issue different commands than the recorded runs did (and so break plans that
are running in production) fails here. Guard such a change with workflow.patched() and re-record the
fixtures with `python -m tests.workflows.record_histories` (see the README).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory

from planloop.worker import make_replayer

# Every JSON file below histories/, including subfolders kept from before a patched change.
HISTORIES = sorted((Path(__file__).resolve().parent / "histories").rglob("*.json"))


def test_the_fixtures_cover_the_cycle_and_plans_across_continue_as_new() -> None:
    names = {path.stem for path in HISTORIES}
    assert {"cycle-run1", "plan-DE-run1", "plan-US-run1", "plan-BR-run1"} <= names
    assert any(name.endswith("run2") for name in names if name.startswith("plan-")), (
        "no plan history after continue-as-new was recorded"
    )


@pytest.mark.parametrize("path", HISTORIES, ids=[str(p.relative_to(p.parents[1])) for p in HISTORIES])
async def test_recorded_history_replays_with_the_current_code(path: Path) -> None:
    recorded = json.loads(path.read_text())
    history = WorkflowHistory.from_json(recorded["workflow_id"], recorded["history"])
    result = await make_replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name} no longer replays: {result.replay_failure}"
