"""Bring a lab site up, take it down, say what runs: the stages in their order.

``up`` is idempotent: a running service is left alone and one-time steps are stamped, so a
second ``up`` after a failed one continues from what is already running.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from seawall_lab.infrastructure import (
    start_ceph,
    start_chassis,
    start_mysql,
    start_ovn,
    start_rabbit,
    start_rgw,
)
from seawall_lab.install import install
from seawall_lab.layout import LabSite
from seawall_lab.process import log, running, started, stop
from seawall_lab.services import (
    set_up_project,
    start_cinder,
    start_glance,
    start_keystone,
    start_neutron,
    start_nova,
    start_placement,
    wait_for_ready,
)

STAGES: tuple[tuple[str, Callable[[LabSite], None]], ...] = (
    ("mysql", start_mysql),
    ("rabbitmq", start_rabbit),
    ("ceph", start_ceph),
    ("rgw", start_rgw),
    ("ovn", start_ovn),
    ("chassis", start_chassis),
    ("keystone", start_keystone),
    ("glance", start_glance),
    ("placement", start_placement),
    ("nova", start_nova),
    ("neutron", start_neutron),
    ("cinder", start_cinder),
    ("ready", wait_for_ready),
    ("project", set_up_project),
)


def up(site: LabSite, *, skip_install: bool = False, rgw: bool = True) -> dict[str, float]:
    """Install what is missing, then start every service of ``site`` that is not running
    and wait until the cloud is usable. Returns seconds per stage."""
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    if not skip_install:
        timings.update(install(site.root))
    for sub in (site.etc, site.data, site.logs, site.run):
        sub.mkdir(parents=True, exist_ok=True)
    for name, stage in STAGES:
        if name == "rgw" and not rgw:
            continue
        t = time.monotonic()
        stage(site)
        timings[name] = time.monotonic() - t
    timings["total"] = time.monotonic() - t0
    log(site.name, f"READY in {timings['total']:.0f}s: clouds.yaml {site.clouds_yaml}")
    return timings


def down(site: LabSite, names: Sequence[str] = (), purge: bool = False) -> list[str]:
    """Stop what ``up`` started (all, or only ``names``); ``purge`` also deletes the site."""
    if not site.run.exists():
        return []
    stopped = stop(site, names)
    if purge and not names:
        shutil.rmtree(site.dir, ignore_errors=True)
    return stopped


@dataclass(frozen=True)
class ServiceStatus:
    """One row of ``seawall-lab status``: a service and the memory of its process group."""

    name: str
    pid: int | None
    processes: int
    rss: int  #: bytes, summed over the process group
    pss: int  #: bytes, summed over the process group


def _process_groups() -> dict[int, list[int]]:
    """Every live process by its process group (a lab service's pid is its group)."""
    groups: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                groups.setdefault(os.getpgid(int(proc.name)), []).append(int(proc.name))
            except OSError:  # gone since the listing
                continue
    return groups


def status(site: LabSite) -> list[ServiceStatus]:
    """Every service ``up`` started, with its group's memory (RSS and PSS)."""
    groups = _process_groups()
    out = []
    for name in started(site):
        pid = running(site, name)
        rss = pss = 0
        members = groups.get(pid, []) if pid else []
        for member in members:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
        out.append(ServiceStatus(name, pid, len(members), rss, pss))
    return out
