"""The sim's servers: booting their processes, power, status, addresses and fsfreeze.

A server with a ``command`` is a real process (:mod:`.processes`) bound to a loopback
address of its own (127.x.y.z, derived from site and server), with its volumes' paths and
its network peers in its environment: it can only reach peers on its own networks, which
is what makes a drill's networks isolated. Freezing it (the guest agent's
``fsfreeze-freeze``) is SIGSTOP once its in-flight writes are done.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import Container, Iterator
from pathlib import Path
from typing import Any

from seawall import procfs
from seawall.clouds.sim import processes
from seawall.clouds.sim.journal import exclusive, journal_path_for
from seawall.clouds.sim.store import Proc, SiteStore, Stored, save_runtime
from seawall.errors import Conflict, InvalidInput, PermanentError
from seawall.model import ResourceKind

K = ResourceKind

# Server statuses, as Nova names them.
BUILD = "BUILD"  #: recorded, process not started yet
ACTIVE = "ACTIVE"  #: powered on and (if it has a command) its process is alive
SHUTOFF = "SHUTOFF"  #: powered off on purpose
ERROR = "ERROR"  #: powered on but its process is gone (crashed, killed, never started)


def server_status(row: Stored, proc: Proc | None) -> str:
    """What Nova would say: from the power the site recorded and the process's liveness."""
    power = row.runtime.get("power", "on")
    if power == "off":
        return SHUTOFF
    if power == "building":
        return BUILD
    if not row.attrs.get("command"):
        return ACTIVE
    return ACTIVE if proc is not None and processes.alive(proc.pid, proc.start_time) else ERROR


def _address_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def _loopback_candidates(site: Path, server_id: str) -> Iterator[str]:
    """127.x.y.z addresses derived from site and server, so two sites rarely even try
    the same one; 127.0.0.0/24 (127.0.0.1, the host's own services) is never used."""
    for attempt in range(10_000):
        h = hashlib.sha256(f"{site}\0{server_id}\0{attempt}".encode()).digest()
        yield f"127.{1 + h[0] % 254}.{h[1]}.{1 + h[2] % 254}"


def free_loopback_address(site: Path, server_id: str, taken: Container[Any], port: int) -> str:
    """A loopback address no other server of the site has and ``port`` is free on."""
    for address in _loopback_candidates(site, server_id):
        if address not in taken and _address_free(address, port):
            return address
    raise Conflict("no free loopback address left for a sim server")  # pragma: no cover - 16M


class Servers:
    """The server processes of one site, and the power state ``site.db`` records."""

    def __init__(self, store: SiteStore) -> None:
        self.store = store

    def get(self, server_id: str) -> tuple[Stored, Proc | None]:
        with self.store.tx() as con:
            return self.store.need(con, K.SERVER, server_id), self.store.procs(con).get(server_id)

    def log_path(self, server_id: str, name: str | None = None) -> Path:
        """Where a server process's output goes (``logs/<name>-<id8>.log``)."""
        if name is None:
            row, _ = self.get(server_id)
            name = row.name
        return self.store.log_path(server_id, name)

    def pid(self, server_id: str) -> int | None:
        """The pid of the server's live process, or None."""
        _, proc = self.get(server_id)
        alive = proc is not None and processes.alive(proc.pid, proc.start_time)
        return proc.pid if proc is not None and alive else None

    def boot(self, server_id: str) -> None:
        """Start a server's process (if it has a command) and mark it powered on."""
        store = self.store
        with store.tx() as con:
            row = store.need(con, K.SERVER, server_id)
            proc = store.procs(con).get(server_id)
            env = self._env(con, row)
        command = row.attrs.get("command")
        spawned = None
        if command and not (proc and processes.alive(proc.pid, proc.start_time)):
            spawned = self._spawn(row, command, env)
        duplicate = None
        with store.tx(write=True) as con:
            row = store.need(con, K.SERVER, server_id)
            current = store.procs(con).get(server_id)
            if spawned is not None:
                if (
                    current is not None
                    and current != proc
                    and processes.alive(current.pid, current.start_time)
                ):
                    duplicate = spawned  # another process booted it meanwhile: keep theirs
                else:
                    con.execute(
                        "INSERT OR REPLACE INTO processes VALUES (?, ?, ?, ?)",
                        (server_id, spawned.pid, spawned.start_time, spawned.log),
                    )
            row.runtime["power"] = "on"
            save_runtime(con, row)
        if duplicate is not None:
            processes.terminate([(duplicate.pid, duplicate.start_time)], grace=0.0)

    def _spawn(self, row: Stored, command: list[str], env: dict[str, str]) -> Proc | None:
        """Detached (own session), so the server outlives seawall: the sim is a cloud."""
        argv = list(command)
        if argv[0] == "python":  # portable metadata: "python" is the interpreter seawall runs on
            argv[0] = sys.executable
        log = self.store.log_path(row.id, row.name)
        started = processes.spawn(argv, env, self.store.path, log)
        if started is None:
            return None  # the server shows ERROR, as a cloud's failed boot does
        return Proc(started[0], started[1], str(log))

    def _env(self, con: sqlite3.Connection, row: Stored) -> dict[str, str]:
        servers = self.store.rows(con, "kind = ?", K.SERVER.value)
        ports = {p.id: p for p in self.store.rows(con, "kind = ?", K.PORT.value)}

        def networks(s: Stored) -> set[str]:
            attached = [ports[p] for p in s.refs.get("ports", []) if p in ports]
            return {n for p in attached for n in p.refs["network"]}

        mine = networks(row)
        peers = {
            s.attrs.get(
                "hostname", s.name
            ): f"{s.runtime['access_address']}:{s.attrs['listen_port']}"
            for s in servers
            if s.id != row.id and s.attrs.get("listen_port") and mine & networks(s)
        }
        volumes = [str(self.store.volume_path(v)) for v in row.refs.get("volumes", [])]
        # the server is the workload's: nothing of seawall's environment (passphrase,
        # tokens, credentials) reaches it; HOME is the site, the cloud it runs on.
        # PYTHONPATH only because "python" here is seawall's own interpreter (the sim's
        # image), which must find the same sample program seawall runs from
        contract = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
        return procfs.workload_environment(
            {
                **contract,
                "PYTHONUNBUFFERED": "1",
                "SEAWALL_SITE": str(self.store.path),
                "SEAWALL_SERVER_ID": row.id,
                "SEAWALL_HOSTNAME": str(row.attrs.get("hostname", row.name)),
                "SEAWALL_ADDRESS": str(row.runtime.get("access_address", "")),
                "SEAWALL_PORT": str(row.attrs.get("listen_port") or ""),
                "SEAWALL_VOLUMES": os.pathsep.join(volumes),
                "SEAWALL_CBT": os.pathsep.join(str(journal_path_for(v)) for v in volumes),
                "SEAWALL_PEERS": json.dumps(peers, sort_keys=True),
            },
            home=str(self.store.path),
        )

    def power_off(self, server_id: str, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; the server is SHUTOFF."""
        row, proc = self.get(server_id)
        if proc is not None:
            processes.terminate([(proc.pid, proc.start_time)], grace)
        with self.store.tx(write=True) as con:
            row = self.store.need(con, K.SERVER, server_id)
            row.runtime["power"] = "off"
            save_runtime(con, row)

    def power_on(self, server_id: str) -> None:
        """Start the process again (a crashed one too), with a fresh view of its peers."""
        self.get(server_id)
        self.boot(server_id)

    def stop_all(self, grace: float) -> None:
        """Power off every server of the site at once."""
        store = self.store
        with store.tx() as con:
            procs = list(store.procs(con).values())
            ids = [s.id for s in store.rows(con, "kind = ?", K.SERVER.value)]
        processes.terminate([(p.pid, p.start_time) for p in procs], grace)
        with store.tx(write=True) as con:
            for row in store.rows(con, "kind = ?", K.SERVER.value):
                if row.id in ids:
                    row.runtime["power"] = "off"
                    save_runtime(con, row)

    def guest_agent(self, server_id: str, command: str, lock_timeout: float) -> None:
        """``fsfreeze-freeze`` stops the process once its in-flight writes are done (it
        takes each volume's journal lock first); ``fsfreeze-thaw`` resumes it."""
        row, proc = self.get(server_id)
        if not row.attrs.get("guest_agent"):
            raise PermanentError(
                f"server {row.name} has no guest agent (attrs guest_agent is false); "
                "use another quiesce agent or crash consistency"
            )
        if command not in ("fsfreeze-freeze", "fsfreeze-thaw"):
            raise InvalidInput(
                f"unknown guest-agent command {command!r}; use fsfreeze-freeze or fsfreeze-thaw",
                field="command",
            )
        if not row.attrs.get("command"):
            return  # nothing runs, nothing writes: frozen by definition
        if proc is None or not processes.alive(proc.pid, proc.start_time):
            raise Conflict(f"server {row.name} is not running; its guest agent cannot answer")
        if command == "fsfreeze-thaw":
            processes.signal_group(proc.pid, signal.SIGCONT)
            return
        with contextlib.ExitStack() as stack:
            for volume in row.refs.get("volumes", []):
                journal = journal_path_for(self.store.volume_path(volume))
                fd = os.open(journal, os.O_RDWR | os.O_CREAT, 0o644)
                stack.callback(os.close, fd)
                stack.enter_context(exclusive(fd, f"freezing {row.name}", lock_timeout))
            processes.signal_group(proc.pid, signal.SIGSTOP)
            processes.wait_for_stopped(proc.pid, lock_timeout)
