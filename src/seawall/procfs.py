"""What the kernel says about a process (its start time and its state, from ``/proc``),
and the environment seawall gives a process it starts for a workload.

A pid alone does not name a process for long: the kernel reuses pids. A pid together with
its start time (field 22 of ``/proc/<pid>/stat``, in clock ticks since boot) does, which is
how seawall tells whether a run's owner, a simulated server or a lab daemon still lives.

The command name in ``stat`` is in parentheses and may itself hold spaces and ``)``, so the
fields are counted from the *last* ``)``.

A process seawall starts for a workload (a sim server, a quiesce hook, a plan's health-check
or recovery script) is the workload's, not seawall's: it gets :func:`workload_environment`,
built from nothing, never a copy of seawall's own environment, which holds the repository
passphrase (``SEAWALL_PASSPHRASE``), API tokens, ``OS_*`` cloud and ``AWS_*`` storage
credentials.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: states of a process that has exited but not been reaped, or is being torn down
GONE_STATES = frozenset({"Z", "X"})
#: states of a process stopped by a signal (SIGSTOP) or by a tracer
STOPPED_STATES = frozenset({"T", "t"})
#: all a workload's process inherits from seawall's environment: where programs are and
#: how text is written; none of these can carry a credential
INHERITED = ("PATH", "LANG", "LC_ALL", "TZ")


def workload_environment(contract: Mapping[str, str], home: str | None = None) -> dict[str, str]:
    """The whole environment of a process started for a workload: :data:`INHERITED`,
    ``HOME`` (``home``, or the operator's own for the operator's scripts) and the
    documented ``contract`` variables of the hook or server, nothing else.

    A contract variable may not be one of seawall's secrets: a caller that passes one is
    a bug, and fails here rather than in a workload's hands.
    """
    leaked = [k for k in contract if k.startswith(("SEAWALL_PASSPHRASE", "SEAWALL_TOKEN"))]
    if leaked:
        raise ValueError(f"a workload's environment may not hold {', '.join(sorted(leaked))}")
    env = {k: os.environ[k] for k in INHERITED if k in os.environ}
    env.setdefault("PATH", os.defpath)
    return {**env, "HOME": home or os.environ.get("HOME", "/"), **contract}


def _fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name; None if there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    end = stat.rfind(b")")
    if end < 0:
        return None
    return stat[end + 2 :].decode("ascii", "replace").split()


def state(pid: int) -> str | None:
    """The one-letter state of ``pid`` (``R``, ``S``, ``T``, ``Z``...), None if it is gone."""
    fields = _fields(pid)
    return fields[0] if fields else None


def start_time(pid: int) -> int | None:
    """The kernel start time of ``pid``; None when it is gone or a zombie.

    Compare it with the value recorded when the process was started: equal means the same
    process, anything else means the pid is free or now someone else's.
    """
    fields = _fields(pid)
    if not fields or len(fields) < 20 or fields[0] in GONE_STATES:
        return None
    try:
        return int(fields[19])
    except ValueError:
        return None


def pid_exists(pid: int) -> bool:
    """Whether any process has ``pid`` (also one of another user's: EPERM means it exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
