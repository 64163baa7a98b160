"""Temporal workflow definitions: deterministic, importing only the domain.

Not built yet: PlanWorkflow and CycleWorkflow arrive with the workflow issue; until then the worker
runs the event-store activities only.
"""

ALL_WORKFLOWS: list[type] = []
