"""CycleWorkflow: one planning cycle (e.g. FY2027) for the whole company, as a durable workflow.

Workflow id = stream id = ``cycle:{cycle_id}``. The run

1. records the cycle's opening (``decide_cycle`` on the OpenCycle it was started with) in its own stream
   through the same ``append_events`` activity the plans use;
2. starts one PlanWorkflow per unit below global (``plan:{cycle}:{unit}``) as an abandoned child, in
   batches: each batch of starts is awaited before the next, so a hierarchy of thousands of units never
   puts thousands of commands into one workflow task. A plan already started (a retried or continued run)
   is skipped;
3. follows its plans: each plan signals its key figures (``PlanFigures``) when they change, and the cycle
   keeps one progress code per plan (phase, signed off, escalated, overdue; ``domain.cycle.progress_code``)
   for its ``progress`` query. It keeps no figures: a region's or the company's consolidated numbers come
   from the plan figures read model (``planloop.readmodels.figures``), which stays small per plan and does
   not grow the cycle's payloads with the number of units;
4. closes on the ``CloseCycle`` Update: the cycle records CycleClosed, then tells every plan that is still
   open to close with the cycle's reason (a signal the plan turns into its own ClosePlan), in batches, and
   completes. A closed cycle leaves no plan running: that is what a planning office expects when it closes
   a fiscal year's cycle.

Plans are children with ParentClosePolicy.ABANDON: they outlive the cycle's runs (continue-as-new) and
their own life is theirs. The cycle continues as new whenever Temporal suggests it (or a test's lower
``history_limit`` is reached), carrying its OpenCycle, CloseCycle, counters and the plans' progress codes.
Starting a plan costs the cycle's history about three events (initiated, started, and completed when the
run that started it ends), so a batch of 100 is some 300 events and the check between batches keeps every
run near Temporal's suggestion of 4,096 events, far from its 51,200 limit, whatever the number of units.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import (
    FailureError,
    WorkflowAlreadyStartedError,
)
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from domain import DomainError
    from domain.commands import ClosePlan
    from domain.cycle import (
        CloseCycle,
        CycleEvent,
        CycleState,
        OpenCycle,
        code_phase,
        cycle_opened,
        decide_cycle,
        evolve_cycle,
        open_plan_command,
        progress_code,
        tally,
    )
    from domain.envelope import EventMetadata
    from domain.rollup import PlanFigures
    from domain.state import TERMINAL_PHASES, Phase
    from workflows.clock import calendar_now
    from workflows.contracts import (
        CLOSE_BY_CYCLE_SIGNAL,
        PLAN_PROGRESS_SIGNAL,
        REMEMBERED_REQUESTS,
        CycleCommand,
        CycleCommandResult,
        CycleOutcome,
        CycleProgress,
        CycleStart,
        PlanStart,
    )
    from workflows.plan import plan_id, refused
    from workflows.recording import append_events, request_id_of, run_ids, stamped


def cycle_workflow_id(cycle_id: str) -> str:
    """The workflow id, which is also the stream id, of a planning cycle."""
    return f"cycle:{cycle_id}"


@workflow.defn(name="CycleWorkflow")
class CycleWorkflow:
    @workflow.init
    def __init__(self, start: CycleStart) -> None:
        self._start = start
        self._version = start.stream_version
        self._started = start.started
        self._close_sent = start.close_sent
        self._processed: list[str] = list(start.processed)
        self._children: list[workflow.ChildWorkflowHandle[Any, Any]] = []  # started by this run
        self._lock = asyncio.Lock()
        # The opening is decided here, in memory, so a CloseCycle arriving with the first workflow task is
        # judged against the opened cycle; run() stores it before any handler acts. A carried run re-derives
        # the same state from the same (stamped) commands and stores nothing again.
        self._open: OpenCycle = start.open
        if start.stream_version == 0:
            self._open = start.open.model_copy(update={"at": calendar_now(start.pace)})
        # A carried run's opening was decided (every unit's chain checked) by the first run: it only folds.
        if start.stream_version == 0:
            self._opening: list[CycleEvent] = decide_cycle(CycleState(), self._open)
            self._state = self._fold(CycleState(), self._opening)
        else:
            self._opening = []
            self._state = self._fold(CycleState(), [cycle_opened(self._open)])
        self._close: CloseCycle | None = start.close
        if start.close is not None:
            self._state = self._fold(self._state, decide_cycle(self._state, start.close))
        # The plans in hierarchy order; each one's OpenPlan is built when its batch starts.
        self._units: list[str] = [p.unit_id for p in self._state.plans]
        self._position = {unit: i for i, unit in enumerate(self._units)}
        self._progress: list[int] = list(start.progress) or [0] * len(self._units)
        for figures in start.figures:  # carried by a run from before the progress codes
            self._heard(figures)

    # -- the run ----------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, start: CycleStart) -> CycleOutcome:
        if self._opening:
            async with self._lock:
                metadata = EventMetadata(
                    actor=self._open.actor,
                    on_behalf_of=self._open.on_behalf_of,
                    source="cycle",
                    request_id=f"{self._stream_id}:open",
                    **run_ids(),
                )
                await self._append(self._opening, metadata)
                self._opening = []
        # Start the plans, a batch at a time; a close stops the starting (nothing left to plan for).
        while self._started < len(self._units) and not self._state.closed:
            await self._continue_as_new_if_due()
            batch = self._units[self._started : self._started + start.batch_size]
            await asyncio.gather(*(self._start_plan(u) for u in batch))
            self._started += len(batch)
        # Follow the plans until the cycle is closed.
        while not self._state.closed:
            await self._continue_as_new_if_due()
            # Each plan's signal wakes the condition, so the history's growth is noticed without a timer.
            await workflow.wait_condition(lambda: self._state.closed or self._continue_as_new_due())
        # Closed: tell every plan still open, a batch at a time.
        assert self._close is not None
        while self._close_sent < self._started:
            await self._continue_as_new_if_due()
            batch = self._units[self._close_sent : min(self._started, self._close_sent + start.batch_size)]
            await asyncio.gather(*(self._tell_to_close(u, self._close) for u in batch))
            self._close_sent += len(batch)
        # The plans this run started are still its children: see them end before the run does, so no
        # run ends while it tracks children that are closing.
        await asyncio.gather(*self._children, return_exceptions=True)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return CycleOutcome(
            cycle_id=self._cycle_id,
            stream_version=self._version,
            plans=len(self._units),
            close_sent=self._close_sent,
        )

    @property
    def _cycle_id(self) -> str:
        assert self._state.cycle_id is not None
        return self._state.cycle_id

    @property
    def _stream_id(self) -> str:
        return cycle_workflow_id(self._cycle_id)

    def _continue_as_new_due(self) -> bool:
        limit = self._start.history_limit
        info = workflow.info()
        return info.is_continue_as_new_suggested() or (
            limit is not None and info.get_current_history_length() >= limit
        )

    async def _continue_as_new_if_due(self) -> None:
        if not self._continue_as_new_due():
            return
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            self._start.model_copy(
                update={
                    "open": self._open,
                    "close": self._close,
                    "stream_version": self._version,
                    "started": self._started,
                    "close_sent": self._close_sent,
                    "progress": self._progress,
                    "figures": [],
                    "processed": self._processed[-REMEMBERED_REQUESTS:],
                }
            )
        )

    async def _start_plan(self, unit_id: str) -> None:
        command = open_plan_command(self._state, unit_id, self._open.actor, self._open.at)
        pid = plan_id(command.cycle_id, command.unit_id)
        try:
            child = await workflow.start_child_workflow(
                "PlanWorkflow",
                PlanStart(
                    plan_id=pid, open=command, cycle_workflow_id=self._stream_id, pace=self._start.pace
                ),
                id=pid,
                parent_close_policy=ParentClosePolicy.ABANDON,
                # A plan that has ended is never opened a second time over its own stream.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            # Started by an earlier run of this cycle (or ended since): it reports its own figures.
            return
        self._children.append(child)
        position = self._position[unit_id]
        if not self._progress[position]:  # opened, nothing drafted, until the plan reports
            self._progress[position] = progress_code(PlanFigures(unit_id=unit_id, phase=Phase.DRAFTING))

    async def _tell_to_close(self, unit_id: str, close: CloseCycle) -> None:
        if code_phase(self._progress[self._position[unit_id]]) in TERMINAL_PHASES:
            return
        order = ClosePlan(
            actor=close.actor,
            at=close.at,
            on_behalf_of=close.on_behalf_of,
            reason=f"cycle {self._cycle_id} closed: {close.reason}",
        )
        handle = workflow.get_external_workflow_handle(plan_id(self._cycle_id, unit_id))
        try:
            await handle.signal(CLOSE_BY_CYCLE_SIGNAL, order)
        except FailureError as err:
            # The plan has ended meanwhile (closed or cancelled): there is nothing left to close.
            workflow.logger.info("plan not told to close", extra={"unit_id": unit_id, "error": str(err)})

    # -- the CloseCycle update ----------------------------------------------------------------------------

    @workflow.update(name="CloseCycle")
    async def close_cycle(self, request: CycleCommand) -> CycleCommandResult:
        request_id = request_id_of(request.request_id)
        await workflow.wait_condition(lambda: not self._opening)
        async with self._lock:
            if request_id in self._processed:
                return self._result(request_id, [], duplicate=True)
            command = stamped(request.command, self._start.pace)
            try:
                events = decide_cycle(self._state, command)
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
            await self._append(events, metadata)
            self._state = self._fold(self._state, events)
            self._close = command
            self._processed.append(request_id)
            return self._result(request_id, events)

    @close_cycle.validator
    def _validate_close(self, request: CycleCommand) -> None:
        if request_id_of(request.request_id) in self._processed:
            return
        try:
            decide_cycle(self._state, stamped(request.command, self._start.pace))
        except DomainError as err:
            raise refused(err) from None

    def _result(
        self, request_id: str, events: Sequence[CycleEvent], duplicate: bool = False
    ) -> CycleCommandResult:
        return CycleCommandResult(
            cycle_id=self._cycle_id,
            request_id=request_id,
            command="CloseCycle",
            events=[e.type for e in events],
            stream_version=self._version,
            closed=self._state.closed,
            duplicate=duplicate,
        )

    # -- the plans' progress --------------------------------------------------------------------------------

    @workflow.signal(name=PLAN_PROGRESS_SIGNAL)
    def plan_progress(self, figures: PlanFigures) -> None:
        # A plan awaits each signal before it sends the next, so its figures arrive in the order it sent them.
        self._heard(figures)

    def _heard(self, figures: PlanFigures) -> None:
        position = self._position.get(figures.unit_id)
        if position is None:
            workflow.logger.warning("progress of a unit not in the cycle", extra={"unit_id": figures.unit_id})
            return
        self._progress[position] = progress_code(figures)

    @workflow.query(name="progress")
    def progress(self) -> CycleProgress:
        counted = tally(self._progress)
        return CycleProgress(
            cycle_id=self._cycle_id,
            plans=len(self._units),
            started=self._started,
            phases=counted.phases,
            signed_off=counted.signed_off,
            escalated=counted.escalated,
            overdue=counted.overdue,
            closed=self._state.closed,
            close_sent=self._close_sent,
            stream_version=self._version,
        )

    # -- the cycle's own stream -----------------------------------------------------------------------------

    @staticmethod
    def _fold(state: CycleState, events: Sequence[CycleEvent]) -> CycleState:
        for event in events:
            state = evolve_cycle(state, event)
        return state

    async def _append(self, events: Sequence[CycleEvent], metadata: EventMetadata) -> None:
        self._version = await append_events(
            self._stream_id, self._version, events, metadata, "the cycle's history"
        )
