"""Temporal workflow definitions: deterministic, importing only the domain (and their own contracts)."""

from workflows.cycle import CycleWorkflow, cycle_workflow_id
from workflows.plan import PlanWorkflow, plan_id

ALL_WORKFLOWS: list[type] = [PlanWorkflow, CycleWorkflow]

__all__ = ["ALL_WORKFLOWS", "CycleWorkflow", "PlanWorkflow", "cycle_workflow_id", "plan_id"]
