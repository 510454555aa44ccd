"""End to end on the real two-site lab (``seawall-lab up``): protect on A, change, protect
again, fail over to B, drill on B, reprotect B → A, fail back, all through
:class:`seawall.service.Service` and the ``openstack`` driver.

The workload: 3 servers (web, app, db), 2 networks with a router, 2 security groups, a
keypair, a flavor, an image, a boot volume and 2 data volumes holding known bytes written
through RBD, an affinity server group and a floating IP. Every phase prints its time.

Skips unless ``SEAWALL_LAB_CLOUD`` is set (the switch for every lab test) and both lab
sites are up (``SEAWALL_LAB_ROOT``, default /opt/seawall-lab).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import pytest

from seawall.clouds import CloudDriver, ResourceSpec
from seawall.errors import PreflightFailed
from seawall.model import ResourceKind, Run, RunState, Selector
from seawall.service import Service

from .conftest import pattern

K = ResourceKind
MiB = 1 << 20

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(3600)]


def public_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    raw = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    return raw.decode() + " seawall-e2e"


class Timings:
    """Per phase: wall time, the part spent in cloud API calls and waiting on the cloud
    (summed over threads, from the drivers' ``cloud_seconds``), and seawall's own CPU
    (process CPU time: planning, the engine, hashing, sealing, RBD and HTTP clients)."""

    def __init__(self, *drivers: CloudDriver) -> None:
        self.drivers = drivers
        self.rows: list[tuple[str, float, float, float, str]] = []

    def cloud(self) -> float:
        return sum(float(getattr(d, "cloud_seconds", 0.0)) for d in self.drivers)

    def run(self, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        t, c, cpu = time.monotonic(), self.cloud(), time.process_time()
        result = fn(*args, **kwargs)
        took, cloud = time.monotonic() - t, self.cloud() - c
        own = time.process_time() - cpu
        extra = ""
        if isinstance(result, Run):
            extra = f"{result.state.value}"
            assert result.state is RunState.SUCCEEDED, f"{name}: {result.error}"
        self.rows.append((name, took, cloud, own, extra))
        print(f"[e2e] {name:28s} {took:7.1f}s  cloud {cloud:7.1f}s  seawall cpu {own:6.1f}s"
              f" {extra}", flush=True)  # fmt: skip
        return result

    def report(self) -> None:
        print("\n[e2e] phase timings: wall, time in cloud API calls and waits (summed over")
        print("[e2e] threads, so it can exceed wall), seawall's own CPU")
        for name, took, cloud, own, extra in self.rows:
            print(f"[e2e]   {name:28s} {took:7.1f}s  cloud {cloud:7.1f}s  cpu {own:6.1f}s {extra}")
        total = [sum(r[i] for r in self.rows) for i in (1, 2, 3)]
        print(f"[e2e]   {'total':28s} {total[0]:7.1f}s  cloud {total[1]:7.1f}s"
              f"  cpu {total[2]:6.1f}s")  # fmt: skip


def by_name(driver: CloudDriver, kind: ResourceKind) -> dict[str, Any]:
    return {r.name: r for r in driver.list_resources(kind)}


def inventory(driver: CloudDriver) -> set[tuple[str, str]]:
    return {(r.kind.value, r.id) for r in driver.list_resources()}


def volume_digest(driver: CloudDriver, volume_id: str, size: int, key: str) -> str:
    """sha256 of a volume's bytes, read through a snapshot (removed afterwards)."""
    snap = driver.create_snapshot(volume_id, key)
    try:
        h = hashlib.sha256()
        for off in range(0, size, 4 * MiB):
            h.update(driver.read_snapshot(snap.id, off, min(4 * MiB, size - off)))
        return h.hexdigest()
    finally:
        driver.delete_snapshot(snap.id)


def cleanup(driver: CloudDriver, marker: str) -> None:
    """What the test and its runs made: tagged for ``marker``, or (the kinds the cloud
    keeps no tags on, such as keypairs and flavors) named for it."""
    unmarked = driver.capabilities().unmarked_kinds
    for kind in reversed(list(ResourceKind)):
        for r in driver.list_resources(kind):
            tags = r.tags
            named = kind in unmarked and marker in r.name
            if named or tags.get("app") == marker or tags.get("seawall:workload") == marker:
                try:
                    driver.delete(r.ref)
                except Exception as exc:  # keep cleaning
                    print(f"[e2e] cleanup: {r.kind.value} {r.name}: {exc}")


def build(driver: CloudDriver, marker: str) -> dict[str, Any]:
    """The 3-server workload on site A; returns its resources and the known bytes."""

    def make(kind: ResourceKind, name: str, attrs: Any = None, refs: Any = None) -> Any:
        spec = ResourceSpec(kind, name, f"{marker}/{name}", attrs or {}, refs or {},
                            {"app": marker})  # fmt: skip
        return driver.create(spec)

    w: dict[str, Any] = {}
    w["flavor"] = make(K.FLAVOR, f"{marker}-small",
                       {"vcpus": 1, "ram_mb": 256, "disk_gb": 1,
                        "extra_specs": {"hw:cpu_policy": "shared"}})  # fmt: skip
    w["keypair"] = make(K.KEYPAIR, f"{marker}-key", {"public_key": public_key()})
    w["image_bytes"] = pattern(f"{marker}-image", 2 * MiB)
    w["image"] = make(K.IMAGE, f"{marker}-image", {"disk_format": "raw"})
    driver.write_image(w["image"].id, [w["image_bytes"]])
    front = make(K.NETWORK, f"{marker}-front")
    back = make(K.NETWORK, f"{marker}-back")
    fsub = make(K.SUBNET, f"{marker}-front-sub", {"cidr": "10.61.0.0/24"}, {"network": (front.id,)})
    bsub = make(K.SUBNET, f"{marker}-back-sub",
                {"cidr": "10.62.0.0/24", "dns_nameservers": ["10.62.0.2"],
                 "host_routes": [{"destination": "192.168.50.0/24", "nexthop": "10.62.0.254"}]},
                {"network": (back.id,)})  # fmt: skip
    w["router"] = make(K.ROUTER, f"{marker}-router", {"external_gateway": True},
                       {"subnets": (fsub.id, bsub.id)})  # fmt: skip
    rule = {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp"}
    web_sg = make(K.SECURITY_GROUP, f"{marker}-web", {"rules": [
        {**rule, "port_range_min": 80, "port_range_max": 80, "remote_ip_prefix": "0.0.0.0/0"},
        {**rule, "port_range_min": 443, "port_range_max": 443, "remote_ip_prefix": "0.0.0.0/0"},
    ]})  # fmt: skip
    db_sg = make(K.SECURITY_GROUP, f"{marker}-db", {"rules": [
        {**rule, "port_range_min": 5432, "port_range_max": 5432,
         "remote_ip_prefix": "10.61.0.0/24"},
    ]})  # fmt: skip
    port = lambda name, net, sub, ip, sg: make(  # noqa: E731
        K.PORT, f"{marker}-{name}", {"fixed_ips": [ip]},
        {"network": (net.id,), "subnet": (sub.id,), "security_groups": (sg.id,)})  # fmt: skip
    web_port = port("web-port", front, fsub, "10.61.0.10", web_sg)
    app_front = port("app-front", front, fsub, "10.61.0.11", web_sg)
    app_back = port("app-back", back, bsub, "10.62.0.11", db_sg)
    db_port = port("db-port", back, bsub, "10.62.0.20", db_sg)
    group = make(K.SERVER_GROUP, f"{marker}-group", {"policies": ["affinity"]})
    w["volumes"] = {
        "boot": make(
            K.VOLUME,
            f"{marker}-db-boot",
            {"size": 8 * MiB, "bootable": True},
            {"image": (w["image"].id,)},
        ),
        "db-data": make(K.VOLUME, f"{marker}-db-data", {"size": 24 * MiB}),
        "app-data": make(K.VOLUME, f"{marker}-app-data", {"size": 12 * MiB}),
    }
    # known data, written through RBD before anything is attached
    w["data"] = {}
    for name, vol in w["volumes"].items():
        size = int(vol.attrs["size"])
        content = bytearray(size)
        if name == "boot":
            content[: len(w["image_bytes"])] = w["image_bytes"]
        for i, off in enumerate(range(MiB, size, 3 * MiB)):
            chunk = pattern(f"{marker}-{name}-{i}", 256 * 1024)
            driver.write_volume(vol.id, off, chunk)
            content[off : off + len(chunk)] = chunk
        w["data"][name] = content
    common = {"flavor": (w["flavor"].id,), "keypair": (w["keypair"].id,)}
    w["db"] = make(K.SERVER, f"{marker}-db", {"hostname": "db", "metadata": {"role": "db"}},
                   {**common, "ports": (db_port.id,),
                    "volumes": (w["volumes"]["boot"].id, w["volumes"]["db-data"].id)})  # fmt: skip
    w["app"] = make(K.SERVER, f"{marker}-app", {"hostname": "app", "metadata": {"role": "app"}},
                    {**common, "image": (w["image"].id,), "ports": (app_front.id, app_back.id),
                     "volumes": (w["volumes"]["app-data"].id,),
                     "server_group": (group.id,)})  # fmt: skip
    w["web"] = make(K.SERVER, f"{marker}-web", {"hostname": "web", "metadata": {"role": "web"}},
                    {**common, "image": (w["image"].id,), "ports": (web_port.id,),
                     "server_group": (group.id,)})  # fmt: skip
    for s in ("db", "app", "web"):
        driver.wait_for_status(w[s].ref, "ACTIVE", 300)
    w["fip"] = make(K.FLOATING_IP, f"{marker}-web-fip", {}, {"port": (web_port.id,)})
    return w


def check_recovered(src: CloudDriver, dst: CloudDriver, marker: str, prefix: str = "") -> None:
    """Every resource of the workload exists on ``dst`` with its mapped attributes."""
    theirs = {k: by_name(src, k) for k in ResourceKind}
    ours = {k: by_name(dst, k) for k in ResourceKind}
    for name in ("web", "app", "db"):
        assert ours[K.SERVER][f"{prefix}{marker}-{name}"].attrs["status"] == "ACTIVE"
    for name in ("web-port", "app-front", "app-back", "db-port"):
        a, b = theirs[K.PORT][f"{marker}-{name}"], ours[K.PORT][f"{prefix}{marker}-{name}"]
        assert b.attrs["fixed_ips"] == a.attrs["fixed_ips"], name
        assert b.attrs["mac_address"] == a.attrs["mac_address"], name
    for name in ("web", "db"):
        a = theirs[K.SECURITY_GROUP][f"{marker}-{name}"]
        b = ours[K.SECURITY_GROUP][f"{prefix}{marker}-{name}"]
        assert b.attrs["rules"] == a.attrs["rules"], name
    for name in ("front-sub", "back-sub"):
        a, b = theirs[K.SUBNET][f"{marker}-{name}"], ours[K.SUBNET][f"{prefix}{marker}-{name}"]
        for attr in ("cidr", "gateway_ip", "dns_nameservers", "host_routes", "enable_dhcp"):
            assert b.attrs[attr] == a.attrs[attr], (name, attr)
    flavor = next(f for n, f in ours[K.FLAVOR].items() if n.startswith(f"{prefix}{marker}-small"))
    want = theirs[K.FLAVOR][f"{marker}-small"].attrs
    for attr in ("vcpus", "ram_mb", "disk_gb", "extra_specs"):
        assert flavor.attrs[attr] == want[attr], attr


def preflight_refusals(svc: Service, b: CloudDriver, marker: str, plan: Any) -> None:
    """A mapping to a network and a flavor B does not have, and B's server quota one short:
    the failover is refused before anything is created, naming every problem."""
    conn = b.conn  # the lab's admin account may change its project's quotas
    project = conn.current_project_id
    before = inventory(b)
    saved = conn.compute.get_quota_set(project).instances
    used = conn.compute.get_limits().absolute.instances_used
    mappings = {"network": {f"{marker}-front": "no-such-net"},
                "flavor": {f"{marker}-small": "no-such-flavor"}}  # fmt: skip
    svc.set_plan(plan("site-b", mappings=mappings))
    try:
        conn.compute.update_quota_set(project, instances=used + 2, force=True)
        with pytest.raises(PreflightFailed) as refused:
            svc.failover(marker, target="site-b")
    finally:
        conn.compute.update_quota_set(project, instances=saved, force=True)
        svc.set_plan(plan("site-b"))
    text = str(refused.value)
    print(f"[e2e] refused: {text}")
    assert "no network named 'no-such-net'" in text
    assert "no flavor named 'no-such-flavor'" in text
    assert "needs 3 servers, only 2 left" in text
    assert inventory(b) == before, "a refused failover created something"


@pytest.mark.lab
def test_protect_failover_drill_reprotect_failback(lab_service: Service) -> None:
    svc = lab_service
    a, b = svc.driver("site-a"), svc.driver("site-b")
    marker = f"e2e{uuid.uuid4().hex[:6]}"
    t = Timings(a, b)
    try:
        w = t.run("build workload on A", build, a, marker)
        svc.create_workload(marker, "site-a", Selector.parse(f"tag:app={marker}"), "gold",
                            ["site-b"])  # fmt: skip

        def plan(target: str, **extra: Any) -> dict[str, Any]:
            return {
                "workload": marker, "target": target,
                "boot_groups": [{"name": "data", "servers": [f"{marker}-db"]},
                                {"name": "front", "servers": [f"{marker}-app", f"{marker}-web"]}],
                **extra,
            }  # fmt: skip

        for target in ("site-a", "site-b"):
            svc.set_plan(plan(target))
        full = t.run("protect (full)", svc.protect, marker)
        first = svc.get_checkpoint(full.result["checkpoint"]["id"])
        vols = {v.volume_id: v for v in first.volumes}
        # the project is captured too: who holds which role, and its quota limits
        (project,) = first.graph.of_kind(K.PROJECT)
        assert {"user": "admin", "role": "admin"} in project.attrs["role_assignments"]
        assert set(project.attrs["quotas"]) >= {"servers", "cores", "ram_mb", "volumes"}
        for name, vol in w["volumes"].items():
            ref = vols[vol.id]
            assert ref.size == vol.attrs["size"], name

        # change: 64 KiB in db-data only
        change = pattern(f"{marker}-change", 64 * 1024)
        a.write_volume(w["volumes"]["db-data"].id, 10 * MiB + 4096, change)
        w["data"]["db-data"][10 * MiB + 4096 : 10 * MiB + 4096 + len(change)] = change
        incr = t.run("protect (incremental)", svc.protect, marker)
        cp = svc.get_checkpoint(incr.result["checkpoint"]["id"])
        read = {v.volume_id: v.bytes_read for v in cp.volumes}
        print(f"[e2e] incremental bytes read per volume: {read}")
        assert read[w["volumes"]["db-data"].id] >= len(change)
        assert read[w["volumes"]["db-data"].id] <= 8 * MiB  # at most 2 RBD objects
        assert read[w["volumes"]["app-data"].id] == 0
        assert read[w["volumes"]["boot"].id] == 0

        t.run("preflight refusals on B", preflight_refusals, svc, b, marker, plan)
        t.run("failover to B", svc.failover, marker, target="site-b")
        t.run("check B", check_recovered, a, b, marker)
        vb = by_name(b, K.VOLUME)
        for name, vol in w["volumes"].items():
            got = vb[vol.name]
            size = int(got.attrs["size"])
            assert size == len(w["data"][name])
            digest = volume_digest(b, got.id, size, f"{marker}-verify-{name}")
            assert digest == hashlib.sha256(w["data"][name]).hexdigest(), name

        before = inventory(b)
        drill = t.run("drill on B", svc.drill, marker, target="site-b", checkpoint_id=cp.id)
        after = inventory(b)
        assert drill.result.get("residue", 0) == 0
        assert before == after, f"drill residue: {sorted(after ^ before)}"

        # site A lost its workload (the disaster happened there): remove it
        t.run("lose the workload on A", cleanup, a, marker)
        rp = t.run("reprotect B -> A", svc.reprotect, marker)
        print(f"[e2e] reprotect checkpoint: {rp.result.get('checkpoint', {}).get('id')}")
        t.run("failback to A", svc.failback, marker)
        va = by_name(a, K.VOLUME)
        for name, vol in w["volumes"].items():
            got = va[vol.name]
            digest = volume_digest(a, got.id, int(got.attrs["size"]), f"{marker}-fb-{name}")
            assert digest == hashlib.sha256(w["data"][name]).hexdigest(), name
        servers = by_name(a, K.SERVER)
        assert all(
            servers[f"{marker}-{n}"].attrs["status"] == "ACTIVE" for n in ("web", "app", "db")
        )
    finally:
        t.report()
        for driver in (b, a):
            cleanup(driver, marker)
