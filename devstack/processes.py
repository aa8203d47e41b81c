"""Background processes for the local stack: spawn, pid files, liveness, stop.

Kafka, the services and (through pg_ctl) PostgreSQL run detached from the command that
started them, so a later ``callboard down`` in another process must find and stop them
again. Each is started in its own session (process group), recorded in a pid file, and
stopped by signalling the whole group, so worker children go with their parent.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import port_for


class DevstackError(RuntimeError):
    """A local infrastructure component could not be installed, started or stopped."""


class Service:
    """A local server that ``with`` starts and stops, whatever happens in between."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing uses right now, outside the ephemeral range.

    port-for picks among the ports IANA leaves unassigned that the kernel never hands to
    outgoing connections, so that a client's connection cannot take the port between now
    and the moment the server binds it (as it can take one from ``bind(0)``).
    """
    return port_for.select_random()


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers (the JVM, PostgreSQL) bind with SO_REUSEADDR, so a port held only by
        # TIME_WAIT connections of a previous run is free for them and must be for us too.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, or a note that there is none."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def spawn(
    command: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a command in its own session with stdout and stderr appended to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )


def read_pid(pid_file: Path) -> int | None:
    """The pid recorded in pid_file, or None when there is no readable one."""
    try:
        return int(pid_file.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def write_pid(pid_file: Path, pid: int) -> None:
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{pid}\n")


def is_alive(pid: int) -> bool:
    """True while pid names a running process (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A detached child whose parent never reaps it lingers as a zombie; it holds no
    # ports or files any more, so for our purposes it has stopped.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def command_line(pid: int) -> str | None:
    """The process's command line, or None where /proc cannot tell."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode("utf-8", errors="replace")


def live_pid(pid_file: Path, marker: str) -> int | None:
    """The pid from pid_file if that process still runs and is the one we started.

    Pids are reused, so a stale file could name an unrelated process; the marker (a
    string only our command line contains, such as a config path) guards against
    signalling it. Without /proc the pid file is trusted.
    """
    pid = read_pid(pid_file)
    if pid is None or not is_alive(pid):
        return None
    cmdline = command_line(pid)
    if cmdline is not None and marker not in cmdline:
        return None
    return pid


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:
        # Not a group leader we may signal (started without its own session); fall back
        # to the process itself.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _wait_gone(pid: int, deadline: float, child: subprocess.Popen[bytes] | None) -> bool:
    while time.monotonic() < deadline:
        if child is not None and child.poll() is not None:
            return True
        if child is None and not is_alive(pid):
            return True
        time.sleep(0.1)
    return False


def terminate(
    pid: int, timeout: float = 30.0, child: subprocess.Popen[bytes] | None = None
) -> None:
    """Stop the process group led by pid: SIGTERM, then SIGKILL after timeout seconds.

    Pass ``child`` when pid is this process's own child, so that it gets reaped rather
    than left as a zombie.
    """
    _signal_group(pid, signal.SIGTERM)
    if _wait_gone(pid, time.monotonic() + timeout, child):
        # Children that outlived the leader (e.g. a worker) still belong to the group.
        _signal_group(pid, signal.SIGKILL)
        return
    _signal_group(pid, signal.SIGKILL)
    if not _wait_gone(pid, time.monotonic() + 10.0, child):
        raise DevstackError(f"process {pid} survived SIGKILL")
