"""Temporal workflow definitions: deterministic, importing only the domain (and their own contracts)."""

from workflows.cycle import CycleWorkflow, cycle_workflow_id
from workflows.plan import PlanWorkflow, plan_id
from workflows.reminders import ScheduledTriggerWorkflow

ALL_WORKFLOWS: list[type] = [PlanWorkflow, CycleWorkflow, ScheduledTriggerWorkflow]

__all__ = ["ALL_WORKFLOWS", "CycleWorkflow", "PlanWorkflow", "cycle_workflow_id", "plan_id"]
