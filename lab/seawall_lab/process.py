"""The lab's processes: started in a session of their own, recorded by pid and start time.

Invariants:

- every service is started in a session of its own, so its pid is its process group;
  :func:`stop` signals exactly the groups whose pid (and start time) :func:`start`
  recorded, never a process found by name;
- a running service is left alone by :func:`start`, and one-time setup steps leave a stamp
  (:func:`once`), which is what makes ``up`` idempotent.

Also the small waits and commands every stage uses.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from seawall.procfs import start_time
from seawall_lab.layout import HOST, LabError, LabSite


def log(site: str, message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} [lab {site}] {message}", file=sys.stderr, flush=True)


def _recorded(site: LabSite, name: str) -> tuple[int, int] | None:
    try:
        pid, start = (site.run / f"{name}.pid").read_text().split()
        return int(pid), int(start)
    except (OSError, ValueError):
        return None


def started(site: LabSite) -> list[str]:
    """The services :func:`start` started on ``site``, in start order."""
    order = site.run / "order"
    return order.read_text().split() if order.exists() else []


def running(site: LabSite, name: str) -> int | None:
    """The pid of service ``name`` if the process the lab started is still alive."""
    rec = _recorded(site, name)
    if rec is None or start_time(rec[0]) != rec[1]:
        return None
    return rec[0]


def start(site: LabSite, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Start ``argv`` as service ``name`` unless it runs already; returns its pid."""
    pid = running(site, name)
    if pid is not None:
        return pid
    site.logs.mkdir(parents=True, exist_ok=True)
    with open(site.logs / f"{name}.log", "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env or site.env(),
            cwd=site.dir,
            start_new_session=True,
            close_fds=True,
        )
    (site.run / f"{name}.pid").write_text(f"{proc.pid} {start_time(proc.pid)}\n")
    if name not in started(site):
        with open(site.run / "order", "a") as f:
            f.write(name + "\n")
    log(site.name, f"started {name} (pid {proc.pid})")
    return proc.pid


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(site: LabSite, names: Sequence[str] = (), grace: float = 15.0) -> list[str]:
    """SIGTERM the recorded process groups (reverse start order), SIGKILL what is left
    after ``grace`` seconds (nova and cinder-scheduler ignore SIGTERM for longer)."""
    chosen = list(names) or list(reversed(started(site)))
    signalled: dict[str, int] = {}
    for name in chosen:
        pid = running(site, name)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            signalled[name] = pid
        (site.run / f"{name}.pid").unlink(missing_ok=True)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_group_alive(p) for p in signalled.values()):
        time.sleep(0.5)
    for name, pid in signalled.items():
        if _group_alive(pid):
            log(site.name, f"{name} ({pid}) still running after SIGTERM; SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    if not names:
        (site.run / "order").unlink(missing_ok=True)
        # the userspace datapath leaves its persistent tap device behind
        bridge = f"br-int-{site.name}"
        if subprocess.run(["ip", "link", "show", bridge], capture_output=True).returncode == 0:
            subprocess.run(["ip", "link", "delete", bridge], capture_output=True)
    return list(signalled)


def wait_for(what: str, ready: Callable[[], bool], timeout: float, step: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise LabError(f"lab: {what} not ready after {timeout:g}s")
        time.sleep(step)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((HOST, port)) == 0


def unix_socket_open(path: Path) -> bool:
    """True when a server accepts connections on the unix socket ``path``.

    A socket *file* proves nothing: a daemon killed with SIGKILL (a CI run cut off, an
    OOM kill) leaves its socket behind, and a client that connects to it fails at once
    with "connection refused" while the new daemon is still starting."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(1)
        return s.connect_ex(str(path)) == 0


def clear_stale_socket(site: LabSite, name: str, path: Path) -> None:
    """Remove the socket file of service ``name`` when that service is not running, so
    the daemon about to start binds a fresh one and nothing connects to a dead one."""
    if running(site, name) is None and path.is_socket() and not unix_socket_open(path):
        path.unlink()


def http_ok(url: str) -> bool:
    """Any answer below 500 counts: an API that says 401 is up."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def sh(site: LabSite, *argv: str | Path, log_name: str = "setup", check: bool = True) -> int:
    """Run a setup command, its output appended to ``log/<log_name>.log``."""
    site.logs.mkdir(parents=True, exist_ok=True)
    with open(site.logs / f"{log_name}.log", "ab") as out:
        rc = subprocess.run(
            [str(a) for a in argv], stdout=out, stderr=subprocess.STDOUT, env=site.env()
        ).returncode
    if check and rc != 0:
        raise LabError(
            f"lab {site.name}: {' '.join(map(str, argv))} failed (exit {rc}); "
            f"see {site.logs / (log_name + '.log')}"
        )
    return rc


def output(site: LabSite, *argv: str) -> str:
    return subprocess.run(
        list(argv), capture_output=True, text=True, env=site.env(), check=False
    ).stdout


@contextlib.contextmanager
def once(site: LabSite, step: str) -> Iterator[bool]:
    """``with once(site, "x") as todo: if todo: ...``: stamp the step when it succeeded."""
    stamp = site.data / f".done-{step}"
    done = stamp.exists()
    yield not done
    if not done:
        stamp.touch()


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
