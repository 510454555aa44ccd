"""The sim's server processes: real, detached processes, named by pid and start time.

A sim server with a ``command`` runs as a process of its own session (it outlives seawall:
the sim is a cloud), so it is found again by its pid *and* its kernel start time
(:mod:`seawall.procfs`), never by its pid alone. Stopping one signals its whole process
group; freezing one is SIGSTOP, thawing SIGCONT.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from seawall import procfs
from seawall.clouds.waiting import wait_for
from seawall.errors import StepTimeout

#: processes this Python process started, so they can be reaped (never killed on drop)
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def alive(pid: int, start: int) -> bool:
    """Whether the process started as ``(pid, start)`` still runs (reaping our own)."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)
        return False
    if not os.path.isdir("/proc"):
        return procfs.pid_exists(pid)
    return procfs.start_time(pid) == start


def signal_group(pid: int, sig: int) -> None:
    """Signal the process group a server leads (its children too), and the pid itself in
    case it is not a group leader (found by the SEAWALL_SITE scan)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def wait_for_stopped(pid: int, timeout: float) -> None:
    """SIGSTOP is asynchronous; a freeze is only done once the kernel says "stopped"
    (or the process is gone: nothing of it writes any more)."""
    wait_for(
        lambda: procfs.state(pid),
        lambda state: state is None or state in procfs.STOPPED_STATES | procfs.GONE_STATES,
        timeout=timeout,
        timed_out=lambda _: StepTimeout(f"process {pid} did not stop within {timeout:g}s"),
        delay=0.002,
        factor=1.0,
        max_delay=0.002,
    )


def terminate(procs: Iterable[tuple[int, int]], grace: float) -> None:
    """SIGTERM every process group, SIGKILL what is left after ``grace`` seconds."""
    live = [(p, t) for p, t in procs if alive(p, t)]
    for pid, _ in live:
        signal_group(pid, signal.SIGTERM)
        signal_group(pid, signal.SIGCONT)  # a frozen process cannot act on SIGTERM
    deadline = time.monotonic() + grace
    while live and time.monotonic() < deadline:
        time.sleep(0.02)
        live = [(p, t) for p, t in live if alive(p, t)]
    for pid, _ in live:
        signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while live and time.monotonic() < deadline:
        time.sleep(0.01)
        live = [(p, t) for p, t in live if alive(p, t)]


def spawn(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> tuple[int, int] | None:
    """Start ``argv`` detached (own session), output appended to ``log``; its ``(pid,
    start time)``, or None when it cannot start (the server then shows ERROR, as a
    cloud's failed boot does)."""
    with open(log, "ab") as out:
        out.write(f"--- {time.ctime()} start {argv}\n".encode())
        out.flush()
        try:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            out.write(f"--- cannot start: {exc}\n".encode())
            return None
    _CHILDREN[child.pid] = child
    start = procfs.start_time(child.pid)
    return child.pid, start if start is not None else -1


def site_processes(path: Path) -> list[int]:
    """Pids whose environment names this site: the safety net when site.db is unreadable."""
    found = []
    target = f"SEAWALL_SITE={path}".encode()
    for entry in Path("/proc").glob("[0-9]*") if os.path.isdir("/proc") else []:
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if target in env.split(b"\0"):
            found.append(int(entry.name))
    return found
