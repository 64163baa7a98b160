"""Running `planloop` as a user would: a real subprocess, on free ports, with a throwaway data folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from tests.conftest import free_ports


def planloop_env(ports: list[int], **extra: str) -> dict[str, str]:
    """The environment of a `planloop` on ``ports``: PostgreSQL, Temporal, its UI and (a free one when
    not given) the HTTP API."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANLOOP_")}
    pg, temporal, ui, *api = ports
    env.update(
        PLANLOOP_POSTGRES_PORT=str(pg),
        PLANLOOP_TEMPORAL_PORT=str(temporal),
        PLANLOOP_TEMPORAL_UI_PORT=str(ui),
        PLANLOOP_API_PORT=str(api[0] if api else free_ports(1)[0]),
        PLANLOOP_LOG_FORMAT="json",
        **extra,
    )
    return env


def planloop(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "planloop", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


class Up:
    """`planloop up` (or `worker`) in the background.

    Output goes to files, so no pipe can fill up and block it.
    """

    def __init__(
        self, data_dir: Path, env: dict[str, str], logs: Path, command: tuple[str, ...] = ("up", "--data-dir")
    ) -> None:
        self.data_dir = data_dir
        logs.mkdir(parents=True, exist_ok=True)
        n = len(list(logs.glob("up-*.out")))
        self.stdout_path, self.stderr_path = logs / f"up-{n}.out", logs / f"up-{n}.err"
        with self.stdout_path.open("w") as out, self.stderr_path.open("w") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "planloop",
                    *command,
                    *([str(data_dir)] if "--data-dir" in command else []),
                ],
                env=env,
                stdout=out,
                stderr=err,
            )

    def output(self) -> str:
        return self.stdout_path.read_text() + self.stderr_path.read_text()

    def wait_for(self, text: str, timeout: float = 45) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.proc.poll() is not None:
                raise AssertionError(f"planloop exited with {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"no {text!r} from planloop after {timeout}s:\n{self.output()}")
            time.sleep(0.05)

    def wait_ready(self, timeout: float = 45) -> dict[str, Any]:
        # The announcement's last line: by then the addresses above it are in the file too.
        self.wait_for("Press Ctrl-C to stop.", timeout)
        return json.loads((self.data_dir / "planloop.json").read_text())

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def processes_using(path: Path) -> list[psutil.Process]:
    """Live processes whose command line mentions `path` (our embedded servers name their data folders)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(str(path) in arg for arg in proc.info["cmdline"] or []):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def assert_all_gone(procs: list[psutil.Process], timeout: float = 10) -> None:
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    assert not alive, f"left running: {[(p.pid, p.name()) for p in alive]}"
