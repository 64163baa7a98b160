"""A plan workflow changed without a patch guard, for the workflow-replay tests: it waits on a timer before
opening the plan, a command the recorded histories never issued, so Temporal's replay must reject it."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.contracts import PlanOutcome, PlanStart
    from workflows.plan import PlanWorkflow


@workflow.defn(name="PlanWorkflow")
class UnguardedPlanWorkflow(PlanWorkflow):
    """PlanWorkflow with a timer added in front of its run, and no ``workflow.patched`` around it."""

    @workflow.run
    async def run(self, start: PlanStart) -> PlanOutcome:
        await workflow.sleep(timedelta(seconds=1))
        return await super().run(start)
