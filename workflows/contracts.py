"""What callers send to a plan's workflow and what they get back: the payloads of its Updates and Queries.

Every payload is a typed pydantic model, so the pydantic data converter brings Decimals and times back
as they were sent (an untyped payload would come back with Decimals as strings).
"""

from __future__ import annotations

from typing import get_args

from pydantic import BaseModel, ConfigDict, Field

from domain import Command, Deadline, Phase, PlanState
from domain.commands import OpenPlan

# How many processed request ids a plan remembers across continue-as-new: Temporal deduplicates update
# ids only within one run, so the workflow keeps its own window of answered requests.
REMEMBERED_REQUESTS = 2000


def command_types() -> tuple[str, ...]:
    """The name of every domain command; each is a workflow Update of the same name."""
    members = get_args(get_args(Command)[0])
    return tuple(cls.model_fields["type"].default for cls in members)


class PlanCommand(BaseModel):
    """The argument of every plan Update: one domain command and where it came from.

    ``request_id`` is the idempotency key: a command whose request id the plan has answered before is
    answered again with the first answer and changes nothing. It defaults to the Update's id.
    """

    model_config = ConfigDict(frozen=True)

    command: Command
    request_id: str | None = None
    source: str = "api"
    correlation_id: str | None = None


class CommandResult(BaseModel):
    """The answer to a plan Update: what the command changed."""

    model_config = ConfigDict(frozen=True)

    plan_id: str
    request_id: str
    command: str
    events: list[str]
    stream_version: int
    revision: int | None
    phase: Phase | None
    duplicate: bool = False


class PlanStart(BaseModel):
    """The input of a PlanWorkflow run: a new plan (with its OpenPlan) or a plan carried over by
    continue-as-new (its state, its stream version and the requests it has answered)."""

    plan_id: str
    open: OpenPlan | None = None
    state: PlanState | None = None
    stream_version: int = 0
    processed: list[CommandResult] = Field(default_factory=list)


class PlanSummary(BaseModel):
    """A plan at a glance: where it is in the loop and what it waits for next."""

    plan_id: str
    cycle_id: str
    unit_id: str
    phase: Phase | None
    iteration: int
    revision: int | None
    signed_off_revision: int | None
    stream_version: int
    next_deadlines: list[Deadline]


class PlanOutcome(BaseModel):
    """What a PlanWorkflow returns when the plan is closed or cancelled."""

    plan_id: str
    phase: Phase
    stream_version: int
    iterations: int
