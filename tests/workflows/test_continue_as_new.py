"""Continue-as-new: when Temporal suggests it and at every iteration boundary, carrying the state, the
stream version and the answered requests, so a plan running for years never nears the history limits."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from domain import DeadlineKind, LessonLink, Phase
from domain import commands as cmd
from eventstore import EventStore
from planloop.worker import make_worker
from tests.conftest import BIN, free_port
from tests.domain import factory as f
from tests.workflows.resilience import (
    actuals_for,
    approve_through,
    assert_consistent,
    content_for,
    runs_of,
    send,
    start_execution,
    start_plan,
    state_of,
    summary_of,
)
from workflows.contracts import CommandResult

# The production threshold is 4,096 events; the hard limit is 51,200 per run.
SUGGEST_AT = 20
HISTORY_LIMIT = 51_200
HISTORY_BYTES_LIMIT = 50 * 1024 * 1024
ITERATIONS = 10
# What one yearly iteration may add to one run's history: an order of magnitude below the limit.
RUN_BOUND = 2_000


@pytest.fixture
async def suggesting_env() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server that suggests continue-as-new after SUGGEST_AT history events."""
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=str(BIN / "temporal"),
        port=free_port(),
        ui=False,
        dev_server_log_level="warn",
        dev_server_extra_args=[
            "--dynamic-config-value",
            f"limit.historyCount.suggestContinueAsNew={SUGGEST_AT}",
        ],
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
async def own_time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of this test's own: ten years skipped on the session's server would leave
    every later test's plans with all their deadlines long past."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=str(BIN / "temporal-test-server"),
    )
    try:
        yield env
    finally:
        await env.shutdown()


async def test_a_plan_continues_as_new_when_suggested_and_remembers_its_answers(
    suggesting_env: WorkflowEnvironment, store: EventStore, task_queue: str
) -> None:
    client = suggesting_env.client
    async with make_worker(client, store, task_queue):
        handle = await start_plan(client, task_queue)
        first_run = handle.first_execution_run_id
        assert first_run is not None
        draft = cmd.ReviseStrategy(actor=f.AUTHOR, at=f.T0, content=content_for(2027), reason="draft")
        by_request = await send(handle, draft, request_id=f"request-{uuid.uuid4()}")
        by_update_id = f"update-{uuid.uuid4()}"
        lesson_free_note = cmd.ReviseStrategy(
            actor=f.AUTHOR, at=f.T0, content=content_for(2027, how_to_win="Partners first."), reason="v2"
        )
        by_update = await send(handle, lesson_free_note, update_id=by_update_id)
        accepted: list[CommandResult] = [by_request, by_update]
        accepted += await approve_through(handle)
        accepted += await start_execution(handle, 2027)
        # A burst racing the runs' ends: an update the server aborts as its run continues as new is
        # retried by the client on the next run, so every caller gets its answer.
        burst = actuals_for(2027, ["2027-01", "2027-02", "2027-03", "2027-04"])
        accepted += await asyncio.gather(*(send(handle, a) for a in burst))
        runs = await runs_of(client, handle.id, first_run)
        assert len(runs) >= 3, [r.history_length for r in runs]
        assert all(r.continued_as_new for r in runs[:-1]) and not runs[-1].continued_as_new
        # A run ends soon after the suggestion: only the commands already in flight add to it.
        assert max(r.history_length for r in runs) < 10 * SUGGEST_AT, [r.history_length for r in runs]
        assert runs[-1].run_id != first_run

        stored = len(await store.read_stream(handle.id))
        # Both kinds of repeat reach a later run than the one that answered them: answered once.
        again = await send(handle, draft, request_id=by_request.request_id)
        assert again.duplicate and again.stream_version == by_request.stream_version
        assert again.events == by_request.events == ["RevisionRecorded"]
        repeat = await send(handle, lesson_free_note, update_id=by_update_id)
        assert repeat.duplicate and repeat.stream_version == by_update.stream_version
        assert len(await store.read_stream(handle.id)) == stored

        # The carried state keeps working: the next command lands right after the stored stream.
        march = await send(handle, actuals_for(2027, ["2027-05"])[0])
        assert (march.stream_version, march.phase) == (stored + 1, Phase.EXECUTING)
        accepted.append(march)
        await assert_consistent(handle, store, accepted)


async def wait_for(predicate: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")


async def test_ten_yearly_iterations_each_start_a_new_run_far_below_the_history_limit(
    own_time_skipping_env: WorkflowEnvironment, store: EventStore, task_queue: str
) -> None:
    env = own_time_skipping_env
    async with make_worker(env.client, store, task_queue):
        await walk_ten_iterations(env, store, task_queue)


async def walk_ten_iterations(env: WorkflowEnvironment, store: EventStore, task_queue: str) -> None:
    started = time.monotonic()
    handle = await start_plan(env.client, task_queue)
    first_run = handle.first_execution_run_id
    assert first_run is not None
    accepted = [
        await send(
            handle, cmd.ReviseStrategy(actor=f.AUTHOR, at=f.T0, content=content_for(2027), reason="draft")
        )
    ]
    run_ids = [(await handle.describe()).run_id]
    year = 2027
    for iteration in range(1, ITERATIONS + 1):
        accepted += await approve_through(handle)
        accepted += await start_execution(handle, year)
        accepted += await asyncio.gather(*(send(handle, a) for a in actuals_for(year)))

        # The clock does the rest of the year: monthly closes, quarterly reviews due, the period's end.
        summary = await summary_of(handle)
        period_end = next(d.at for d in summary.next_deadlines if d.kind is DeadlineKind.PERIOD_END)
        await env.sleep(period_end - await env.get_current_time() + timedelta(hours=1))

        async def learning() -> bool:
            return (await summary_of(handle)).phase is Phase.LEARNING

        await wait_for(learning)
        state = await state_of(handle)
        assert [r.month for r in state.reports][-12:] == [f"{year}-{m:02d}" for m in range(1, 13)]
        accepted.append(
            await send(
                handle,
                cmd.ScorePlan(actor="eu-president", at=f.T0, plan_quality=7, execution_effectiveness=8),
            )
        )
        lesson = await send(handle, cmd.RecordLesson(actor=f.AUTHOR, at=f.T0, text=f"Lesson of {year}."))
        accepted.append(lesson)
        lesson_id = (await state_of(handle)).lessons[-1].lesson_id
        refine = cmd.RefineStrategy(
            actor=f.AUTHOR,
            at=f.T0,
            content=content_for(year + 1, how_to_win=f"Certified partners, iteration {iteration + 1}."),
            reason=f"FY{year + 1}",
            lesson_links=(LessonLink(changed_field="choices.how_to_win", lesson_id=lesson_id),),
        )
        refined = await send(handle, refine)
        accepted.append(refined)
        assert refined.phase is Phase.DRAFTING

        async def new_run() -> bool:
            return (await handle.describe()).run_id != run_ids[-1]

        await wait_for(new_run)
        run_ids.append((await handle.describe()).run_id)
        summary = await summary_of(handle)
        assert (summary.iteration, summary.stream_version) == (iteration + 1, refined.stream_version)
        year += 1

    runs = await runs_of(env.client, handle.id, first_run)
    lengths = [r.history_length for r in runs]
    sizes = [r.history_bytes for r in runs]
    print(
        f"\n{ITERATIONS} iterations in {time.monotonic() - started:.1f}s: {len(runs)} runs; history events "
        f"per run {lengths} (max {max(lengths)}, limit {HISTORY_LIMIT}); JSON bytes per run {sizes} "
        f"(max {max(sizes)}, limit {HISTORY_BYTES_LIMIT})"
    )
    # One run per iteration, each boundary a continue-as-new, and the runs are the ones we saw begin.
    assert [r.run_id for r in runs] == run_ids
    assert len(runs) == ITERATIONS + 1
    assert all(r.continued_as_new for r in runs[:-1])
    assert max(lengths) < RUN_BOUND
    assert max(sizes) < HISTORY_BYTES_LIMIT // 10

    state = await state_of(handle)
    assert (state.iteration, state.phase) == (ITERATIONS + 1, Phase.DRAFTING)
    assert len(state.history) == ITERATIONS
    await assert_consistent(handle, store, accepted)
