"""The ceiling for benchmarks/workflows.py: a workflow of planloop's Temporal shape doing no work.

One Update handler that calls one activity (which does nothing) and returns its answer; the run
method only continues as new when Temporal suggests it, as PlanWorkflow does, so a long benchmark
never meets the history limit. Whatever PlanWorkflow spends beyond this (the domain's decide and
evolve, pydantic payloads, the event store's append) is planloop's own cost.

It lives in its own module, imported as ``benchmarks.bare``, because the workflow sandbox refuses
workflow classes defined in ``__main__``.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

TASK_QUEUE = "planloop-bench-bare"
UPDATE = "command"


@activity.defn(name="bare_noop")
async def noop(payload: str) -> str:
    return payload


@workflow.defn(name="BareWorkflow")
class BareWorkflow:
    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: workflow.info().is_continue_as_new_suggested())
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new()

    @workflow.update(name=UPDATE)
    async def command(self, payload: str) -> str:
        return await workflow.execute_activity(noop, payload, start_to_close_timeout=timedelta(seconds=30))
