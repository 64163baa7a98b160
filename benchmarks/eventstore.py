"""Event store throughput: planloop's store against the `eventsourcing` peer and a raw asyncpg ceiling.

One run, one PostgreSQL server, a fresh database per system (created here, dropped at the end):

* single-event appends, W = 1, 8, 32 concurrent writers, each on its own stream, one event per transaction
  with an exact expected version, for a fixed time after a short warm-up;
* 10-event batch appends, the same writers, 10 events per transaction;
* reading a 10,000-event stream (best of 5), against a raw asyncpg fetch of the same rows that decodes
  the same JSON.

Usage::

    python benchmarks/eventstore.py [--dsn DSN] [--seconds N] [--json] [--diagnose]

Without --dsn (or PLANLOOP_BENCH_DATABASE_URL) it starts planloop's embedded PostgreSQL in a temporary
folder and removes it afterwards. Progress goes to stderr; the results table (or, with --json, a JSON
document) to stdout. --diagnose adds variants that split planloop's append cost into its parts (see
benchmarks/README.md); it roughly doubles the run time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# Run as a script, this file's folder comes first on sys.path and this file would shadow the eventstore
# package it measures: take the folder off before importing it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _HERE]

import asyncpg  # noqa: E402

from eventstore import EventStore, NewEvent, jsoncodec, queries  # noqa: E402
from eventstore.migrations import apply_migrations, available  # noqa: E402

WRITERS = (1, 8, 32)
BATCH = 10
READ_EVENTS = 10_000
READ_RUNS = 5
WARMUP = 0.5
APPEND_TARGET = 0.70  # of the raw INSERT ceiling, single-event appends
READ_TARGET = 0.50  # of the raw fetch-and-decode rate
EVENT_TYPE = "PlanLineAdjusted"
ES_TOPIC = "planloop.bench:PlanLineAdjusted"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the payload every system stores ----------------------------------------------------------------


def plan_event(seq: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A realistic plan event (about 520 bytes of JSON with its metadata): the same for every system."""
    data = {
        "plan_id": "plan:FY2027:DE-SALES",
        "line_id": f"L-{seq % 250:04d}",
        "cost_center": "CC-4711 Vertrieb Süd",
        "period": "2027-03",
        "currency": "EUR",
        "amount": "125000.00",
        "previous_amount": "118750.50",
        "delta": "6249.50",
        "reason": "Q1 re-forecast after pipeline review",
        "allocations": [
            {"account": "6000-salaries", "amount": "81250.00", "share": "0.65"},
            {"account": "6400-travel", "amount": "25000.00", "share": "0.20"},
            {"account": "6800-software", "amount": "18750.00", "share": "0.15"},
        ],
        "tags": ["reforecast", "q1", "sales"],
        "sequence": seq,
    }
    metadata = {
        "actor": "user:anna.schmidt@example.com",
        "request_id": str(uuid.uuid4()),
        "source": "api",
    }
    return data, metadata


# -- the server and its databases -------------------------------------------------------------------


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def server(dsn: str | None) -> Iterator[tuple[str, str]]:
    """The DSN of a maintenance database on the server to use, and where the server came from."""
    if dsn:
        yield dsn, "external"
        return
    from planloop.embedded.postgres import EmbeddedPostgres
    from planloop.logging import configure_logging

    configure_logging(log_format="console", log_level="WARNING")  # keep stdout for the results
    folder = Path(tempfile.mkdtemp(prefix="planloop-bench-"))
    pg = EmbeddedPostgres(folder / "data", port=free_port())
    try:
        log(f"starting embedded PostgreSQL in {folder}")
        yield pg.start(), "embedded"
    finally:
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


class Databases:
    """Fresh databases on one server, each dropped on exit."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self.tag = uuid.uuid4().hex[:8]
        self.created: list[str] = []

    async def create(self, system: str) -> str:
        name = f"bench_{system}_{self.tag}"
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self.created.append(name)
        return with_database(self.admin_dsn, name)

    async def drop_all(self) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            for name in self.created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


# -- timing ------------------------------------------------------------------------------------------


class CpuMeter:
    """CPU time of this process (the client), of the PostgreSQL server, and of everything else.

    The server is found as the parent of one of its backends, which works whenever it runs on this
    machine and we may read its processes; otherwise only the client and the total are known.
    """

    def __init__(self, postmaster_pid: int | None) -> None:
        import psutil

        self._psutil = psutil
        self._me = psutil.Process()
        self._postmaster = None
        if postmaster_pid is not None:
            with contextlib.suppress(psutil.Error):
                self._postmaster = psutil.Process(postmaster_pid)

    def _server(self) -> float | None:
        if self._postmaster is None:
            return None
        total = 0.0
        with contextlib.suppress(self._psutil.Error):
            for proc in [self._postmaster, *self._postmaster.children()]:
                with contextlib.suppress(self._psutil.Error):
                    times = proc.cpu_times()
                    total += times.user + times.system
        return total

    def snapshot(self) -> tuple[float, float, float, float | None]:
        system = self._psutil.cpu_times()
        # user and nice already include guest time; steal is the hypervisor's, not ours.
        busy = sum(getattr(system, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq"))
        me = self._me.cpu_times()
        return time.perf_counter(), busy, me.user + me.system, self._server()

    @staticmethod
    def cores(start: tuple[float, float, float, float | None], end: tuple[float, float, float, float | None]):
        wall = end[0] - start[0]
        client = (end[2] - start[2]) / wall
        total = (end[1] - start[1]) / wall
        if start[3] is None or end[3] is None:
            return {"client": client, "server": None, "others": None, "total": total}
        server = (end[3] - start[3]) / wall
        return {
            "client": client,
            "server": server,
            "others": max(total - client - server, 0.0),
            "total": total,
        }


METER: CpuMeter | None = None


def _snapshot() -> Any:
    return METER.snapshot() if METER is not None else None


def _cores(start: Any, end: Any) -> dict[str, float | None]:
    return CpuMeter.cores(start, end) if start is not None and end is not None else {}


@dataclass
class Cell:
    """One measurement: events per second, and the CPU (in cores) each party used meanwhile."""

    rate: float
    cpu: dict[str, float | None]


class Clock:
    """Shared by the writers of one cell: they count events until told to stop."""

    def __init__(self, writers: int) -> None:
        self.counts = [0] * writers
        self.stop = False


async def run_async_cell(
    writer: Callable[[int, Clock], Awaitable[None]], writers: int, seconds: float
) -> Cell:
    """Events per second that ``writers`` asyncio tasks sustain, measured after a warm-up."""
    clock = Clock(writers)
    tasks = [asyncio.create_task(writer(i, clock)) for i in range(writers)]
    try:
        await asyncio.sleep(WARMUP)
        start_count, start = sum(clock.counts), _snapshot()
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        end_count, end = sum(clock.counts), _snapshot()
        elapsed = time.perf_counter() - started
        for task in tasks:
            if task.done() and task.exception():
                raise task.exception()  # type: ignore[misc]
    finally:
        clock.stop = True
        await asyncio.gather(*tasks)
    return Cell((end_count - start_count) / elapsed, _cores(start, end))


def run_thread_cell(writer: Callable[[int, Clock], None], writers: int, seconds: float) -> Cell:
    """Events per second that ``writers`` threads sustain, measured after a warm-up."""
    clock = Clock(writers)
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            writer(i, clock)
        except BaseException as err:
            errors.append(err)
            clock.stop = True

    threads = [threading.Thread(target=guarded, args=(i,), daemon=True) for i in range(writers)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(WARMUP)
        start_count, start = sum(clock.counts), _snapshot()
        started = time.perf_counter()
        time.sleep(seconds)
        end_count, end = sum(clock.counts), _snapshot()
        elapsed = time.perf_counter() - started
    finally:
        clock.stop = True
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return Cell((end_count - start_count) / elapsed, _cores(start, end))


# -- planloop ----------------------------------------------------------------------------------------


def new_events(seq: int, count: int) -> list[NewEvent]:
    events = []
    for i in range(count):
        data, metadata = plan_event(seq + i)
        events.append(NewEvent(uuid.uuid4(), EVENT_TYPE, data, metadata))
    return events


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Hand a connection back to the pool without asyncpg's reset round trip, as EventStore does."""


async def planloop_appends(dsn: str, writers: int, batch: int, seconds: float, label: str) -> Cell:
    store = await EventStore.connect(dsn, min_size=writers, max_size=writers)

    async def writer(i: int, clock: Clock) -> None:
        stream, version = f"{label}-w{writers}-b{batch}-{i}", 0
        while not clock.stop:
            await store.append(stream, version, new_events(version, batch))
            version += batch
            clock.counts[i] += batch

    try:
        return await run_async_cell(writer, writers, seconds)
    finally:
        await store.close()


async def planloop_write_stream(dsn: str, stream: str) -> None:
    store = await EventStore.connect(dsn, min_size=1, max_size=2)
    try:
        for version in range(0, READ_EVENTS, 100):
            await store.append(stream, version, new_events(version, 100))
    finally:
        await store.close()


async def best_of(read: Callable[[], Awaitable[int]]) -> float:
    await read()  # warm: prepared statements, buffers
    best = float("inf")
    for _ in range(READ_RUNS):
        start = time.perf_counter()
        count = await read()
        best = min(best, time.perf_counter() - start)
        assert count == READ_EVENTS, f"read {count} events, expected {READ_EVENTS}"
    return READ_EVENTS / best


async def planloop_read(dsn: str, stream: str) -> float:
    store = await EventStore.connect(dsn, min_size=1, max_size=2)

    async def read() -> int:
        return len(await store.read_stream(stream))

    try:
        return await best_of(read)
    finally:
        await store.close()


# The same rows and columns read_stream() selects, decoded with the standard library's json.loads.
RAW_READ = """
SELECT position, stream_id, version, event_id, type, schema_version, data::text AS data,
       metadata::text AS metadata, recorded_at, prev_hash, hash, tx_id::text::bigint AS tx_id
  FROM events WHERE stream_id = $1 ORDER BY version
"""


async def raw_read(dsn: str, stream: str) -> float:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    loads = json.loads

    async def read() -> int:
        rows = await pool.fetch(RAW_READ, stream)
        decoded = [(row, loads(row["data"]), loads(row["metadata"])) for row in rows]
        return len(decoded)

    try:
        return await best_of(read)
    finally:
        await pool.close()


# -- raw asyncpg: the ceiling ------------------------------------------------------------------------

RAW_SCHEMA = """
CREATE TABLE raw_events (
    position   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id  text   NOT NULL,
    version    bigint NOT NULL,
    event_id   uuid   NOT NULL UNIQUE,
    type       text   NOT NULL,
    data       jsonb  NOT NULL,
    metadata   jsonb  NOT NULL,
    UNIQUE (stream_id, version)
)
"""
RAW_INSERT_ONE = """
INSERT INTO raw_events (stream_id, version, event_id, type, data, metadata)
VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb)
"""
RAW_INSERT_MANY = """
INSERT INTO raw_events (stream_id, version, event_id, type, data, metadata)
SELECT $1, u.version, u.event_id, u.type, u.data::jsonb, u.metadata::jsonb
  FROM unnest($2::bigint[], $3::uuid[], $4::text[], $5::text[], $6::text[])
       AS u(version, event_id, type, data, metadata)
"""
# Diagnosis only: the raw insert plus the NOTIFY planloop's append sends, in one statement.
RAW_INSERT_ONE_NOTIFY = """
WITH ins AS (
    INSERT INTO raw_events (stream_id, version, event_id, type, data, metadata)
    VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb)
)
SELECT pg_notify('planloop_events', $1)
"""


async def raw_setup(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(RAW_SCHEMA)
    finally:
        await conn.close()


async def raw_appends(
    dsn: str,
    writers: int,
    batch: int,
    seconds: float,
    label: str,
    notify: bool = False,
    pool_reset: bool = True,
) -> Cell:
    # With pool_reset=False the raw ceiling skips asyncpg's reset round trip on release, as the
    # planloop store does: the tightest ceiling, so the comparison cannot flatter planloop.
    reset = None if pool_reset else _no_reset
    pool = await asyncpg.create_pool(dsn, min_size=writers, max_size=writers, reset=reset)
    dumps = json.dumps

    async def writer(i: int, clock: Clock) -> None:
        stream, version = f"{label}-w{writers}-b{batch}-{i}", 0
        while not clock.stop:
            if batch == 1:
                data, metadata = plan_event(version)
                await pool.execute(
                    RAW_INSERT_ONE_NOTIFY if notify else RAW_INSERT_ONE,
                    stream, version + 1, uuid.uuid4(), EVENT_TYPE, dumps(data), dumps(metadata),
                )  # fmt: skip
            else:
                pairs = [plan_event(version + k) for k in range(batch)]
                await pool.execute(
                    RAW_INSERT_MANY,
                    stream,
                    list(range(version + 1, version + batch + 1)),
                    [uuid.uuid4() for _ in range(batch)],
                    [EVENT_TYPE] * batch,
                    [dumps(d) for d, _ in pairs],
                    [dumps(m) for _, m in pairs],
                )
            version += batch
            clock.counts[i] += batch

    try:
        return await run_async_cell(writer, writers, seconds)
    finally:
        await pool.close()


# -- eventsourcing: the peer -------------------------------------------------------------------------


def es_datastore(dsn: str, pool_size: int) -> Any:
    from eventsourcing.postgres import PostgresDatastore

    parts = urlsplit(dsn)
    return PostgresDatastore(
        dbname=parts.path.lstrip("/"),
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password or "",
        pool_size=pool_size,
    )


def es_recorder(datastore: Any, create: bool = False) -> Any:
    from eventsourcing.postgres import PostgresApplicationRecorder

    recorder = PostgresApplicationRecorder(datastore)
    if create:
        recorder.create_table()
    return recorder


def es_state(seq: int) -> bytes:
    data, metadata = plan_event(seq)
    return json.dumps({"data": data, "metadata": metadata}).encode()


def es_appends(dsn: str, writers: int, batch: int, seconds: float, label: str) -> Cell:
    from eventsourcing.persistence import StoredEvent

    datastore = es_datastore(dsn, writers)
    recorder = es_recorder(datastore)

    def writer(i: int, clock: Clock) -> None:
        originator, version = uuid.uuid4(), 0
        while not clock.stop:
            recorder.insert_events(
                [
                    StoredEvent(originator, version + k + 1, ES_TOPIC, es_state(version + k))
                    for k in range(batch)
                ]
            )
            version += batch
            clock.counts[i] += batch

    try:
        return run_thread_cell(writer, writers, seconds)
    finally:
        datastore.close()


def es_write_stream(dsn: str) -> uuid.UUID:
    from eventsourcing.persistence import StoredEvent

    datastore = es_datastore(dsn, 1)
    try:
        recorder = es_recorder(datastore)
        originator = uuid.uuid4()
        for version in range(0, READ_EVENTS, 100):
            recorder.insert_events(
                [StoredEvent(originator, v + 1, ES_TOPIC, es_state(v)) for v in range(version, version + 100)]
            )
        return originator
    finally:
        datastore.close()


def es_read(dsn: str, originator: uuid.UUID) -> float:
    """select_events() plus json.loads of each event's state, best of READ_RUNS."""
    datastore = es_datastore(dsn, 1)
    try:
        recorder = es_recorder(datastore)

        def read() -> int:
            return len([json.loads(e.state) for e in recorder.select_events(originator)])

        read()
        best = float("inf")
        for _ in range(READ_RUNS):
            start = time.perf_counter()
            count = read()
            best = min(best, time.perf_counter() - start)
            assert count == READ_EVENTS, f"read {count} events, expected {READ_EVENTS}"
        return READ_EVENTS / best
    finally:
        datastore.close()


# -- diagnosis: what planloop's append spends its time on --------------------------------------------

# Where each step of eventstore_append() begins; the step breakdown cuts the function before each.
STEPS = (
    ("advisory lock", "    PERFORM pg_advisory_xact_lock"),
    ("read stream head", "    SELECT s.version, s.last_hash"),
    ("version check (idempotency lookup only on a mismatch)", "    -- A retried append"),
    ("hash chain + INSERT events + result row", "    v_stamp :="),
    ("stream-head upsert", "    INSERT INTO streams AS s"),
)


def truncated_append_function(name: str, upto: int) -> str:
    """eventstore_append() as function ``name``, running only its first ``upto`` steps."""
    sql = next(m.sql for m in available() if "eventstore_append" in m.sql)
    sql = sql.replace("CREATE FUNCTION eventstore_append(", f"CREATE OR REPLACE FUNCTION {name}(")
    if upto >= len(STEPS):
        return sql
    cut = sql.index(STEPS[upto][1])
    return sql[:cut] + "    RETURN;\nEND\n$$;\n"


async def server_step_costs(dsn: str, calls: int = 300) -> dict[str, float]:
    """Median server execution time (EXPLAIN ANALYZE) of the append function cut after each step, and
    of the raw single-row INSERT, single-event appends to fresh streams, interleaved call by call."""
    conn = await asyncpg.connect(dsn)
    try:
        for upto in range(len(STEPS) + 1):
            await conn.execute(truncated_append_function(f"bench_append_{upto}", upto))
        await conn.execute(RAW_SCHEMA)
        explain = "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) "
        samples: dict[str, list[float]] = {}

        async def exec_us(query: str, *args: object) -> float:
            for row in await conn.fetch(explain + query, *args):
                if row[0].startswith("Execution Time:"):
                    return float(row[0].split()[2]) * 1000
            raise AssertionError("EXPLAIN ANALYZE printed no execution time")

        for call in range(calls):
            for upto in range(1, len(STEPS) + 1):
                stream = f"steps-{upto}-{call}"
                event = new_events(call, 1)[0]
                args = (
                    [event.event_id],
                    [event.type],
                    [event.schema_version],
                    [jsoncodec.dumps(event.data)],
                    [jsoncodec.dumps(event.metadata)],
                    [
                        jsoncodec.content_digest(
                            event.event_id, stream, event.type, 1, event.data, event.metadata
                        )
                    ],
                )
                query = queries.APPEND.replace("eventstore_append", f"bench_append_{upto}")
                samples.setdefault(STEPS[upto - 1][0], []).append(await exec_us(query, stream, 0, *args))
            data, metadata = plan_event(call)
            samples.setdefault("raw single-row INSERT (whole statement)", []).append(
                await exec_us(
                    RAW_INSERT_ONE,
                    f"raw-{call}",
                    1,
                    uuid.uuid4(),
                    EVENT_TYPE,
                    json.dumps(data),
                    json.dumps(metadata),
                )
            )
    finally:
        await conn.close()
    medians = {name: sorted(xs)[len(xs) // 2] for name, xs in samples.items()}
    out, before = {}, 0.0
    for name, _ in STEPS:
        out[f"+ {name}"] = medians[name] - before
        before = medians[name]
    out["= whole append function"] = before
    out["raw single-row INSERT (whole statement)"] = medians["raw single-row INSERT (whole statement)"]
    return out


def client_cost_us() -> dict[str, float]:
    """Client CPU per single-event append, microseconds: building the payload, then encoding it."""

    def per_call(fn: Callable[[], object], n: int = 3000) -> float:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - start) / n * 1e6

    data, metadata = plan_event(7)
    event_id = uuid.uuid4()

    def planloop_encode() -> object:
        return (
            jsoncodec.dumps(data),
            jsoncodec.dumps(metadata),
            jsoncodec.content_digest(event_id, "plan-stream", EVENT_TYPE, 1, data, metadata),
        )

    def raw_encode() -> object:
        return json.dumps(data), json.dumps(metadata)

    def canonical_stdlib() -> object:
        body = json.dumps(
            {"data": data, "metadata": metadata, "event_id": str(event_id)},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return hashlib.sha256(body.encode()).hexdigest()

    return {
        "build payload + NewEvent": per_call(lambda: new_events(0, 1)),
        "planloop encode (dumps x2 + canonical digest)": per_call(planloop_encode),
        "raw encode (json.dumps x2)": per_call(raw_encode),
        "stdlib canonical digest (sort_keys, for comparison)": per_call(canonical_stdlib),
    }


# -- the run -----------------------------------------------------------------------------------------

RAW, PLANLOOP, PEER = "raw asyncpg", "planloop", "eventsourcing"
RAW_NO_RESET = "raw asyncpg, no pool reset"
RAW_READ_NAME, PLANLOOP_READ_NAME = "raw asyncpg fetch + json.loads", "planloop read_stream"


@dataclass
class Results:
    machine: dict[str, Any] = field(default_factory=dict)
    command: str = ""
    seconds: float = 0.0
    rounds: int = 0
    # mode -> system -> writers -> {"events_per_s": best round, "samples": [...], "cpu_cores": {...}}
    appends: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    reads: dict[str, float] = field(default_factory=dict)
    client_cpu_us_per_append: dict[str, float] = field(default_factory=dict)
    server_us_per_append: dict[str, float] = field(default_factory=dict)
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    wall_seconds: float = 0.0

    def put(self, mode: str, system: str, writers: int, cell: Cell) -> None:
        entry = (
            self.appends.setdefault(mode, {})
            .setdefault(system, {})
            .setdefault(str(writers), {"events_per_s": 0.0, "samples": [], "cpu_cores": {}})
        )
        entry["samples"].append(round(cell.rate, 1))
        if cell.rate >= entry["events_per_s"]:
            entry["events_per_s"] = cell.rate
            entry["cpu_cores"] = {k: None if v is None else round(v, 2) for k, v in cell.cpu.items()}

    def rate(self, mode: str, system: str, writers: int) -> float:
        return self.appends[mode][system][str(writers)]["events_per_s"]


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


async def machine(admin_dsn: str, origin: str) -> tuple[dict[str, Any], int | None]:
    """What the run ran on, and the pid of the PostgreSQL postmaster when it runs on this machine."""
    import psutil
    import psycopg

    conn = await asyncpg.connect(admin_dsn)
    try:
        version = await conn.fetchval("SHOW server_version")
        settings = {
            name: await conn.fetchval(f"SHOW {name}")
            for name in (
                "shared_buffers",
                "synchronous_commit",
                "fsync",
                "wal_sync_method",
                "max_connections",
            )
        }
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        postmaster = None  # asked while our backend still lives
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(backend).parent()
            postmaster = parent.pid if parent is not None else None
    finally:
        await conn.close()
    info = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "postgresql": f"{version} ({origin}, same host)",
        "postgresql_settings": settings,
        "python": platform.python_version(),
        "asyncpg": importlib.metadata.version("asyncpg"),
        "eventsourcing": importlib.metadata.version("eventsourcing"),
        "psycopg": f"{psycopg.__version__} ({psycopg.pq.__impl__} implementation)",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    return info, postmaster


async def run(admin_dsn: str, origin: str, seconds: float, rounds: int, diagnose: bool) -> Results:
    global METER
    results = Results(seconds=seconds, rounds=rounds)
    results.machine, postmaster = await machine(admin_dsn, origin)
    METER = CpuMeter(postmaster)
    dbs = Databases(admin_dsn)
    try:
        planloop_dsn = await dbs.create("planloop")
        await apply_migrations(planloop_dsn)
        raw_dsn = await dbs.create("raw")
        await raw_setup(raw_dsn)
        peer_dsn = await dbs.create("eventsourcing")
        datastore = es_datastore(peer_dsn, 1)
        es_recorder(datastore, create=True)
        datastore.close()

        async def peer(writers: int, batch: int, seconds: float, label: str) -> Cell:
            return await asyncio.to_thread(es_appends, peer_dsn, writers, batch, seconds, label)

        systems: dict[str, Callable[[int, int, float, str], Awaitable[Cell]]] = {
            RAW: lambda w, b, s, label: raw_appends(raw_dsn, w, b, s, label),
            RAW_NO_RESET: lambda w, b, s, label: raw_appends(raw_dsn, w, b, s, label, pool_reset=False),
            PLANLOOP: lambda w, b, s, label: planloop_appends(planloop_dsn, w, b, s, label),
            PEER: peer,
        }
        # Diagnosis: name -> (append, modes it runs in).
        diagnostics: dict[str, tuple[Callable[[int, int, float, str], Awaitable[Cell]], tuple[str, ...]]] = {}
        if diagnose:
            diagnostics["raw asyncpg + NOTIFY"] = (
                lambda w, b, s, label: raw_appends(raw_dsn, w, b, s, label, notify=True),
                ("single",),
            )

        # Interleave the systems cell by cell and round by round, so that drift on the machine (other
        # programs, checkpoints, table growth) hits them all alike; each figure is its best round.
        for mode, batch in (("single", 1), ("batch10", BATCH)):
            for writers in WRITERS:
                for r in range(rounds):
                    todo = dict(systems)
                    todo.update({name: fn for name, (fn, modes) in diagnostics.items() if mode in modes})
                    for name, append in todo.items():
                        cell = await append(writers, batch, seconds, f"{name}-r{r}")
                        results.put(mode, name, writers, cell)
                        log(f"{mode:8} W={writers:<3} round {r + 1}  {name:36} {cell.rate:9.0f} events/s")

        log(f"writing a {READ_EVENTS}-event stream into planloop and eventsourcing")
        stream = "plan:read-bench"
        await planloop_write_stream(planloop_dsn, stream)
        originator = await asyncio.to_thread(es_write_stream, peer_dsn)
        results.reads[RAW_READ_NAME] = await raw_read(planloop_dsn, stream)
        results.reads[PLANLOOP_READ_NAME] = await planloop_read(planloop_dsn, stream)
        results.reads["eventsourcing select_events + json.loads"] = await asyncio.to_thread(
            es_read, peer_dsn, originator
        )
        for name, rate in results.reads.items():
            log(f"read     {name:42} {rate:9.0f} events/s")
        if diagnose:
            results.client_cpu_us_per_append = client_cost_us()
            steps_dsn = await dbs.create("steps")
            await apply_migrations(steps_dsn)
            results.server_us_per_append = await server_step_costs(steps_dsn)
    finally:
        await dbs.drop_all()
    results.machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results.verdicts = verdicts(results)
    return results


def verdicts(results: Results) -> list[dict[str, Any]]:
    out = []
    for writers in WRITERS:
        for ceiling in (RAW, RAW_NO_RESET):
            ratio = results.rate("single", PLANLOOP, writers) / results.rate("single", ceiling, writers)
            out.append(
                {
                    "target": f"single-event appends, W={writers}: >= {APPEND_TARGET:.0%} of {ceiling}",
                    "ratio": ratio,
                    "pass": ratio >= APPEND_TARGET,
                }
            )
    ratio = results.reads[PLANLOOP_READ_NAME] / results.reads[RAW_READ_NAME]
    out.append(
        {"target": f"stream read: >= {READ_TARGET:.0%} of raw", "ratio": ratio, "pass": ratio >= READ_TARGET}
    )
    return out


# -- output ------------------------------------------------------------------------------------------


def _fmt_cpu(cpu: dict[str, float | None]) -> str:
    if not cpu:
        return "n/a"
    if cpu.get("server") is None:
        return f"{cpu['client']:.2f} / ? / ?"
    return f"{cpu['client']:.2f} / {cpu['server']:.2f} / {cpu['others']:.2f}"


def render(results: Results) -> str:
    m = results.machine
    lines = [
        "planloop event store benchmark",
        "",
        f"machine     {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}",
        f"postgresql  {m['postgresql']}; "
        + ", ".join(f"{k}={v}" for k, v in m["postgresql_settings"].items()),
        f"python      {m['python']}, asyncpg {m['asyncpg']}, eventsourcing {m['eventsourcing']}, "
        f"psycopg {m['psycopg']}",
        f"load avg    {m['load_average_at_start']} at start, {m.get('load_average_at_end')} at end",
        f"command     {results.command}",
        f"method      each append cell: {results.rounds} round(s) of {results.seconds:g} s after a "
        f"{WARMUP:g} s warm-up, best round shown; reads: best of {READ_RUNS}; "
        f"whole run {results.wall_seconds:.0f} s",
        "",
    ]
    width = 22
    for mode, title, unit in (
        ("single", "Single-event appends (events/s = appends/s; % of raw asyncpg in the same column)", 1),
        ("batch10", f"{BATCH}-event batch appends (events/s, (batches/s), % of raw asyncpg)", BATCH),
    ):
        systems = results.appends[mode]
        header = f"{'system':40}" + "".join(f"{'W=' + str(w):>{width}}" for w in WRITERS)
        lines += [title, header, "-" * len(header)]
        for system in systems:
            cells = []
            for w in WRITERS:
                rate = results.rate(mode, system, w)
                extra = f" ({rate / unit:,.0f})" if unit > 1 else ""
                cells.append(f"{rate:,.0f}{extra} {rate / results.rate(mode, RAW, w):4.0%}")
            lines.append(f"{system:40}" + "".join(f"{c:>{width}}" for c in cells))
        lines += ["", "  CPU busy during the best round, in cores: client / PostgreSQL / other programs"]
        for system in systems:
            cpus = [_fmt_cpu(systems[system][str(w)]["cpu_cores"]) for w in WRITERS]
            lines.append(f"  {system:38}" + "".join(f"{c:>{width}}" for c in cpus))
        lines.append("")
    raw_read_rate = results.reads[RAW_READ_NAME]
    lines += [f"Reading one {READ_EVENTS:,}-event stream (events/s, best of {READ_RUNS}; % of raw)"]
    for name, rate in results.reads.items():
        lines.append(f"{name:44}{rate:>12,.0f} {rate / raw_read_rate:5.0%}")
    lines.append("")
    if results.client_cpu_us_per_append:
        lines.append("Client CPU per single-event append (microseconds, one core, no I/O)")
        for name, us in results.client_cpu_us_per_append.items():
            lines.append(f"  {name:54}{us:8.1f}")
        lines.append("")
    if results.server_us_per_append:
        lines.append(
            "Server execution time of one single-event append, by step "
            "(microseconds, median, EXPLAIN ANALYZE)"
        )
        for name, us in results.server_us_per_append.items():
            lines.append(f"  {name:54}{us:8.1f}")
        lines.append("")
    lines.append("Targets")
    for v in results.verdicts:
        lines.append(f"{'PASS' if v['pass'] else 'MISS'}  {v['target']:64} measured {v['ratio']:.0%}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dsn",
        default=os.environ.get("PLANLOOP_BENCH_DATABASE_URL"),
        help="a PostgreSQL to use (a maintenance database; the benchmark creates and drops its own "
        "databases); default: PLANLOOP_BENCH_DATABASE_URL, else an embedded server in a temp folder",
    )
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="measured seconds per append cell and round (default 2)"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds per append cell, best one reported (default 2)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.add_argument(
        "--diagnose", action="store_true", help="also run variants that split planloop's append cost"
    )
    args = parser.parse_args()
    command = ["python", "benchmarks/eventstore.py"]
    skip = False
    for arg in sys.argv[1:]:  # never print a DSN: it may carry a password
        if skip:
            skip = False
        elif arg == "--dsn":
            command.append("--dsn DSN")
            skip = True
        elif arg.startswith("--dsn="):
            command.append("--dsn DSN")
        else:
            command.append(arg)
    started = time.perf_counter()
    with server(args.dsn) as (admin_dsn, origin):
        results = asyncio.run(run(admin_dsn, origin, args.seconds, args.rounds, args.diagnose))
    results.command = " ".join(command)
    results.wall_seconds = time.perf_counter() - started
    print(json.dumps(asdict(results), indent=2) if args.json else render(results))


if __name__ == "__main__":
    main()
