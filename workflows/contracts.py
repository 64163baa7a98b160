"""What callers send to a plan's workflow and what they get back: the payloads of its Updates and Queries.

Every payload is a typed pydantic model, so the pydantic data converter brings Decimals and times back
as they were sent (an untyped payload would come back with Decimals as strings).
"""

from __future__ import annotations

from typing import get_args

from pydantic import BaseModel, ConfigDict, Field

from domain import Command, Deadline, Phase, PlanState
from domain.calendar import Pace
from domain.commands import OpenPlan
from domain.cycle import CloseCycle, OpenCycle
from domain.rollup import PlanFigures

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
    # SHA-256 of the command as sent (without its time): a request id reused for another command is refused.
    command_digest: str | None = None
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
    # The workflow id of the cycle that opened the plan: the plan reports its figures there as they change.
    # None for a plan started on its own, which then reports to nobody.
    cycle_workflow_id: str | None = None
    # The cycle's compressed calendar (demos, training); None: the plan runs on real time.
    pace: Pace | None = None


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


# -- the cycle ---------------------------------------------------------------------------------------------

# Signals between a cycle and its plans.
PLAN_PROGRESS_SIGNAL = "plan_progress"  # plan -> cycle, payload PlanFigures
CLOSE_BY_CYCLE_SIGNAL = "close_by_cycle"  # cycle -> plan, payload ClosePlan


class CycleStart(BaseModel):
    """The input of a CycleWorkflow run: a new cycle (its OpenCycle), or one carried over by continue-as-new.

    A carried run re-derives the cycle's state from its own (already stored) OpenCycle and CloseCycle with the
    pure cycle decider instead of carrying the state, so the carried payload holds the hierarchy once (packed,
    see domain.cycle) and one small number per plan: about 1 MB for 10,000 units with real names and e-mails.
    """

    open: OpenCycle
    close: CloseCycle | None = None
    stream_version: int = 0
    # How many of the cycle's plans (in hierarchy order) have been started, and been sent the cycle's close.
    started: int = 0
    close_sent: int = 0
    # Each plan's progress code (domain.cycle.progress_code), in hierarchy order; 0: not heard of yet.
    progress: list[int] = Field(default_factory=list)
    # Runs carried over before the progress codes carried every plan's figures: read once, never written.
    figures: list[PlanFigures] = Field(default_factory=list)
    processed: list[str] = Field(default_factory=list)  # request ids of answered CloseCycle updates
    # Plans started (and close signals sent) per workflow task: each batch is awaited before the next.
    batch_size: int = Field(default=100, ge=1, le=1000)
    # Continue as new once the run's history reaches this many events (besides Temporal's own suggestion);
    # tests lower it to prove the carry-over.
    history_limit: int | None = Field(default=None, ge=50)
    # A compressed calendar (demos, training) for the cycle and every plan it starts; None: real time.
    pace: Pace | None = None


class CycleCommand(BaseModel):
    """The argument of the cycle's CloseCycle Update; ``request_id`` makes a retried close answer again."""

    model_config = ConfigDict(frozen=True)

    command: CloseCycle
    request_id: str | None = None
    source: str = "api"
    correlation_id: str | None = None


class CycleCommandResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    cycle_id: str
    request_id: str
    command: str
    events: list[str]
    stream_version: int
    closed: bool
    duplicate: bool = False


class CycleProgress(BaseModel):
    """The cycle at a glance: how many plans there are, how many run, and where they stand."""

    cycle_id: str
    plans: int
    started: int
    phases: dict[str, int]
    signed_off: int
    escalated: int
    overdue: int
    closed: bool
    close_sent: int
    stream_version: int


class CycleOutcome(BaseModel):
    """What a CycleWorkflow returns once closed and every open plan has been told."""

    cycle_id: str
    stream_version: int
    plans: int
    close_sent: int
