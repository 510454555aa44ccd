"""A lab site's names, ports and paths: the one definition of the lab's layout.

The installer writes its files where :class:`LabSite` says, and the tests (and
``seawall-lab env``) find them through the same class, so the two cannot drift apart. This
module uses the standard library only: the fast test tier imports it on machines that
have no lab at all.

Layout (``SEAWALL_LAB_ROOT``, default ``/opt/seawall-lab``)::

    venv/                       the OpenStack services (PyPI, 2026.1 upper-constraints)
    bin/sudo                    shim: services run as root; sudo and rootwrap are dropped
    sites/<site>/clouds.yaml    ``seawall-lab-<site>`` (project admin) and ``...-system``
    sites/<site>/rgw.json       the RGW endpoint and its S3/Swift credentials
    sites/<site>/{etc,data,log,run}/
    sites/<site>/run/<svc>.pid  "pid starttime" of every service the lab started
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: ``SEAWALL_LAB_ROOT`` as read when the lab was imported; the CLI's ``--root`` overrides it
DEFAULT_ROOT = Path(os.environ.get("SEAWALL_LAB_ROOT", "/opt/seawall-lab"))
HOST = "127.0.0.1"
REGION = "RegionOne"
PASSWORD = os.environ.get("SEAWALL_LAB_PASSWORD", "seawall-lab")
SITES = ("a", "b")


class LabError(Exception):
    """A lab step failed or timed out; the message names the step and its log file."""


@dataclass(frozen=True)
class LabSite:
    """One lab cloud. Site ``b`` is site ``a`` with every port + 100 (Ceph mons apart:
    they stay below the 6800-7300 range the OSDs pick their ports from)."""

    name: str
    root: Path = DEFAULT_ROOT

    @property
    def offset(self) -> int:
        if self.name in SITES:
            return 100 * SITES.index(self.name)
        raise LabError(f"unknown lab site {self.name!r}; the lab has sites a and b")

    def port(self, base: int) -> int:
        return base + self.offset

    @property
    def ports(self) -> dict[str, int]:
        i = SITES.index(self.name)
        return {
            "keystone": self.port(5000),
            "glance": self.port(9292),
            "placement": self.port(8778),
            "nova": self.port(8774),
            "neutron": self.port(9696),
            "cinder": self.port(8776),
            "rgw": self.port(7480),
            "mysql": self.port(3306),
            "rabbit": self.port(5672),
            "rabbit_dist": self.port(25672),
            "epmd": self.port(4369),
            "mon_v1": 6789 + i,
            "mon_v2": 3300 + i,
        }

    @property
    def dir(self) -> Path:
        return self.root / "sites" / self.name

    @property
    def etc(self) -> Path:
        return self.dir / "etc"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def logs(self) -> Path:
        return self.dir / "log"

    @property
    def run(self) -> Path:
        return self.dir / "run"

    @property
    def venv(self) -> Path:
        """Shared by both sites: one install of the OpenStack services."""
        return self.root / "venv"

    @property
    def clouds_yaml(self) -> Path:
        return self.dir / "clouds.yaml"

    @property
    def ceph_conf(self) -> Path:
        return self.etc / "ceph" / "ceph.conf"

    @property
    def rgw_json(self) -> Path:
        """The RGW endpoint and keys, written once RGW runs (absent with ``--no-rgw``)."""
        return self.dir / "rgw.json"

    @property
    def cloud(self) -> str:
        """The project-scoped admin entry of :attr:`clouds_yaml`."""
        return f"seawall-lab-{self.name}"

    @property
    def compute_host(self) -> str:
        return f"seawall-lab-{self.name}-compute1"

    def url(self, service: str, path: str = "") -> str:
        return f"http://{HOST}:{self.ports[service]}{path}"

    @property
    def db_url(self) -> str:
        return f"mysql+pymysql://seawall:{PASSWORD}@{HOST}:{self.ports['mysql']}"

    @property
    def rabbit_url(self) -> str:
        return f"rabbit://seawall:{PASSWORD}@{HOST}:{self.ports['rabbit']}/"

    def env(self) -> dict[str, str]:
        """The environment of every lab command: the sudo shim and the venv first."""
        path = f"{self.root / 'bin'}:{self.venv / 'bin'}:/usr/sbin:/sbin:{os.environ['PATH']}"
        return {**os.environ, "PATH": path, "CEPH_CONF": str(self.ceph_conf)}

    def test_env(self) -> dict[str, str]:
        """What the lab tier's tests read to find this site (``seawall-lab env``)."""
        return {
            "SEAWALL_LAB_ROOT": str(self.root),
            "SEAWALL_LAB_CLOUD": self.cloud,
            "SEAWALL_LAB_CLOUDS_YAML": str(self.clouds_yaml),
            "SEAWALL_LAB_CEPH_CONF": str(self.ceph_conf),
        }
