"""Fixtures of the crash tests: two sim sites, a one-server workload, real processes.

``crash_world`` (module scope) builds, once per module:

- ``SEAWALL_HOME`` with two sim sites ``a`` and ``b``, each with a repository (``b``
  shares ``a``'s key, so checkpoints replicate), ``SEAWALL_KDF=fast``;
- a minimal workload ``w`` on ``a``: one server running ``seawall.clouds.sim.app --role
  db`` (a real process with a guest agent, so protect freezes and thaws it), one
  network/subnet/port, a security group, a flavor, a boot volume and a small data volume
  holding data; policy ``crashtest`` (gold's application consistency, with a retention
  that never forgets the baseline checkpoint), target ``b``;
- one baseline checkpoint, replicated to ``b``, that every failover and drill recovers.

:class:`World` runs ``python -m seawall`` as a subprocess (optionally with a
``SEAWALL_FAULT_KILL_*`` variable, so it SIGKILLs itself at an exact step), resumes runs
in another subprocess, reads TaskFlow's own record of a run from ``engine.db``, checks
repositories, and puts the target site and the workload back as they were between cases.
Both sites are destroyed at the end (which kills every server process they started).
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from taskflow.persistence import backends

from seawall.clouds import ResourceSpec
from seawall.clouds.sim import destroy_site
from seawall.model import (
    PRESETS,
    RecoveryPlan,
    Resource,
    ResourceKind,
    ResourceRef,
    Retention,
    Run,
    RunState,
    Selector,
    Workload,
    dump,
    load,
)
from seawall.orchestrate.tasks import cleanup_run
from seawall.repo import CheckReport, Repository
from seawall.service import Service
from seawall.storage import open_storage

K = ResourceKind

WORKLOAD = "w"
SOURCE = "a"
TARGET = "b"
PASSPHRASE = "crash-test-passphrase"
UNFINISHED = (RunState.PENDING, RunState.RUNNING, RunState.CANCELLING, RunState.REVERTING)
FAULT_VARS = ("SEAWALL_FAULT_KILL_AT", "SEAWALL_FAULT_KILL_AFTER", "SEAWALL_FAULT_KILL_REVERT")


@dataclass
class World:
    root: Path
    svc: Service
    env: dict[str, str]
    workload: Workload
    checkpoint: str = ""  #: the baseline checkpoint every failover and drill recovers
    plan: dict[str, Any] = field(default_factory=dict)  #: the recovery plan a -> b
    _engine: Any = None

    # -- processes -----------------------------------------------------------------------
    def cli(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "seawall", *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def run_ids(self) -> set[str]:
        return {r.id for r in self.svc.list_runs(WORKLOAD, limit=10_000)}

    def killed(
        self,
        argv: Sequence[str],
        *,
        point: str,
        step: str,
        wrapper: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        """Run ``seawall argv`` with ``point=step``; assert it died of SIGKILL; its run id."""
        before = self.run_ids()
        extra = {**(env or {}), **({point: step} if point else {})}
        if wrapper is None:
            proc = self.cli(*argv, env=extra)
        else:
            proc = subprocess.run(
                [sys.executable, "-c", wrapper, *argv],
                env={**self.env, **extra},
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
        assert proc.returncode == -9, (
            f"seawall {' '.join(argv)} with {point}={step} was not killed "
            f"(exit {proc.returncode})\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
        new = self.run_ids() - before
        assert len(new) == 1, f"expected one new run, found {sorted(new)}"
        (run_id,) = new
        run = self.svc.get_run(run_id)
        assert run.state in UNFINISHED, f"a killed run is {run.state.value}"
        return run_id

    def resume(self, run_id: str) -> Run:
        """``seawall run resume`` in a new process; the run as it ended."""
        proc = self.cli("run", "resume")
        assert proc.returncode == 0, f"resume failed:\n{proc.stdout}\n{proc.stderr[-3000:]}"
        assert run_id in proc.stdout, f"resume did not pick up {run_id}:\n{proc.stdout}"
        return self.svc.get_run(run_id)

    def explain(self, run: Run) -> str:
        steps = "\n".join(f"  {s.name}: {s.state.value} {s.detail}" for s in self.svc.steps(run.id))
        return f"run {run.id} {run.state.value}: {run.error}\n{steps}"

    # -- TaskFlow's own record -------------------------------------------------------------
    def atom_states(self, run_id: str) -> dict[str, str]:
        """Each step's state as TaskFlow persisted it in ``engine.db`` (a fresh read)."""
        if self._engine is None:
            self._engine = backends.fetch(
                {"connection": f"sqlite:///{self.svc.home / 'engine.db'}"}
            )
        with contextlib.closing(self._engine.get_connection()) as conn:
            book = conn.get_logbook(run_id)
        flows = list(book)
        assert len(flows) <= 1, f"run {run_id} has {len(flows)} flows"
        return {atom.name: str(atom.state) for flow in flows for atom in flow}

    # -- repositories ----------------------------------------------------------------------
    def check(self, site: str, *, read_data: bool = False) -> CheckReport:
        url = self.svc.site(site).repository
        with Repository.open(open_storage(url), PASSPHRASE) as repo:
            return repo.check(read_data=read_data)

    def repository(self, site: str) -> Repository:
        return Repository.open(open_storage(self.svc.site(site).repository), PASSPHRASE)

    # -- sites -----------------------------------------------------------------------------
    def tagged(self, site: str, run_id: str) -> list[Resource]:
        return [
            r for r in self.svc.driver(site).list_resources() if r.tags.get("seawall:run") == run_id
        ]

    def reset(self) -> None:
        """Back to the start: nothing of any run at the target, the workload on ``a``."""
        if any(r.state in UNFINISHED for r in self.svc.list_runs(WORKLOAD, limit=10_000)):
            self.cli("run", "resume")  # a case that failed half-way left one behind
        driver = self.svc.driver(TARGET)
        runs = {r.tags["seawall:run"] for r in driver.list_resources() if "seawall:run" in r.tags}
        for run_id in sorted(runs):
            cleanup_run(self.svc, driver, TARGET, run_id)
        leftovers = driver.list_resources()
        assert not leftovers, f"target not clean: {[f'{r.kind.value}/{r.name}' for r in leftovers]}"
        if self.svc.get_workload(WORKLOAD) != self.workload:
            self.svc.db.update_workload(self.workload)
        if self.svc.db.get_plan(WORKLOAD, TARGET) != load(RecoveryPlan, self.plan):
            self.svc.set_plan(self.plan)


def _deploy(svc: Service) -> str:
    """The workload's resources on site ``a``; the server's id."""
    d = svc.driver(SOURCE)

    def mk(
        kind: ResourceKind,
        name: str,
        attrs: dict[str, Any] | None = None,
        refs: dict[str, tuple[str, ...]] | None = None,
        tags: dict[str, str] | None = None,
    ) -> str:
        spec = ResourceSpec(
            kind, name, f"test/{kind.value}/{name}", attrs or {}, refs or {}, tags or {}
        )
        return d.create(spec).id

    flavor = mk(K.FLAVOR, "tiny")
    net = mk(K.NETWORK, "net")
    subnet = mk(K.SUBNET, "sn", {"cidr": "10.20.0.0/24"}, {"network": (net,)})
    sg = mk(K.SECURITY_GROUP, "sg")
    port = mk(
        K.PORT,
        "p0",
        {"fixed_ips": ["10.20.0.10"]},
        {"network": (net,), "subnet": (subnet,), "security_groups": (sg,)},
    )
    boot = mk(K.VOLUME, "boot", {"size": 1 << 20, "bootable": True})
    data = mk(K.VOLUME, "data", {"size": 4 << 20})
    rng = random.Random(7)
    d.write_volume(boot, 0, rng.randbytes(96 * 1024))
    d.write_volume(data, 512 * 1024, rng.randbytes(300 * 1024))
    d.write_volume(data, 3 << 20, b"seawall crash test " * 4096)
    server = mk(
        K.SERVER,
        "db",
        {
            "command": ["python", "-m", "seawall.clouds.sim.app", "--role", "db"],
            "listen_port": 5432,
            "guest_agent": True,
        },
        {"flavor": (flavor,), "ports": (port,), "volumes": (boot, data)},
        {"app": "crash"},
    )
    d.wait_for_status(ResourceRef(K.SERVER, server), "ACTIVE", 30)
    return server


@pytest.fixture(scope="module")
def crash_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("crash")
    home = root / "home"
    env = {k: v for k, v in os.environ.items() if k not in FAULT_VARS}
    env.update(
        SEAWALL_HOME=str(home),
        SEAWALL_KDF="fast",
        SEAWALL_PASSPHRASE=PASSPHRASE,
        SEAWALL_BACKOFF_START="0.1",
    )
    env.pop("SEAWALL_DB_URL", None)
    env.pop("SEAWALL_PASSPHRASE_FILE", None)
    svc: Service | None = None
    world: World | None = None
    with pytest.MonkeyPatch.context() as mp:
        for k in (*FAULT_VARS, "SEAWALL_DB_URL", "SEAWALL_PASSPHRASE_FILE"):
            mp.delenv(k, raising=False)
        for k in ("SEAWALL_HOME", "SEAWALL_KDF", "SEAWALL_PASSPHRASE"):
            mp.setenv(k, env[k])
        try:
            svc = Service(home)
            svc.add_site(
                SOURCE,
                "sim",
                {"path": str(root / "sites" / SOURCE)},
                str(root / "repos" / SOURCE),
                init_repository=True,
            )
            svc.add_site(
                TARGET,
                "sim",
                {"path": str(root / "sites" / TARGET)},
                str(root / "repos" / TARGET),
                init_repository=True,
                key_from=SOURCE,
            )
            _deploy(svc)
            gold = PRESETS["gold"]
            svc.create_policy(dump(replace(gold, name="crashtest", retention=Retention(last=1000))))
            workload = svc.create_workload(
                WORKLOAD, SOURCE, Selector.parse("tag:app=crash"), "crashtest", [TARGET]
            )
            plan = {
                "workload": WORKLOAD,
                "target": TARGET,
                "boot_groups": [{"name": "all", "servers": ["db"]}],
                "health_checks": [{"server": "db", "kind": "status"}],
            }
            svc.set_plan(plan)
            world = World(root, svc, env, workload, plan=plan)
            baseline = svc.protect(WORKLOAD)
            assert baseline.state is RunState.SUCCEEDED, world.explain(baseline)
            world.checkpoint = str(baseline.result["checkpoint"]["id"])
            yield world
        finally:
            if world is not None and world._engine is not None:
                world._engine.close()
            for site in (SOURCE, TARGET):
                destroy_site(root / "sites" / site)
            if svc is not None:
                svc.close()
