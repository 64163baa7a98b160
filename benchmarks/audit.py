"""Audit tools: verifying the store, signed checkpoints, consistency and bundles, against a raw hashlib floor.

One run, one PostgreSQL server, one fresh migrated database (created here, dropped at the end):

* fill: N plans of M events each through ``EventStore.append`` (B events per append, W concurrent writers,
  each plan appended to round by round, so plans' events interleave as they do in a real cycle); each event
  is an ``ActualRecorded`` as the plan workflow stores it (data about 200 bytes) with the metadata the
  append activity writes;
* ``EventStore.verify`` of one plan (best of 5), and ``EventStore.verify_all`` over every event;
* the peer, side by side in the same rounds: a raw floor that reads every row of the events table with one
  asyncpg cursor and recomputes the SHA-256 chain links with hashlib, once from the stored content digests
  (the least any chain verification costs) and once recomputing the content digests too, with the standard
  library's C JSON encoder (the least a verification that also checks content costs in Python);
* ``Checkpoints.publish``: the first checkpoint (every event walked), then one after one more append;
* ``Checkpoints.consistency`` against the first checkpoint (the kept one), and the auditor's own proof:
  ``export_extension`` from the first checkpoint to the second (best of 3), then ``read_extension`` +
  ``prove_extension`` of it off the server (best of 5);
* ``export_bundle`` of one plan (best of 3), offline ``read_bundle`` + ``verify_bundle`` of it (best of 5),
  and the bundle's bytes per event.

Usage::

    python benchmarks/audit.py [--dsn DSN] [--plans N] [--events M] [--batch B] [--writers W]
                               [--rounds R] [--json]

Without --dsn (or PLANLOOP_BENCH_DATABASE_URL) it starts planloop's embedded PostgreSQL in a temporary
folder and removes it afterwards. The signing key is made in a temporary folder, removed afterwards.
Progress goes to stderr; the results table (or, with --json, a JSON document) to stdout.
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
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

# Run as a script, this file's folder comes first on sys.path and benchmarks/eventstore.py would shadow
# the eventstore package: take the folder off before importing it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _HERE]

import asyncpg  # noqa: E402

from domain.codec import decode_event  # noqa: E402
from eventstore import EventStore, NewEvent, jsoncodec  # noqa: E402
from planloop.audit.bundle import export_bundle, read_bundle, verify_bundle  # noqa: E402
from planloop.audit.checkpoints import Checkpoints  # noqa: E402
from planloop.audit.extension import export_extension, prove_extension, read_extension  # noqa: E402
from planloop.migrations import migrate  # noqa: E402

CYCLE = "FY2027"
SHORT_RUNS = 5  # best of, for the operations that take milliseconds
EXPORT_RUNS = 3

T = TypeVar("T")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the events: plan events as the workflow stores them -----------------------------------------------------


def unit_of(plan: int) -> str:
    return f"U{plan:05d}"


def stream_of(plan: int) -> str:
    return f"plan:{CYCLE}:{unit_of(plan)}"  # workflows.plan.plan_id


MEASURES = ("revenue", "csf-pipeline", "csf-churn")
STATUSES = ("on_track", "at_risk", "off_track")
START = datetime(2027, 1, 2, 8, 0, tzinfo=UTC)


def plan_event(plan: int, version: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """An ActualRecorded's data as domain.codec.encode_event writes it (about 200 bytes of JSON), and the
    metadata the append activity stores (EventMetadata, none-valued fields left out)."""
    month = 1 + (version // len(MEASURES)) % 12
    measure = MEASURES[version % len(MEASURES)]
    data = {
        "schema_version": 1,
        "actor": f"ctl-{plan % 97:02d}",
        "at": jsoncodec.utc_stamp(START + timedelta(minutes=version * 7)),
        "on_behalf_of": None,
        "type": "ActualRecorded",
        "entry_id": f"a-{version:05d}",
        "measure": measure,
        "month": f"2027-{month:02d}",
        "value": f"{100_000 + 137 * version + plan}.00",
        "source": "erp",
        "target": "110000.00",
        "status": STATUSES[(plan + version) % len(STATUSES)],
    }
    metadata = {
        "actor": data["actor"],
        "source": "api",
        "request_id": str(uuid.uuid4()),
        "workflow_id": stream_of(plan),
        "run_id": "5b0f2e3c-6d7a-4c1e-9f21-3a8b7c6d5e4f",
    }
    return data, metadata


def new_events(plan: int, after: int, count: int) -> list[NewEvent]:
    events = []
    for version in range(after + 1, after + count + 1):
        data, metadata = plan_event(plan, version)
        events.append(NewEvent(uuid.uuid4(), "ActualRecorded", data, metadata))
    return events


# -- the server and the database -----------------------------------------------------------------------------


def with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))


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


@contextlib.asynccontextmanager
async def fresh_database(admin_dsn: str) -> Any:
    """A new database, migrated, dropped on exit (with its connections) whatever happens."""
    name = f"bench_audit_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        dsn = with_database(admin_dsn, name)
        await migrate(dsn)
        yield dsn
    finally:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        log(f"dropped database {name}")


# -- timing --------------------------------------------------------------------------------------------------


class ServerCpu:
    """CPU seconds of the PostgreSQL backends serving the benchmark's database, when the server runs on this
    machine. Only those: other programs (test suites) may share the server. A backend is told by its process
    title ("postgres: [cluster: ]user database host(port) state"); every connection the benchmark uses stays
    open across a measurement, so no backend's time is lost when it exits."""

    def __init__(self, postmaster: int | None) -> None:
        import psutil

        self._psutil = psutil
        self._proc = None
        self.database = ""
        if postmaster is not None:
            with contextlib.suppress(psutil.Error):
                self._proc = psutil.Process(postmaster)

    def per_backend(self) -> dict[int, float] | None:
        if self._proc is None or not self.database:
            return None
        out: dict[int, float] = {}
        with contextlib.suppress(self._psutil.Error):
            for proc in self._proc.children():
                with contextlib.suppress(self._psutil.Error, IndexError):
                    if f" {self.database} " in proc.cmdline()[0]:
                        times = proc.cpu_times()
                        out[proc.pid] = times.user + times.system
        return out

    @staticmethod
    def spent(before: dict[int, float] | None, after: dict[int, float] | None) -> float | None:
        if before is None or after is None:
            return None
        return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


@dataclass
class Timing:
    """One measurement: wall seconds, and the CPU seconds this process and the server spent meanwhile."""

    seconds: float
    client_cpu: float
    server_cpu: float | None
    events: int = 0  # events the operation covered, for a rate
    runs: list[float] = field(default_factory=list)  # every run's wall seconds, when more than one

    @property
    def rate(self) -> float | None:
        return self.events / self.seconds if self.events and self.seconds > 0 else None


SERVER: ServerCpu | None = None


async def timed(fn: Callable[[], Awaitable[T]]) -> tuple[T, Timing]:
    server_before = SERVER.per_backend() if SERVER else None
    cpu_before = time.process_time()
    start = time.perf_counter()
    result = await fn()
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_before
    server_after = SERVER.per_backend() if SERVER else None
    return result, Timing(wall, cpu, ServerCpu.spent(server_before, server_after))


async def best_of(runs: int, fn: Callable[[], Awaitable[T]]) -> tuple[T, Timing]:
    """The fastest of ``runs`` runs (after one warm-up run), with every run's wall time."""
    await fn()
    best: tuple[T, Timing] | None = None
    walls = []
    for _ in range(runs):
        result, timing = await timed(fn)
        walls.append(timing.seconds)
        if best is None or timing.seconds < best[1].seconds:
            best = (result, timing)
    assert best is not None
    best[1].runs = [round(w, 4) for w in walls]
    return best


def keep_best(kept: Timing | None, new: Timing) -> Timing:
    runs = [*(kept.runs if kept else []), round(new.seconds, 3)]
    best = new if kept is None or new.seconds < kept.seconds else kept
    best.runs = runs
    return best


# -- the fill ------------------------------------------------------------------------------------------------


async def fill(store: EventStore, plans: int, events: int, batch: int, writers: int) -> int:
    """Every plan to ``events`` events, ``batch`` per append; writer i owns plans i, i+W, ... and appends to
    them round by round with exact expected versions."""
    done = 0
    total = plans * events
    next_report = time.perf_counter() + 10

    async def writer(i: int) -> None:
        nonlocal done, next_report
        mine = range(i, plans, writers)
        for after in range(0, events, batch):
            count = min(batch, events - after)
            for plan in mine:
                await store.append(stream_of(plan), after, new_events(plan, after, count))
                done += count
                if time.perf_counter() >= next_report:
                    next_report += 10
                    log(f"  filled {done:,} of {total:,} events")

    await asyncio.gather(*(writer(i) for i in range(min(writers, plans))))
    return done


# -- the raw floor -------------------------------------------------------------------------------------------

# What EventStore.verify reads, for every row at once, in chain order.
RAW_ROWS = """
SELECT position, stream_id, version, event_id, type, schema_version, data::text AS data,
       metadata::text AS metadata, recorded_at, prev_hash, hash, content_digest
  FROM events
 ORDER BY stream_id, version
"""
RAW_CHUNK = 5000


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def raw_floor(conn: asyncpg.Connection, content: bool) -> tuple[int, int]:
    """Read every event row in one repeatable-read snapshot and recompute each chain link with hashlib; with
    ``content`` also each content digest, with json.loads/json.dumps. Returns (events, mismatches)."""
    sha256, loads = hashlib.sha256, json.loads
    dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
    checked = mismatches = 0
    stream, prev = None, ""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        cursor = await conn.cursor(RAW_ROWS)
        while rows := await cursor.fetch(RAW_CHUNK):
            for row in rows:
                if row["stream_id"] != stream:
                    stream, prev = row["stream_id"], ""
                digest = row["content_digest"]
                if content:
                    body = dumps(
                        {
                            "data": loads(row["data"]),
                            "event_id": str(row["event_id"]),
                            "metadata": loads(row["metadata"]),
                            "schema_version": row["schema_version"],
                            "stream_id": stream,
                            "type": row["type"],
                        }
                    )
                    if sha256(body.encode()).hexdigest() != digest:
                        mismatches += 1
                link = f"{prev}|{row['version']}|{_stamp(row['recorded_at'])}|{digest}"
                if row["prev_hash"] != prev or sha256(link.encode()).hexdigest() != row["hash"]:
                    mismatches += 1
                prev = row["hash"]
                checked += 1
    return checked, mismatches


# -- the run -------------------------------------------------------------------------------------------------

VERIFY_ALL = "EventStore.verify_all"
RAW_CHAIN = "raw: read rows + chain links (hashlib)"
RAW_CONTENT = "raw: + content digests (json + hashlib)"


@dataclass
class Results:
    machine: dict[str, Any] = field(default_factory=dict)
    command: str = ""
    plans: int = 0
    events_per_plan: int = 0
    batch: int = 0
    writers: int = 0
    rounds: int = 0
    events: int = 0
    data_bytes: float = 0.0
    metadata_bytes: float = 0.0
    timings: dict[str, dict[str, Any]] = field(default_factory=dict)
    bundle_bytes: int = 0
    bundle_events: int = 0
    extension_bytes: int = 0
    wall_seconds: float = 0.0

    def put(self, name: str, timing: Timing) -> None:
        entry = asdict(timing)
        entry["rate"] = timing.rate
        self.timings[name] = entry


async def machine(admin_dsn: str, origin: str) -> tuple[dict[str, Any], int | None]:
    """What the run ran on, and the pid of the PostgreSQL postmaster when it runs on this machine."""
    import psutil

    conn = await asyncpg.connect(admin_dsn)
    try:
        version = await conn.fetchval("SHOW server_version")
        settings = {
            name: await conn.fetchval(f"SHOW {name}") for name in ("shared_buffers", "synchronous_commit")
        }
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        postmaster = None
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(backend).parent()
            postmaster = parent.pid if parent is not None else None
    finally:
        await conn.close()
    cpu = "unknown"
    with contextlib.suppress(OSError):
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            cpu,
        )
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "postgresql": f"{version} ({origin}, same host); "
        + ", ".join(f"{k}={v}" for k, v in settings.items()),
        "python": platform.python_version(),
        "asyncpg": importlib.metadata.version("asyncpg"),
        "cryptography": importlib.metadata.version("cryptography"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    return info, postmaster


async def run(admin_dsn: str, origin: str, args: argparse.Namespace) -> Results:
    global SERVER
    results = Results(
        plans=args.plans,
        events_per_plan=args.events,
        batch=args.batch,
        writers=args.writers,
        rounds=args.rounds,
    )
    results.machine, postmaster = await machine(admin_dsn, origin)
    SERVER = ServerCpu(postmaster)
    # A real plan event: the domain reads it back.
    data, _ = plan_event(1, 1)
    decode_event("ActualRecorded", 1, data)
    sample = [plan_event(p, v) for p in range(10) for v in range(1, 31)]
    results.data_bytes = sum(len(jsoncodec.dumps(d).encode()) for d, _ in sample) / len(sample)
    results.metadata_bytes = sum(len(jsoncodec.dumps(m).encode()) for _, m in sample) / len(sample)

    key_folder = Path(tempfile.mkdtemp(prefix="planloop-bench-key-"))
    try:
        async with fresh_database(admin_dsn) as dsn:
            SERVER.database = urlsplit(dsn).path.lstrip("/")
            store = await EventStore.connect(dsn, min_size=2, max_size=max(2, args.writers))
            try:
                await measure(results, store, dsn, key_folder, args)
            finally:
                await store.close()
    finally:
        shutil.rmtree(key_folder, ignore_errors=True)
    results.machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


async def rounds(
    kept: dict[str, Timing],
    store: EventStore,
    raw_conn: asyncpg.Connection,
    args: argparse.Namespace,
    total: int,
) -> None:
    """verify_all and its floor, alternated round by round so that drift on the machine hits them alike."""
    for r in range(args.rounds):
        whole, timing = await timed(store.verify_all)
        assert whole.ok and whole.events_checked == total and whole.streams_checked == args.plans, whole
        timing.events = whole.events_checked
        kept[VERIFY_ALL] = keep_best(kept.get(VERIFY_ALL), timing)
        log(f"round {r + 1}  {VERIFY_ALL:44} {timing.seconds:7.2f} s")
        for name, content in ((RAW_CHAIN, False), (RAW_CONTENT, True)):
            (checked, mismatches), timing = await timed(lambda content=content: raw_floor(raw_conn, content))
            assert checked == total and mismatches == 0, (name, checked, mismatches)
            timing.events = checked
            kept[name] = keep_best(kept.get(name), timing)
            log(f"round {r + 1}  {name:44} {timing.seconds:7.2f} s")


async def measure(
    results: Results, store: EventStore, dsn: str, key_folder: Path, args: argparse.Namespace
) -> None:
    total = args.plans * args.events
    log(f"filling {args.plans:,} plans x {args.events:,} events ({total:,}), {args.batch} per append")
    written, timing = await timed(lambda: fill(store, args.plans, args.events, args.batch, args.writers))
    timing.events = written
    results.events = written
    results.put(f"fill: EventStore.append, {args.writers} writers", timing)
    log(f"  {timing.seconds:.1f} s, {timing.rate:,.0f} events/s")
    one = stream_of(args.plans // 2)

    report, timing = await best_of(SHORT_RUNS, lambda: store.verify(one))
    assert report.ok and report.events_checked == args.events, report
    timing.events = report.events_checked
    results.put("EventStore.verify, one plan", timing)
    log(f"verify one plan: {timing.seconds * 1000:.1f} ms")

    kept: dict[str, Timing] = {}
    raw_conn = await asyncpg.connect(dsn)  # opened outside the timings, as the store's pool is
    try:
        await rounds(kept, store, raw_conn, args, total)
    finally:
        await raw_conn.close()
    for name in (VERIFY_ALL, RAW_CHAIN, RAW_CONTENT):
        results.put(name, kept[name])

    checkpoints = Checkpoints(store, key_folder / "audit-key.pem")
    checkpoints.signing_key  # noqa: B018 - make the key now, outside the timings
    (first, new), timing = await timed(checkpoints.publish)
    assert new and first is not None and first.body["events"] == total, first
    timing.events = total
    results.put("Checkpoints.publish, the first", timing)
    log(f"first checkpoint: {timing.seconds:.2f} s")

    grown = stream_of(0)
    await store.append(grown, args.events, new_events(0, args.events, args.batch))
    (second, new), timing = await timed(checkpoints.publish)
    assert new and second is not None and second.sequence == first.sequence + 1, second
    results.put(f"Checkpoints.publish after one append ({args.batch} events)", timing)
    log(f"next checkpoint: {timing.seconds:.2f} s")

    consistency, timing = await timed(lambda: checkpoints.consistency(first))
    assert consistency.ok and consistency.events_checked == total + args.batch, consistency.as_json()
    timing.events = consistency.events_checked
    results.put("Checkpoints.consistency with the first", timing)
    log(f"consistency: {timing.seconds:.2f} s")

    # The auditor's own proof: the server's extension document from the first checkpoint to the second, then
    # reading and proving it off the server (every head's Merkle root, every appended event's chain link).
    extension, timing = await best_of(EXPORT_RUNS, lambda: export_extension(checkpoints, first, second))
    results.put("export_extension, first to second checkpoint", timing)
    document = extension.encode("utf-8")
    results.extension_bytes = len(document)

    async def prove() -> Any:
        return prove_extension(first, read_extension(document), checkpoints.public_key)

    proof, timing = await best_of(SHORT_RUNS, prove)
    assert proof.verdict == "proved" and proof.events_appended == args.batch, proof.as_json()
    timing.events = proof.events_appended
    results.put("read_extension + prove_extension (auditor)", timing)
    log(f"extension: {len(document):,} bytes, proved off the server in {timing.seconds * 1000:.1f} ms")

    moment = datetime.now(UTC)
    bundle, timing = await best_of(
        EXPORT_RUNS,
        lambda: export_bundle(
            checkpoints, one, cycle_id=CYCLE, unit_id=one.rsplit(":", 1)[1], exported_at=moment
        ),
    )
    timing.events = args.events
    results.put("export_bundle, one plan", timing)
    raw = bundle.encode("utf-8")
    results.bundle_bytes, results.bundle_events = len(raw), args.events

    async def offline() -> Any:
        return verify_bundle(read_bundle(raw), trusted=checkpoints.key_id)

    verdict, timing = await best_of(SHORT_RUNS, offline)
    assert verdict.ok and verdict.covered_version == args.events and verdict.signature_ok, verdict.as_json()
    timing.events = args.events
    results.put("read_bundle + verify_bundle (offline)", timing)
    log(f"bundle: {len(raw):,} bytes, offline verify {timing.seconds * 1000:.1f} ms")


# -- output --------------------------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.1f} ms"


def _cpu(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


def render(results: Results) -> str:
    m = results.machine
    lines = [
        "planloop audit tools benchmark",
        "",
        f"machine     {m['cpu']}, {m['cores']} cores, {m['os']}",
        f"postgresql  {m['postgresql']}",
        f"python      {m['python']}, asyncpg {m['asyncpg']}, cryptography {m['cryptography']}",
        f"load avg    {m['load_average_at_start']} at start, {m.get('load_average_at_end')} at end",
        f"command     {results.command}",
        f"data        {results.plans:,} plans x {results.events_per_plan:,} events = "
        f"{results.events:,} events, "
        f"{results.batch} per append; ActualRecorded data {results.data_bytes:.0f} B, "
        f"metadata {results.metadata_bytes:.0f} B (JSON)",
        f"method      verify_all and the raw floor: best of {results.rounds} alternated round(s); verify of "
        f"one plan and offline bundle verify: best of {SHORT_RUNS}; export: best of {EXPORT_RUNS}; "
        f"the rest once; whole run {results.wall_seconds:.0f} s",
        "",
    ]
    header = f"{'operation':52}{'time':>12}{'events/s':>12}{'CPU s client':>14}{'CPU s server':>14}"
    lines += [header, "-" * len(header)]
    for name, t in results.timings.items():
        rate = f"{t['rate']:,.0f}" if t["rate"] else ""
        lines.append(
            f"{name:52}{_duration(t['seconds']):>12}{rate:>12}"
            f"{_cpu(t['client_cpu']):>14}{_cpu(t['server_cpu']):>14}"
        )
    lines.append("")
    # On a shared machine wall time swings with other programs; CPU seconds (this process and the
    # database's backends) hold up better, so the comparison is given both ways.
    verify = results.timings[VERIFY_ALL]
    for floor in (RAW_CHAIN, RAW_CONTENT):
        raw = results.timings[floor]
        by_cpu = ""
        if verify["server_cpu"] is not None and raw["server_cpu"] is not None:
            cpu = (raw["client_cpu"] + raw["server_cpu"]) / (verify["client_cpu"] + verify["server_cpu"])
            by_cpu = f", {cpu:.0%} by CPU seconds (client + server)"
        lines.append(
            f'verify_all vs "{floor}": {verify["rate"] / raw["rate"]:.0%} of its rate by wall time{by_cpu}'
        )
    lines.append(
        f"extension from the first to the second checkpoint: {results.extension_bytes:,} bytes "
        f"({results.plans:,} streams' heads twice, {results.batch} appended events)"
    )
    per_event = results.bundle_bytes / results.bundle_events
    lines.append(
        f"bundle of one plan: {results.bundle_bytes:,} bytes for {results.bundle_events} events "
        f"= {per_event:,.0f} bytes per event (header, checkpoint, inclusion proof and key included)"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dsn",
        default=os.environ.get("PLANLOOP_BENCH_DATABASE_URL"),
        help="a PostgreSQL to use (a maintenance database; the benchmark creates and drops its own "
        "database); default: PLANLOOP_BENCH_DATABASE_URL, else an embedded server in a temp folder",
    )
    parser.add_argument("--plans", type=int, default=1000, help="plans (streams) to fill (default 1000)")
    parser.add_argument("--events", type=int, default=100, help="events per plan (default 100)")
    parser.add_argument("--batch", type=int, default=10, help="events per append (default 10)")
    parser.add_argument("--writers", type=int, default=4, help="concurrent writers while filling (default 4)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="rounds of verify_all and the raw floor, best shown (default 1)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = parser.parse_args()
    for name in ("plans", "events", "batch", "writers", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be 1 or more, got {getattr(args, name)}")
    command = ["python", "benchmarks/audit.py"]
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
        results = asyncio.run(run(admin_dsn, origin, args))
    results.command = " ".join(command)
    results.wall_seconds = time.perf_counter() - started
    print(json.dumps(asdict(results), indent=2) if args.json else render(results))


if __name__ == "__main__":
    main()
