"""Fixtures for the CloudDriver conformance suite and the sim driver's own tests.

The conformance suite talks to a driver only through the ``CloudDriver`` protocol and a
small :class:`Harness` that does the few things the protocol cannot (take the site down,
set quotas, give a server a command it can run). Each driver gets one harness class; the
``harness``/``driver`` fixtures are parametrized over them. ``openstack`` is marked
``lab`` and skips unless ``SEAWALL_LAB_CLOUD`` names a clouds.yaml entry of the lab (and
an ``openstack`` driver is registered), so the suite runs here on ``sim`` only.

Every sim site a test opens is destroyed by a finalizer (which kills its processes), so
no test leaves a server process behind, whatever it asserts.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from seawall.clouds import CloudDriver, ResourceSpec, open_site
from seawall.clouds.sim import SimDriver, destroy_site
from seawall.model import Resource, ResourceKind, Site

K = ResourceKind


class Harness:
    """What a conformance test may ask of a site beyond the driver protocol."""

    name = "?"
    driver: CloudDriver

    def __init__(self) -> None:
        #: keys are unique per test so that runs against a shared lab never collide
        self.prefix = f"t-{uuid.uuid4().hex[:8]}"
        #: what this test's creates made (``seawall:key`` is theirs): the clean-up list
        #: for the kinds a cloud keeps no key for
        self.created: list[Resource] = []

    def key(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def take_down(self) -> None:
        pytest.skip(f"{self.name}: cannot take the site down from a test")

    def limit_quotas(self, **limits: int) -> None:
        pytest.skip(f"{self.name}: cannot set quotas from a test")

    def other_project(self) -> CloudDriver:
        """The same site as another project sees it (``CloudDriver.for_project``)."""
        pytest.skip(f"{self.name}: no second project to act as")

    def app_command(self, role: str, requires: str = "", wait: float = 20.0) -> list[str]:
        """The argv of a sample-workload server, or skip if servers cannot run one."""
        if not self.driver.capabilities().live_servers:
            pytest.skip(f"{self.name}: servers do not run processes")
        argv = ["python", "-m", "seawall.clouds.sim.app", "--role", role, "--wait", str(wait)]
        return [*argv, "--requires", requires] if requires else argv

    def close(self) -> None:
        pass

    # -- building blocks shared by the tests ----------------------------------------------

    def create(self, spec: ResourceSpec) -> Resource:
        """``driver.create``, remembering what it made (not what it reused)."""
        got = self.driver.create(spec)
        if got.tags.get("seawall:key") == spec.key:
            self.created.append(got)
        return got

    def make(
        self,
        kind: ResourceKind,
        name: str,
        attrs: dict[str, Any] | None = None,
        refs: dict[str, tuple[str, ...]] | None = None,
        tags: dict[str, str] | None = None,
    ) -> Resource:
        spec = ResourceSpec(kind, name, self.key(name), attrs or {}, refs or {}, tags or {})
        return self.create(spec)

    def network(self, name: str = "net", cidr: str = "10.10.0.0/24") -> tuple[Resource, Resource]:
        net = self.make(K.NETWORK, name)
        sub = self.make(K.SUBNET, f"{name}-sub", {"cidr": cidr}, {"network": (net.id,)})
        return net, sub

    def server(
        self,
        name: str,
        *,
        networks: tuple[Resource, ...] = (),
        volumes: tuple[Resource, ...] = (),
        command: list[str] | None = None,
        tags: dict[str, str] | None = None,
        guest_agent: bool = False,
    ) -> Resource:
        flavor = self.make(K.FLAVOR, "flavor", {"vcpus": 1, "ram_mb": 256, "disk_gb": 1})
        ports = [
            self.make(K.PORT, f"{name}-port{i}", refs={"network": (n.id,)})
            for i, n in enumerate(networks)
        ]
        attrs: dict[str, Any] = {"hostname": name, "guest_agent": guest_agent}
        if command:
            attrs.update(command=command, listen_port=8080)
        refs = {
            "flavor": (flavor.id,),
            "ports": tuple(p.id for p in ports),
            "volumes": tuple(v.id for v in volumes),
        }
        return self.make(K.SERVER, name, attrs, refs, tags)


class SimHarness(Harness):
    name = "sim"

    def __init__(self, root: Path, site_name: str = "sim-a") -> None:
        super().__init__()
        self.path = root / site_name
        self.site = Site(site_name, "sim", {"path": str(self.path)})
        driver = open_site(self.site)  # through the entry point, as the service does
        assert isinstance(driver, SimDriver)
        self.sim: SimDriver = driver
        self.driver = driver
        self.sim.stop_grace = 2.0

    def take_down(self) -> None:
        (self.path / "DOWN").touch()

    def bring_up(self) -> None:
        (self.path / "DOWN").unlink(missing_ok=True)

    def limit_quotas(self, **limits: int) -> None:
        (self.path / "quotas.json").write_text(json.dumps(limits))

    def other_project(self) -> CloudDriver:
        return self.driver.for_project(f"{self.prefix}-other")

    def close(self) -> None:
        destroy_site(self.path)


class OpenStackHarness(Harness):  # pragma: no cover - needs the lab
    name = "openstack"

    def __init__(self) -> None:
        super().__init__()
        cloud = os.environ.get("SEAWALL_LAB_CLOUD")
        if not cloud:
            pytest.skip("openstack: set SEAWALL_LAB_CLOUD to a clouds.yaml entry of the lab")
        from seawall.plugins import registry

        if "openstack" not in registry().names("clouds"):
            pytest.skip("openstack: no openstack driver is registered yet")
        params = {"cloud": cloud}
        for env, param in (
            ("SEAWALL_LAB_CLOUDS_YAML", "clouds_yaml"),
            ("SEAWALL_LAB_CEPH_CONF", "ceph_conf"),
        ):
            if os.environ.get(env):
                params[param] = os.environ[env]
        self.params = params
        self.driver = open_site(Site("lab", "openstack", params))

    def other_project(self) -> CloudDriver:
        """The lab's tenant project (a member user of its own), through the params an
        operator gives a site for a tenant: ``project.<name>.cloud``."""
        clouds_yaml = os.environ.get("SEAWALL_LAB_CLOUDS_YAML")
        if not clouds_yaml:
            pytest.skip("openstack: SEAWALL_LAB_CLOUDS_YAML names no clouds.yaml")
        from seawall_lab.tenants import tenant_cloud

        project, entry, path = tenant_cloud(self.params["cloud"], clouds_yaml, 1)
        params = {**self.params, f"project.{project}.cloud": entry}
        params[f"project.{project}.clouds_yaml"] = path
        return open_site(Site("lab", "openstack", params)).for_project(project)

    def close(self) -> None:
        unmarked = self.driver.capabilities().unmarked_kinds
        for kind in reversed(list(ResourceKind)):
            for r in self.driver.list_resources(kind):
                if r.tags.get("seawall:key", "").startswith(self.prefix):
                    self.driver.delete(r.ref)
            for r in self.created:  # the cloud holds no key for these: what we made
                if r.kind is kind and kind in unmarked:
                    self.driver.delete(r.ref)


@pytest.fixture(params=["sim", pytest.param("openstack", marks=pytest.mark.lab)])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    h: Harness = SimHarness(tmp_path) if request.param == "sim" else OpenStackHarness()
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def driver(harness: Harness) -> CloudDriver:
    return harness.driver


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimHarness]:
    """A sim site of its own (for the sim-only tests); destroyed afterwards."""
    h = SimHarness(tmp_path)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def sim_b(tmp_path: Path) -> Iterator[SimHarness]:
    """A second sim site, for tests that need two."""
    h = SimHarness(tmp_path, "sim-b")
    try:
        yield h
    finally:
        h.close()


def http_json(url: str, body: dict[str, Any] | None = None, timeout: float = 5.0) -> Any:
    """GET (or POST ``body``) and decode JSON; HTTP errors raise ``urllib.error.HTTPError``."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def wait_healthy(server: Resource, timeout: float = 15.0) -> dict[str, Any]:
    """Poll a server's /health until it answers 200; fail the test with its status if not."""
    url = f"http://{server.attrs['access_address']}:{server.attrs['listen_port']}/health"
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result: dict[str, Any] = http_json(url, timeout=2.0)
            return result
        except (OSError, urllib.error.URLError) as exc:
            last = exc
            time.sleep(0.05)
    pytest.fail(f"{server.name} not healthy within {timeout}s: {last}")


def health_status(server: Resource, timeout: float = 3.0) -> int | None:
    """The HTTP status of /health, or None if it does not answer in time."""
    url = f"http://{server.attrs['access_address']}:{server.attrs['listen_port']}/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, urllib.error.URLError):
        return None
