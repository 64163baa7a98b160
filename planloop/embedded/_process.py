"""Child-process plumbing shared by the embedded servers.

Children run in their own session, so a Ctrl-C at the terminal reaches only planloop, which then stops them
in order; and on Linux they get a signal when planloop dies, even by SIGKILL, so nothing is orphaned.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    return libc.prctl


# Looked up once here: the pre-exec hook runs between fork and exec, where loading a library is unsafe.
_prctl = _load_prctl()


def _die_with_parent(sig: int, parent_pid: int) -> Callable[[], None]:
    def hook() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        # The parent may have died between fork and prctl: then no signal would ever come.
        if os.getppid() != parent_pid:
            os._exit(1)

    return hook


def spawn(
    argv: Sequence[str | os.PathLike[str]],
    log_file: IO[bytes],
    *,
    death_signal: int = signal.SIGTERM,
    user: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` with stdout and stderr appended to `log_file`.

    The death signal is tied to the calling *thread* (Linux semantics): call this from a thread that lives as
    long as the child should, i.e. the main thread.
    """
    return subprocess.Popen(
        [str(a) for a in argv],
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent(death_signal, os.getpid()),
        user=user,
        group=_primary_group(user) if user else None,
        extra_groups=[] if user else None,
        env=env,
        cwd=cwd,
    )


def _primary_group(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


def stop_process(
    proc: subprocess.Popen[bytes], first: int, timeout: float, then: Sequence[int] = (signal.SIGKILL,)
) -> None:
    """Send `first`, wait up to `timeout`, then escalate through `then` (a few seconds each)."""
    if proc.poll() is not None:
        return
    for sig, wait in [(first, timeout), *((s, 5.0) for s in then)]:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on host:port (a bind test: it sees listeners of any user)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # Without SO_REUSEADDR a port in TIME_WAIT after our own last run would look taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(ready: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def log_tail(path: Path, lines: int = 20) -> list[str]:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            return f.read().decode("utf-8", "replace").splitlines()[-lines:]
    except OSError:
        return []
