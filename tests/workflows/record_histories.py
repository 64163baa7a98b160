"""Record the replay fixtures: the Temporal histories of a whole fiscal year (tests/workflows/scenario.py).

    python -m tests.workflows.record_histories [FOLDER]

Runs the year on a time-skipping test server with a throwaway embedded PostgreSQL, then writes the history
of every run of the cycle workflow and of three plans (DE: pushed back twice; US: escalated gate; BR: late
actuals) to FOLDER (tests/workflows/histories/ by default; its JSON files are replaced). test_replay.py
replays them against the current workflow code, so a change that would break running workflows fails CI.
Re-record only when a change is deliberate and guarded (see "Changing workflow code safely" in the README).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from domain.cycle import CloseCycle
from eventstore import EventStore
from planloop.embedded.postgres import EmbeddedPostgres
from planloop.logging import configure_logging
from planloop.migrations import migrate
from planloop.worker import make_worker
from tests.conftest import free_port
from tests.workflows.scenario import ESCALATED, LATE_ACTUALS, PUSHED_BACK, YearScenario
from workflows import plan_id
from workflows.contracts import CycleCommand
from workflows.cycle import CycleWorkflow, cycle_workflow_id

HISTORIES = Path(__file__).resolve().parent / "histories"
CYCLE_ID = "FY-REPLAY"
TASK_QUEUE = "planloop-record"


async def run_chain(client: Client, workflow_id: str, first_run_id: str | None) -> list[dict]:
    """Every run of a workflow, first to last, following continue-as-new."""
    runs, run_id = [], first_run_id
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        runs.append(json.loads(history.to_json()))
        last = history.events[-1]
        if last.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            return runs
        run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id


async def record(folder: Path) -> list[Path]:
    with tempfile.TemporaryDirectory() as scratch:
        postgres = EmbeddedPostgres(Path(scratch) / "pg", port=free_port())
        dsn = postgres.start()
        try:
            await migrate(dsn)
            store = await EventStore.connect(dsn)
            env = await WorkflowEnvironment.start_time_skipping(
                data_converter=pydantic_data_converter,
                test_server_existing_path=str(Path(sys.executable).parent / "temporal-test-server"),
            )
            try:
                async with make_worker(env.client, store, TASK_QUEUE):
                    year = YearScenario(env, TASK_QUEUE, cycle_id=CYCLE_ID)
                    await year.run()
                    # The planning office closes the cycle: every plan closes, then the cycle completes.
                    close = CloseCycle(actor="planning-office", at=await year.now(), reason="FY done")
                    await year.cycle().execute_update(CycleWorkflow.close_cycle, CycleCommand(command=close))
                    await year.cycle().result()
                    chains = {"cycle": await run_chain(env.client, cycle_workflow_id(CYCLE_ID), None)}
                    for unit in (PUSHED_BACK, ESCALATED, LATE_ACTUALS[0]):
                        first = year.first_run_ids.get(unit)
                        chains[f"plan-{unit}"] = await run_chain(env.client, plan_id(CYCLE_ID, unit), first)
            finally:
                await env.shutdown()
                await store.close()
        finally:
            postgres.stop()
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.json"):
        old.unlink()
    written = []
    for name, runs in chains.items():
        workflow_id = cycle_workflow_id(CYCLE_ID) if name == "cycle" else plan_id(CYCLE_ID, name[5:])
        for number, history in enumerate(runs, start=1):
            path = folder / f"{name}-run{number}.json"
            path.write_text(json.dumps({"workflow_id": workflow_id, "history": history}, indent=1) + "\n")
            written.append(path)
    return written


if __name__ == "__main__":
    configure_logging("console", "WARNING")
    target = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else HISTORIES
    for path in asyncio.run(record(target)):
        print(f"recorded {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
