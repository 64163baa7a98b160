"""PlanWorkflow: one plan (an org unit in one planning cycle) as a durable workflow.

The workflow is the single writer of its event stream (stream id = workflow id, e.g.
``plan:FY2027:DE-SALES``). Every domain command is an Update of the same name:

* its validator runs ``decide`` against the current state, so a refused command returns the domain
  error's code and message and leaves no trace in the workflow's history;
* its handler runs ``decide`` again under the plan's lock (an earlier command may have changed the
  state meanwhile), appends the events through the ``append_events`` activity with ids from
  ``workflow.uuid4()`` (a retried activity writes nothing twice), folds them into the state with
  ``evolve`` and answers with the new revision and stream version.

Between commands the run method sleeps on a durable timer until the plan's next deadline
(``domain.next_deadlines``) and then feeds the clock in as a ``Tick`` command: gate reminders and
escalations, the monthly close, quarterly reviews falling due, the end of the execution period. A
command that moves a deadline wakes the loop, so the timers follow the calendar.

The run continues as new at every iteration boundary and whenever Temporal suggests it, carrying the
state, the stream version and the answered request ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from domain import (
        DomainError,
        Phase,
        PlanState,
        canonical_json,
        decide,
        evolve,
        initial_state,
        next_deadlines,
    )
    from domain.commands import ClosePlan, CommandBase, OpenPlan, Tick
    from domain.cycle import progress_code
    from domain.envelope import EventMetadata
    from domain.events import Event
    from domain.rollup import PlanFigures, plan_figures
    from domain.state import TERMINAL_PHASES
    from workflows.clock import calendar_now, timer_until
    from workflows.contracts import (
        CLOSE_BY_CYCLE_SIGNAL,
        PLAN_PROGRESS_SIGNAL,
        REMEMBERED_REQUESTS,
        CommandResult,
        PlanCommand,
        PlanOutcome,
        PlanStart,
        PlanSummary,
        command_types,
    )
    from workflows.recording import (
        APPEND_RETRY,
        APPEND_TIMEOUT,
        append_events,
        request_id_of,
        run_ids,
        stamped,
    )

CLOCK = "system:clock"
# workflow.patched id: a plan reports to its cycle only when its progress code changes (was: any figure).
REPORT_PROGRESS_CODES = "report-progress-codes"

# Replay-safe (silent while a worker replays history), with the workflow and run ids on every line.
log = workflow.LoggerAdapter(logging.getLogger("planloop.workflows.plan"), None)
log.workflow_info_on_message = False


def plan_id(cycle_id: str, unit_id: str) -> str:
    """The workflow id, which is also the stream id, of a unit's plan in a cycle."""
    return f"plan:{cycle_id}:{unit_id}"


_NOT_UPDATES = frozenset(
    {
        OpenPlan.model_fields["type"].default,
        ClosePlan.model_fields["type"].default,
        Tick.model_fields["type"].default,
    }
)


def command_digest(command: CommandBase) -> str:
    """What a request asked for, whatever time it was sent at: a reused request id is checked against it."""
    return hashlib.sha256(canonical_json(command.model_dump(mode="json", exclude={"at"}))).hexdigest()


def refused(err: DomainError) -> ApplicationError:
    # Non-retryable: a plain exception in a handler would fail the workflow task and hang the plan.
    return ApplicationError(err.message, err.code, type=err.code, non_retryable=True)


@workflow.defn(name="PlanWorkflow")
class PlanWorkflow:
    @workflow.init
    def __init__(self, start: PlanStart) -> None:
        self._plan_id = start.plan_id
        self._state: PlanState = start.state or initial_state()
        self._version = start.stream_version
        self._processed: dict[str, CommandResult] = {r.request_id: r for r in start.processed}
        self._lock = asyncio.Lock()
        self._changed = False
        # The cycle's compressed calendar, if it runs at a pace (demos, training): every time below is on it.
        self._pace = start.pace
        # The plan is opened here, in memory, so validators of Updates that arrive with the first
        # workflow task judge against the opened plan; run() stores the opening before any handler acts.
        self._opening: list[Event] = []
        self._open_refused: ApplicationError | None = None
        if start.open is not None and self._state.phase is None:
            try:
                self._opening = decide(self._state, stamped(start.open, self._pace))
            except DomainError as err:
                # Raised here it would fail every workflow task for ever; run() fails the plan with it.
                self._open_refused = refused(err)
            for event in self._opening:
                self._state = evolve(self._state, event)
        self._iteration = self._state.iteration
        # A plan of a cycle reports its figures to the cycle when they change. A fresh plan's cycle knows it
        # has just been opened; a carried-over run reports once, in case the last change went unreported.
        self._cycle_workflow_id = start.cycle_workflow_id
        self._reported: PlanFigures | None = plan_figures(self._state) if self._opening else None
        self._report_due = self._cycle_workflow_id is not None and not self._opening
        # Opening, closing and the clock belong to the cycle and the workflow itself, not to callers.
        for name in command_types():
            if name not in _NOT_UPDATES:
                workflow.set_update_handler(name, self._handler(name), validator=self._validator(name))

    # -- the run: open, then sleep until the next deadline or command --------------------------------

    @workflow.run
    async def run(self, start: PlanStart) -> PlanOutcome:
        if self._open_refused is not None:
            raise self._open_refused
        if self._opening:
            async with self._lock:
                assert start.open is not None
                metadata = EventMetadata(
                    actor=start.open.actor, source="cycle", request_id=f"{self._plan_id}:open", **run_ids()
                )
                await self._append(self._opening, metadata)
                self._opening = []
        while True:
            if self._report_due:
                await self._report_progress()
            if self._state.phase in TERMINAL_PHASES:
                await workflow.wait_condition(workflow.all_handlers_finished)
                return PlanOutcome(
                    plan_id=self._plan_id,
                    phase=self._state.phase,
                    stream_version=self._version,
                    iterations=self._state.iteration,
                )
            if self._continue_as_new_due():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._carry_over())
            due = next_deadlines(self._state)
            if due and due[0].at <= calendar_now(self._pace):
                await self._tick()
                continue
            self._changed = False
            timeout = timer_until(self._pace, due[0].at) if due else None
            # A timeout is the normal way out: the next deadline has come.
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._changed or self._report_due or self._continue_as_new_due(), timeout=timeout
                )

    def _continue_as_new_due(self) -> bool:
        return (
            self._state.phase is not None and self._state.iteration != self._iteration
        ) or workflow.info().is_continue_as_new_suggested()

    def _carry_over(self) -> PlanStart:
        remembered = list(self._processed.values())[-REMEMBERED_REQUESTS:]
        return PlanStart(
            plan_id=self._plan_id,
            state=self._state,
            stream_version=self._version,
            processed=remembered,
            cycle_workflow_id=self._cycle_workflow_id,
            pace=self._pace,
        )

    async def _report_progress(self) -> None:
        self._report_due = False
        figures = plan_figures(self._state)
        if self._cycle_workflow_id is None or figures == self._reported:
            return
        if (
            self._reported is not None
            and progress_code(figures) == progress_code(self._reported)
            and workflow.patched(REPORT_PROGRESS_CODES)
        ):
            # The cycle keeps only each plan's progress code (the roll-up reads the plan figures read model):
            # a change the code does not show is not worth a signal, and a workflow task here and there.
            return
        try:
            await workflow.get_external_workflow_handle(self._cycle_workflow_id).signal(
                PLAN_PROGRESS_SIGNAL, figures
            )
        except FailureError as err:
            # The cycle has ended (or never ran): the plan carries on; its stream is what counts.
            log.info("cycle not told of progress", extra={"plan_id": self._plan_id, "error": str(err)})
        self._reported = figures

    async def _tick(self) -> None:
        async with self._lock:
            tick = Tick(actor=CLOCK, at=calendar_now(self._pace))
            try:
                events = decide(self._state, tick)
            except DomainError as err:  # pragma: no cover - Tick is refused only on a closed plan
                log.warning("clock tick refused", extra={"code": err.code, "plan_id": self._plan_id})
                return
            if events:
                log.info(
                    "deadlines passed", extra={"plan_id": self._plan_id, "events": [e.type for e in events]}
                )
                await self._append(events, EventMetadata(actor=CLOCK, source="clock", **run_ids()))
                self._evolve(events)

    # -- updates ---------------------------------------------------------------------------------------

    def _handler(self, name: str) -> Callable[[PlanCommand], Coroutine[Any, Any, CommandResult]]:
        async def handle(request: PlanCommand) -> CommandResult:
            self._check_name(name, request)
            request_id = request_id_of(request.request_id)
            await workflow.wait_condition(lambda: not self._opening)
            async with self._lock:
                answered = self._answered(request_id, request)
                if answered is not None:
                    return answered.model_copy(update={"duplicate": True})
                return await self._execute(request, request_id)

        return handle

    def _validator(self, name: str) -> Callable[[PlanCommand], None]:
        def validate(request: PlanCommand) -> None:
            self._check_name(name, request)
            if self._answered(request_id_of(request.request_id), request) is not None:
                return
            try:
                decide(self._state, stamped(request.command, self._pace))
            except DomainError as err:
                log.info(
                    "command refused", extra={"command": name, "code": err.code, "plan_id": self._plan_id}
                )
                raise refused(err) from None

        return validate

    def _answered(self, request_id: str, request: PlanCommand) -> CommandResult | None:
        """The first answer to this request id, if any; refuses the id when it came with another command."""
        answered = self._processed.get(request_id)
        if answered is not None and answered.command_digest not in (None, command_digest(request.command)):
            raise ApplicationError(
                f"request id {request_id!r} was already used for another {answered.command} command; "
                "a request id (Idempotency-Key) names one command: send a new one for a new command",
                type="request_id_reused",
                non_retryable=True,
            )
        return answered

    @staticmethod
    def _check_name(name: str, request: PlanCommand) -> None:
        if request.command.type != name:
            raise ApplicationError(
                f"the {name} update carries a {request.command.type} command; "
                f"send each command as the update of its own name ({request.command.type})",
                type="command_mismatch",
                non_retryable=True,
            )

    async def _execute(self, request: PlanCommand, request_id: str) -> CommandResult:
        command: CommandBase = stamped(request.command, self._pace)
        try:
            events = decide(self._state, command)  # type: ignore[arg-type]
        except DomainError as err:
            raise refused(err) from None
        metadata = EventMetadata(
            actor=command.actor,
            on_behalf_of=command.on_behalf_of,
            source=request.source,
            request_id=request_id,
            correlation_id=request.correlation_id,
            **run_ids(),
        )
        if events:
            await self._append(events, metadata)
            self._evolve(events)
        latest = self._state.latest_revision
        result = CommandResult(
            plan_id=self._plan_id,
            request_id=request_id,
            command=command.type,  # type: ignore[attr-defined]
            command_digest=command_digest(request.command),
            events=[e.type for e in events],
            stream_version=self._version,
            revision=None if latest is None else latest.number,
            phase=self._state.phase,
        )
        self._processed[request_id] = result
        log.info(
            "command applied",
            extra={
                "plan_id": self._plan_id,
                "command": result.command,
                "request_id": request_id,
                "events": result.events,
                "stream_version": self._version,
            },
        )
        return result

    def _evolve(self, events: list[Event]) -> None:
        for event in events:
            self._state = evolve(self._state, event)
        self._changed = True
        self._report_due = self._cycle_workflow_id is not None

    async def _append(self, events: list[Event], metadata: EventMetadata) -> None:
        self._version = await append_events(
            self._plan_id, self._version, events, metadata, "the plan's history"
        )

    # -- the cycle's close ---------------------------------------------------------------------------------

    @workflow.signal(name=CLOSE_BY_CYCLE_SIGNAL)
    async def close_by_cycle(self, order: ClosePlan) -> None:
        """The cycle was closed: close the plan with the cycle's reason, unless it has ended already."""
        await workflow.wait_condition(lambda: not self._opening)
        async with self._lock:
            request_id = f"{self._cycle_workflow_id or 'cycle'}:close"
            if request_id in self._processed or self._state.phase in TERMINAL_PHASES:
                return
            # The cycle is finishing: it does not need to hear of this close (nor could it, once ended).
            self._cycle_workflow_id = None
            try:
                await self._execute(PlanCommand(command=order, source="cycle"), request_id)
            except ApplicationError as err:
                # A signal cannot answer; raising would fail the plan. Its history shows nothing changed.
                log.warning("close by cycle refused", extra={"plan_id": self._plan_id, "code": err.type})

    # -- queries ---------------------------------------------------------------------------------------

    @workflow.query(name="state")
    def state(self) -> PlanState:
        return self._state

    @workflow.query(name="summary")
    def summary(self) -> PlanSummary:
        latest = self._state.latest_revision
        return PlanSummary(
            plan_id=self._plan_id,
            cycle_id=self._state.cycle_id,
            unit_id=self._state.unit_id,
            phase=self._state.phase,
            iteration=self._state.iteration,
            revision=None if latest is None else latest.number,
            signed_off_revision=self._state.signed_off_revision,
            stream_version=self._version,
            next_deadlines=next_deadlines(self._state),
        )


# APPEND_* stay importable from here for workflows written against this module before recording.py.
__all__ = ["APPEND_RETRY", "APPEND_TIMEOUT", "Phase", "PlanWorkflow", "plan_id"]
