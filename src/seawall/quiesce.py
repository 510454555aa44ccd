"""Quiesce agents: bring a server's data to a consistent state around its snapshots.

Registered in the ``seawall.quiesce`` entry-point group. A policy's hooks name an agent;
the protect flow freezes every matching server, snapshots all volumes, and thaws again at
once (thaw always runs, also when the snapshot fails). What happens when a freeze fails is
the hook's ``on_failure`` rule: fail the run, or degrade to crash-consistent and say so.
"""

from __future__ import annotations

import subprocess
from typing import Protocol, runtime_checkable

from seawall import procfs
from seawall.clouds import CloudDriver
from seawall.errors import PermanentError
from seawall.model import QuiesceHook, Resource


@runtime_checkable
class QuiesceAgent(Protocol):
    """QuiesceAgent V1."""

    name: str

    def freeze(self, driver: CloudDriver, server: Resource, hook: QuiesceHook) -> None: ...

    def thaw(self, driver: CloudDriver, server: Resource, hook: QuiesceHook) -> None: ...


class NoQuiesce:
    """Crash consistency: nothing to do."""

    name = "none"

    def freeze(self, driver: CloudDriver, server: Resource, hook: QuiesceHook) -> None:
        return None

    def thaw(self, driver: CloudDriver, server: Resource, hook: QuiesceHook) -> None:
        return None


class GuestAgentQuiesce:
    """qemu-guest-agent ``fsfreeze`` (or VSS on Windows guests) through the cloud."""

    name = "guest-agent"

    def freeze(self, driver: CloudDriver, server: Resource, hook: QuiesceHook) -> None:
        driver.guest_agent(server.id, "fsfreeze-freeze")

    def thaw(self, driver: CloudDriver, server: Resource, hook: QuiesceHook) -> None:
        driver.guest_agent(server.id, "fsfreeze-thaw")


class ScriptQuiesce:
    """User scripts (e.g. ``nodetool snapshot``). Their whole environment is PATH, the
    locale, HOME and the server's name and id (``SEAWALL_SERVER``, ``SEAWALL_SERVER_ID``):
    nothing of seawall's own (passphrase, tokens, cloud or storage credentials)."""

    name = "script"

    def _run(self, command: tuple[str, ...], server: Resource, hook: QuiesceHook) -> None:
        if not command:
            return
        env = procfs.workload_environment(
            {"SEAWALL_SERVER": server.name, "SEAWALL_SERVER_ID": server.id}
        )
        try:
            done = subprocess.run(
                list(command),
                env=env,
                capture_output=True,
                timeout=hook.timeout_seconds,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PermanentError(f"quiesce script {command[0]!r} on {server.name}: {exc}") from exc
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip()[-200:]
            raise PermanentError(
                f"quiesce script {command[0]!r} on {server.name} exited {done.returncode}: {tail}"
            )

    def freeze(self, driver: CloudDriver, server: Resource, hook: QuiesceHook) -> None:
        self._run(hook.freeze, server, hook)

    def thaw(self, driver: CloudDriver, server: Resource, hook: QuiesceHook) -> None:
        self._run(hook.thaw, server, hook)
