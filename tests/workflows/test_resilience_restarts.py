"""Plans survive a killed worker, a restarted PostgreSQL and a restarted Temporal server.

Each test fires commands at several plans, breaks one part of the stack in the middle of the flow, brings it
back, lets every command finish and then checks every plan with ``assert_consistent``: no event lost or
written twice, and the workflow's state equals the replay of its stored stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import asyncpg
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from domain import Gate, GateMode, Phase
from domain import commands as cmd
from eventstore import EventStore
from planloop.embedded.postgres import EmbeddedPostgres
from planloop.embedded.temporal import EmbeddedTemporal
from planloop.migrations import migrate
from planloop.worker import make_worker
from tests.conftest import free_port
from tests.domain import factory as f
from tests.workflows.resilience import (
    Refused,
    WorkerProcess,
    actuals_for,
    after,
    assert_consistent,
    content_for,
    executing_plan,
    runs_of,
    send,
    send_retrying,
    start_plan,
    state_of,
    summary_of,
    utc_now,
)
from workflows.contracts import CommandResult

PLANS = 3


async def stream_commands(
    handle: WorkflowHandle, commands: Sequence[cmd.CommandBase], answered: list[CommandResult]
) -> None:
    """Send one command after the other, as a busy client would; collect every answer."""
    for command in commands:
        answer = await send_retrying(handle, command)
        assert not isinstance(answer, Refused), answer
        answered.append(answer)


async def wait_until_answered(
    answered: Sequence[list[CommandResult]], count: int, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while sum(len(a) for a in answered) < count:
        assert time.monotonic() < deadline, f"fewer than {count} commands answered in {timeout}s"
        await asyncio.sleep(0.02)


def retried_appends(runs_attempts: Sequence[Sequence[int]]) -> int:
    return sum(1 for attempts in runs_attempts for a in attempts if a > 1)


async def waiting_appends(conn: asyncpg.Connection) -> int:
    """How many of the worker's appends wait for a stream's lock."""
    return await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name = 'planloop' AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
    )


async def test_a_worker_killed_mid_flow_and_replaced_loses_and_duplicates_nothing(
    dev_server_env: WorkflowEnvironment, database_url: str, store: EventStore, task_queue: str, tmp_path: Path
) -> None:
    client = dev_server_env.client
    address = client.service_client.config.target_host
    log = tmp_path / "worker.log"
    first = WorkerProcess(log, database_url, address, task_queue)
    second = WorkerProcess(log, database_url, address, task_queue)
    blocker = await asyncpg.connect(database_url)
    try:
        first.start()
        await first.wait_polling()
        plans = await asyncio.gather(*(executing_plan(client, task_queue) for _ in range(PLANS + 1)))
        (held, held_setup), streaming = plans[0], plans[1:]

        # One plan's append is surely in flight when the worker dies: it waits for the stream's lock,
        # which the test holds; released after the kill, the dead worker's statement still commits.
        lock = blocker.transaction()
        await lock.start()
        await blocker.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", held.id)
        held_before = await store.stream_version(held.id)
        held_answer = asyncio.create_task(send_retrying(held, actuals_for(2027)[0]))

        answered: list[list[CommandResult]] = [[] for _ in streaming]
        flows = [
            asyncio.create_task(stream_commands(handle, actuals_for(2027)[:24], out))
            for (handle, _), out in zip(streaming, answered, strict=True)
        ]
        await wait_until_answered(answered, 3 * PLANS)
        deadline = time.monotonic() + 10
        while not await waiting_appends(blocker):
            assert time.monotonic() < deadline, "the held plan's append never reached the database"
            await asyncio.sleep(0.05)
        first.kill()
        killed_after = sum(len(a) for a in answered)
        await lock.rollback()
        deadline = time.monotonic() + 10
        while await store.stream_version(held.id) == held_before:
            assert time.monotonic() < deadline, "the dead worker's append did not commit"
            await asyncio.sleep(0.05)

        second.start()
        await second.wait_polling()
        started = time.monotonic()
        answer = await asyncio.wait_for(held_answer, timeout=90)
        await asyncio.wait_for(asyncio.gather(*flows), timeout=90)
        print(f"\nthe flows finished {time.monotonic() - started:.1f}s after the replacement worker polled")
        assert killed_after < 24 * PLANS, "the worker was killed after the flow had ended"

        # The retried append found its events stored by the dead worker and wrote nothing again.
        assert isinstance(answer, CommandResult) and answer.stream_version == held_before + 1
        events = await assert_consistent(held, store, [*held_setup, answer])
        assert len(events) == held_before + 1
        runs = await runs_of(client, held.id, held.first_execution_run_id or "")
        assert max(a for r in runs for a in r.activity_attempts) >= 2
        for (handle, setup), out in zip(streaming, answered, strict=True):
            assert len(out) == 24
            events = await assert_consistent(handle, store, [*setup, *out])
            assert len(events) == setup[-1].stream_version + 24
    finally:
        first.kill()
        second.kill()
        await blocker.close()


async def test_postgresql_restarted_while_appends_are_in_flight(
    dev_server_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    client = dev_server_env.client
    postgres = EmbeddedPostgres(tmp_path / "pg", port=free_port())
    postgres.start()
    store: EventStore | None = None
    try:
        await migrate(postgres.dsn)
        store = await EventStore.connect(postgres.dsn, min_size=2, max_size=10)
        async with make_worker(client, store, task_queue):
            plans = await asyncio.gather(*(executing_plan(client, task_queue) for _ in range(PLANS)))
            answered: list[list[CommandResult]] = [[] for _ in plans]
            flows = [
                asyncio.create_task(stream_commands(handle, actuals_for(2027)[:18], out))
                for (handle, _), out in zip(plans, answered, strict=True)
            ]
            await wait_until_answered(answered, 2 * PLANS)
            await asyncio.to_thread(postgres.stop)
            stopped_after = sum(len(a) for a in answered)
            await asyncio.sleep(3)
            assert sum(len(a) for a in answered) <= stopped_after + PLANS, (
                "commands completed without a database"
            )
            postgres.launch()  # from the event loop's (main) thread: the server dies with this process
            await asyncio.to_thread(postgres.wait_ready)
            await asyncio.wait_for(asyncio.gather(*flows), timeout=90)

            # The same pool serves again: its broken connections were replaced.
            attempts = []
            for (handle, setup), out in zip(plans, answered, strict=True):
                assert len(out) == 18
                events = await assert_consistent(handle, store, [*setup, *out])
                assert len(events) == setup[-1].stream_version + 18
                runs = await runs_of(client, handle.id, handle.first_execution_run_id or "")
                attempts.append([a for r in runs for a in r.activity_attempts])
        assert stopped_after < 18 * PLANS, "PostgreSQL was stopped after the flow had ended"
        # Appends really were in flight while the database was away: Temporal retried them.
        assert retried_appends(attempts) >= 1, attempts
    finally:
        if store is not None:
            await store.close()
        postgres.stop()


def gate_due_soon(seconds: float, remind_before: float) -> tuple[Gate, ...]:
    """The factory's chain, with a first gate of two approvers that falls due in a few seconds."""
    first, *rest = f.chain()
    soon = first.model_copy(
        update={
            "approvers": (f.COUNTRY, "de-country-cfo"),
            "mode": GateMode.ALL,
            "deadline": after(seconds),
            "remind_before": timedelta(seconds=remind_before),
        }
    )
    return (soon, *rest)


async def test_temporal_restarted_on_its_sqlite_file_resumes_every_plan(
    database_url: str, store: EventStore, task_queue: str, tmp_path: Path
) -> None:
    server = EmbeddedTemporal(tmp_path / "temporal", port=free_port(), ui_port=free_port())
    try:
        server.start()
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        async with make_worker(client, store, task_queue):
            handles = await asyncio.gather(
                *(start_plan(client, task_queue, approval_chain=gate_due_soon(14, 7)) for _ in range(PLANS))
            )
            accepted: dict[str, list[CommandResult]] = {h.id: [] for h in handles}
            for handle in handles:
                draft = cmd.ReviseStrategy(actor=f.AUTHOR, at=f.T0, content=content_for(2027), reason="draft")
                accepted[handle.id].append(await send(handle, draft))
                accepted[handle.id].append(await send(handle, cmd.SubmitForApproval(actor=f.AUTHOR, at=f.T0)))

            approvals_to_send = []
            for handle in handles:
                submission = (await state_of(handle)).submission
                assert submission is not None
                approval = cmd.ApprovePlan(actor=f.COUNTRY, at=f.T0, content_hash=submission.content_hash)
                approvals_to_send.append(send_retrying(handle, approval))

            # A plan with a stream of commands in flight across the restart.
            busy, busy_setup = await executing_plan(client, task_queue)
            busy_answers: list[CommandResult] = []
            flow = asyncio.create_task(stream_commands(busy, actuals_for(2027)[:15], busy_answers))
            await wait_until_answered([busy_answers], 2)

            # Stop the server, send commands meanwhile, start it again on the same file.
            await asyncio.to_thread(server.stop)
            stopped_after = len(busy_answers)
            for handle in handles:
                assert "GateEscalated" not in [e.type for e in await store.read_stream(handle.id)]
            pending = [asyncio.create_task(a) for a in approvals_to_send]
            await asyncio.sleep(1)
            server.launch()
            await asyncio.to_thread(server.wait_ready)
            restarted = utc_now()
            approvals = await asyncio.wait_for(asyncio.gather(*pending), timeout=60)
            await asyncio.wait_for(flow, timeout=60)
            assert stopped_after < 15, "the server was stopped after the flow had ended"
            await assert_consistent(busy, store, [*busy_setup, *busy_answers])
            for handle, approval in zip(handles, approvals, strict=True):
                assert isinstance(approval, CommandResult), approval
                assert approval.events == ["ApprovalRecorded"]
                accepted[handle.id].append(approval)
                assert (await summary_of(handle)).phase is Phase.IN_REVIEW

            # The gate's timers survived the restart: the reminder and then the escalation arrive.
            async def escalated(handle: WorkflowHandle) -> bool:
                types = [e.type for e in await store.read_stream(handle.id)]
                return "GateEscalated" in types

            deadline = time.monotonic() + 30
            while not all([await escalated(h) for h in handles]):
                assert time.monotonic() < deadline, "the gate's escalation timer never fired"
                await asyncio.sleep(0.2)
            for handle in handles:
                stored = await store.read_stream(handle.id)
                types = [e.type for e in stored]
                assert types.count("GateReminderSent") == 1 and types.count("GateEscalated") == 1, types
                # Pending while the server was down, fired by the restarted server.
                assert next(e for e in stored if e.type == "GateEscalated").recorded_at > restarted
                submission = (await state_of(handle)).submission
                assert submission is not None
                fallback = await send(
                    handle,
                    cmd.ApprovePlan(actor="de-country-deputy", at=f.T0, content_hash=submission.content_hash),
                )
                assert fallback.events == ["ApprovalRecorded", "GatePassed"]
                accepted[handle.id].append(fallback)
                await assert_consistent(handle, store, accepted[handle.id])
    finally:
        server.stop()
