"""Temporal workflow definitions: deterministic, importing only the domain (and their own contracts)."""

from workflows.plan import PlanWorkflow, plan_id

ALL_WORKFLOWS: list[type] = [PlanWorkflow]

__all__ = ["ALL_WORKFLOWS", "PlanWorkflow", "plan_id"]
