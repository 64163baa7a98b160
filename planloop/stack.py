"""`planloop up`: the whole stack in one process, and the state file `planloop status` reads.

With no addresses configured, PostgreSQL and a Temporal dev server run embedded under the data folder; a
configured address replaces that part with an external server. Migrations are applied, then the worker and
the HTTP API (with its background work: read models, webhooks) run until Ctrl-C or SIGTERM, and everything
this process started is stopped in reverse order: API, worker, Temporal, PostgreSQL. The data folder is
locked for the process's lifetime, so two stacks never share one cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from .embedded import _process
from .embedded.postgres import EmbeddedPostgres
from .embedded.temporal import EmbeddedTemporal
from .errors import DataDirError, DataDirInUseError, PlanloopError
from .logging import get_logger
from .settings import Settings
from .worker import connect_client, open_event_store, redact_dsn, run_worker

log = get_logger(__name__)

STATE_FILE = "planloop.json"
LOCK_FILE = "planloop.lock"


class DataDirLock:
    """An exclusive flock on `<data_dir>/planloop.lock`, which holds the owner's pid.

    The kernel drops the lock when the process dies: a crash never leaves the folder locked.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DataDirError(
                f"cannot write to data folder {self.data_dir} ({exc.strerror}); "
                "choose another with --data-dir or PLANLOOP_DATA_DIR"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirInUseError(
                f"data folder {self.data_dir} is in use by planloop pid {owner}; stop it or use --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        # The file stays: unlinking a lock file lets a waiter lock a file nobody else will ever open.
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def prepare_data_dir(data_dir: Path) -> Path:
    data_dir = data_dir.expanduser().absolute()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise DataDirError(
            f"cannot write to data folder {data_dir} ({exc.strerror or exc}); "
            "choose another with --data-dir or PLANLOOP_DATA_DIR"
        ) from None
    return data_dir


async def apply_migrations_to(dsn: str) -> list[int]:
    """Apply planloop's migrations to `dsn`; connection problems become one-line errors."""
    from .migrations import migrate

    try:
        return await migrate(dsn)
    except (TimeoutError, OSError) as exc:
        raise PlanloopError(
            f"cannot connect to PostgreSQL at {redact_dsn(dsn)} ({exc}); check PLANLOOP_DATABASE_URL"
        ) from None
    except Exception as exc:
        if type(exc).__module__.startswith("asyncpg") and "connect" in type(exc).__name__.lower():
            raise PlanloopError(f"PostgreSQL at {redact_dsn(dsn)} refused the connection ({exc})") from None
        raise


class Stack:
    """The parts of one `planloop up`, started and stopped in order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = prepare_data_dir(settings.data_dir)
        self.lock = DataDirLock(self.data_dir)
        self.postgres = (
            EmbeddedPostgres(self.data_dir / "postgres", settings.postgres_port)
            if settings.embedded_postgres
            else None
        )
        self.temporal = (
            EmbeddedTemporal(
                self.data_dir / "temporal",
                settings.temporal_port,
                settings.temporal_ui_port,
                namespace=settings.temporal_namespace,
            )
            if settings.embedded_temporal
            else None
        )
        self.effective = settings
        self.started_at = datetime.now(UTC)
        self.api_socket: socket.socket | None = None

    async def start_servers(self) -> Settings:
        """Start the embedded servers (both at once) and return settings with their addresses filled in."""
        from .api.server import reserve_api_port

        pg, tp = self.postgres, self.temporal
        # Check every port before launching anything, so a taken port never leaves half a stack behind;
        # the API's is held from here on (it is served last, after connections that could take it).
        self.api_socket = reserve_api_port(self.settings)
        if pg is not None:
            pg.check_port()
        if tp is not None:
            tp.check_ports()
            tp.launch()  # launches stay on the main thread: children die with the thread that started them
        if pg is not None:
            await asyncio.to_thread(pg.prepare)
            pg.launch()
            await asyncio.to_thread(pg.wait_ready)
        if tp is not None:
            await asyncio.to_thread(tp.wait_ready)
        self.effective = self.settings.model_copy(
            update={
                "database_url": pg.dsn if pg is not None else self.settings.database_url,
                "temporal_address": tp.address if tp is not None else self.settings.temporal_address,
                "data_dir": self.data_dir,
            }
        )
        return self.effective

    def take_api_socket(self) -> socket.socket | None:
        """The API's reserved port, for the server to listen on (it closes it); None when not reserved."""
        sock, self.api_socket = self.api_socket, None
        return sock

    def stop_servers(self) -> None:
        if self.api_socket is not None:  # reserved but never served (the stack stopped before the API)
            self.api_socket.close()
            self.api_socket = None
        if self.temporal is not None:
            self.temporal.stop()
        if self.postgres is not None:
            self.postgres.stop()

    def launched(self) -> bool:
        return any(s is not None and s.pid is not None for s in (self.postgres, self.temporal))

    def dead_server(self) -> str | None:
        """Name and log of an embedded server that exited on its own, if any."""
        for name, server in (("PostgreSQL", self.postgres), ("Temporal", self.temporal)):
            if server is not None and server.pid is not None and not server.is_running():
                return f"{name} exited unexpectedly; see {server.log_path}"
        return None

    def state(self) -> dict[str, Any]:
        from .api.server import api_url

        s, pg, tp = self.effective, self.postgres, self.temporal
        assert s.database_url is not None and s.temporal_address is not None
        return {
            "pid": os.getpid(),
            "started_at": self.started_at.isoformat(),
            "data_dir": str(self.data_dir),
            "postgres": {
                "embedded": pg is not None,
                "dsn": redact_dsn(s.database_url),
                "pid": pg.pid if pg else None,
                "log": str(pg.log_path) if pg else None,
            },
            "temporal": {
                "embedded": tp is not None,
                "address": s.temporal_address,
                "namespace": s.temporal_namespace,
                "ui_url": tp.ui_url if tp else None,
                "pid": tp.pid if tp else None,
                "log": str(tp.log_path) if tp else None,
            },
            "task_queue": s.task_queue,
            "api": {"url": api_url(s), "docs_url": api_url(s) + "/docs"},
        }

    def write_state(self) -> None:
        path = self.data_dir / STATE_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.state(), indent=2) + "\n")
        tmp.replace(path)

    def remove_state(self) -> None:
        (self.data_dir / STATE_FILE).unlink(missing_ok=True)


async def run_up(settings: Settings, announce: Callable[[dict[str, Any], float], None]) -> int:
    """Run the stack until a stop signal; return the exit code. `announce(state, seconds)` says it is up."""
    from .api.server import serve_api

    began = time.monotonic()
    stack = Stack(settings)
    stack.lock.acquire()
    stop = asyncio.Event()
    _install_stop_handlers(stop)
    exit_code = 0
    parts: dict[str, asyncio.Task[None]] = {}
    store = None
    try:
        effective = await stack.start_servers()
        if stop.is_set():
            return exit_code
        assert effective.database_url is not None
        applied = await apply_migrations_to(effective.database_url)
        if applied:
            log.info("migrations applied", versions=applied)
        client = await connect_client(effective)
        polling = asyncio.Event()
        parts["worker"] = asyncio.create_task(run_worker(client, effective, stop, polling), name="worker")
        if not await _started(parts["worker"], polling):
            return await _supervise(stack, parts, stop)
        # The API comes up once the worker polls, so its first command finds a worker.
        store = await open_event_store(effective)
        serving = asyncio.Event()
        parts["HTTP API"] = asyncio.create_task(
            serve_api(effective, store, client, stop, serving, stack.take_api_socket()), name="api"
        )
        if not await _started(parts["HTTP API"], serving):
            return await _supervise(stack, parts, stop)
        stack.write_state()
        announce(stack.state(), time.monotonic() - began)
        exit_code = await _supervise(stack, parts, stop)
    finally:
        stop.set()
        for name, task in reversed(parts.items()):  # the API first: no new commands for the worker
            if not task.done():
                try:
                    await asyncio.wait_for(task, timeout=30)
                except Exception:
                    log.exception(f"{name} did not stop cleanly")
        if store is not None:
            await store.close()
        stopping = time.monotonic()
        launched = stack.launched()
        stack.stop_servers()
        stack.remove_state()
        stack.lock.release()
        if launched:
            log.info("planloop stopped", seconds=round(time.monotonic() - stopping, 2))
    return exit_code


async def _started(task: asyncio.Task[None], ready: asyncio.Event) -> bool:
    """Wait until ``ready`` is set (True) or ``task`` ends first (False)."""
    waiting = asyncio.create_task(ready.wait())
    await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    return ready.is_set() and not task.done()


async def _supervise(stack: Stack, parts: dict[str, asyncio.Task[None]], stop: asyncio.Event) -> int:
    """Wait for a stop signal, a failed part (worker, API) or a dead embedded server; return the exit code."""
    while not stop.is_set():
        for name, task in parts.items():
            if not task.done():
                continue
            if task.cancelled() or task.exception() is None:
                if stop.is_set():
                    return 0
                log.error(f"the {name} stopped unexpectedly")
                return 1
            exc = task.exception()
            if isinstance(exc, PlanloopError):
                raise exc
            log.error(f"the {name} failed", exc_info=exc)
            return 1
        if problem := stack.dead_server():
            log.error(problem)
            return 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)
    return 0


def _install_stop_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def handler(sig: signal.Signals) -> None:
        if stop.is_set():
            log.warning("already stopping; waiting for the servers to shut down", signal=sig.name)
            return
        log.info("stopping", signal=sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handler, sig)


def read_status(data_dir: Path) -> dict[str, Any]:
    """What `planloop up` on `data_dir` runs and whether each part answers, from its state file."""
    data_dir = data_dir.expanduser().absolute()
    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {"running": False, "data_dir": str(data_dir)}
    pid = state.get("pid")
    alive = isinstance(pid, int) and _is_planloop(pid)
    status: dict[str, Any] = {**state, "running": alive}
    if not alive:
        status["stale"] = True  # a `planloop up` that was killed before it could clean up
        return status
    pg, tp = state["postgres"], state["temporal"]
    dsn = urlsplit(pg["dsn"])
    pg["reachable"] = _process.port_accepts(dsn.hostname or "127.0.0.1", dsn.port or 5432)
    host, _, port = tp["address"].rpartition(":")
    tp["reachable"] = _process.port_accepts(host.strip("[]") or "127.0.0.1", int(port))
    if tp.get("ui_url"):
        ui = urlsplit(tp["ui_url"])
        tp["ui_reachable"] = _process.port_accepts(ui.hostname or "127.0.0.1", ui.port or 80)
    if api := state.get("api"):
        where = urlsplit(api["url"])
        api["reachable"] = _process.port_accepts(where.hostname or "127.0.0.1", where.port or 80)
    return status


def _is_planloop(pid: int) -> bool:
    try:
        return "planloop" in " ".join(psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True
