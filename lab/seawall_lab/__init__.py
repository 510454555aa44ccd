"""The seawall lab: a real, minimal OpenStack (2026.1) per site, on one machine, on 127.0.0.1.

A developer tool beside seawall, not part of it (seawall's wheel holds none of this):
``seawall-lab up --site a`` and ``--site b`` (or ``./dev lab-site ...``) give two
independent clouds (own MariaDB, RabbitMQ, Ceph, OVN, Keystone ...) with real Keystone,
Glance, Placement, Nova (only the virt driver is fake: servers run no guest), Neutron
ML2/OVN, Cinder on a single-node Ceph (RBD) with cinder-backup, and a Ceph RGW that offers
S3 and Swift.

Modules, in the order a bring-up uses them:

- :mod:`~seawall_lab.layout`: a site's names, ports and paths (also what the tests read);
- :mod:`~seawall_lab.process`: starting, recording and stopping services, small waits;
- :mod:`~seawall_lab.install`: apt packages and the venv of the OpenStack services, pinned
  by ``upper-constraints.txt`` beside it;
- :mod:`~seawall_lab.infrastructure`: MariaDB, RabbitMQ, Ceph and RGW, OVN;
- :mod:`~seawall_lab.services`: the OpenStack services and their configuration;
- :mod:`~seawall_lab.lifecycle`: ``up``, ``down`` and ``status`` over the stages;
- :mod:`~seawall_lab.cli`: the ``seawall-lab`` command.

Why each unusual setting exists is said next to it; the facts behind them (no
device-mapper, no openvswitch kernel module, no systemd) are in ``docs/lab.md``.
"""

from __future__ import annotations

from seawall_lab.layout import DEFAULT_ROOT, SITES, LabError, LabSite
from seawall_lab.lifecycle import ServiceStatus, down, status, up

__all__ = ["DEFAULT_ROOT", "SITES", "LabError", "LabSite", "ServiceStatus", "down", "status", "up"]
