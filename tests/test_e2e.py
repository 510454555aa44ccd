"""End to end on two sim sites through the Service: every operation, for real.

The ``shop`` fixture (tests/conftest.py) deploys a small three-tier workload on site
``a`` whose servers are real processes; data is written by the application itself
(``POST /write`` on the db server), so changed-block tracking, byte-for-byte
verification, boot order and health checks are all exercised rather than mocked.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from seawall.clouds import ResourceSpec
from seawall.clouds.sim import destroy_site
from seawall.model import (
    Checkpoint,
    ResourceKind,
    RunKind,
    RunState,
    Selector,
    load,
)
from seawall.orchestrate.engine import install_runtime
from seawall.service import Service

K = ResourceKind
KiB = 1024
CHUNK = 64 * KiB  # the repository's default chunk size

pytestmark = pytest.mark.slow


def ok(shop: Any, run: Any, state: RunState = RunState.SUCCEEDED) -> Any:
    assert run.state is state, shop.explain(run)
    return run


def step_times(shop: Any, run_id: str) -> dict[str, tuple[float, float]]:
    return {s.name: (s.started_at, s.finished_at) for s in shop.svc.steps(run_id)}


@pytest.fixture(scope="module")
def baseline(shop_module: Any) -> str:
    """One checkpoint of the module's shared world (replicated to b)."""
    install_runtime(shop_module.svc)
    return str(ok(shop_module, shop_module.svc.protect("shop")).result["checkpoint"]["id"])


@pytest.fixture
def protected(shop_module: Any, baseline: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The shared, protected world; a test using it must leave it as it found it."""
    for k in ("SEAWALL_HOME", "SEAWALL_PASSPHRASE", "SEAWALL_KDF", "SEAWALL_BACKOFF_START"):
        monkeypatch.setenv(k, shop_module.env[k])
    install_runtime(shop_module.svc)  # tasks reach the world through this process's runtime
    before = {site: shop_module.inventory(site) for site in ("a", "b")}
    yield shop_module
    assert {site: shop_module.inventory(site) for site in ("a", "b")} == before
    assert shop_module.svc.get_workload("shop").site == "a"


# --------------------------------------------------------------------------------------
# protect
# --------------------------------------------------------------------------------------


def test_protect_full_then_incremental_reads_only_what_changed(shop: Any) -> None:
    full = ok(shop, shop.svc.protect("shop"))
    first = full.result["checkpoint"]
    assert first["modes"] == ["allocated"]  # a first checkpoint reads allocated ranges only
    assert first["consistency"] == "application"  # gold froze the servers
    assert full.result["replication:b"]["ok"] is True
    cp1 = shop.svc.get_checkpoint(first["id"])
    driver = shop.svc.driver("a")
    expected = 0
    for v in cp1.volumes:
        touched = set()
        for e in driver.changed_extents(v.snapshot_id, None):
            touched.update(range(e.offset // CHUNK, (e.offset + e.length - 1) // CHUNK + 1))
        expected += sum(min(CHUNK, v.size - i * CHUNK) for i in touched)
    assert 0 < first["bytes_read"] == expected < 3 << 20  # of 1 + 2 MiB of volumes
    assert sorted(shop.svc.db.checkpoint_sites(cp1.id)) == ["a", "b"]

    # the application writes three 4 KiB blocks, two of them in the same 64 KiB chunk
    shop.write("a", 1, 10 * CHUNK, 4 * KiB, seed=1)
    shop.write("a", 1, 10 * CHUNK + 8 * KiB, 4 * KiB, seed=2)
    shop.write("a", 1, 20 * CHUNK + 4 * KiB, 4 * KiB, seed=3)
    incr = ok(shop, shop.svc.protect("shop"))
    second = incr.result["checkpoint"]
    assert second["modes"] == ["cbt"]
    assert second["bytes_read"] == 2 * CHUNK  # two chunks changed; nothing else is read
    assert 0 < second["bytes_stored"] <= 2 * CHUNK
    assert incr.result["replication:b"]["bytes_sent"] < 2 * CHUNK + 64 * KiB
    cp2 = shop.svc.get_checkpoint(second["id"])
    assert cp2.parent == cp1.id and cp2.diff.empty
    # each checkpoint is a full logical image: the new one holds exactly the new bytes
    report = shop.svc.verify_checkpoint(cp2.id)
    assert report["ok"] and set(report["sites"]) == {"a", "b"}
    data = shop.volume_bytes("a", "db")[1]
    image = bytearray(len(data))
    repo = shop.svc.repository("b")
    for offset, chunk in repo.read_volume(cp2.volume(shop.volumes["db-data"]).image_id):
        image[offset : offset + len(chunk)] = chunk
    assert bytes(image) == data

    # a server joins the workload (it carries the selector's tag), then leaves again
    d = shop.driver("a")
    net = next(r for r in d.list_resources(K.NETWORK) if r.name == "net")
    flavor = next(r for r in d.list_resources(K.FLAVOR))
    port = d.create(ResourceSpec(K.PORT, "cache-port", "t/cache-port", {}, {"network": (net.id,)}))
    vol = d.create(ResourceSpec(K.VOLUME, "cache-vol", "t/cache-vol", {"size": 256 * KiB}))
    d.write_volume(vol.id, 0, b"cache" * 1000)
    cache = d.create(
        ResourceSpec(
            K.SERVER,
            "cache",
            "t/cache",
            {},
            {"flavor": (flavor.id,), "ports": (port.id,), "volumes": (vol.id,)},
            {"app": "shop"},
        )
    )
    third = ok(shop, shop.svc.protect("shop"))
    cp3 = shop.svc.get_checkpoint(third.result["checkpoint"]["id"])
    assert set(cp3.diff.added) == {cache.ref, port.ref, vol.ref} and not cp3.diff.removed
    assert set(cp3.diff.added) == cp3.graph.refs - cp2.graph.refs
    assert cp3.graph.find(cache.ref) is not None and cp2.graph.find(cache.ref) is None
    # a new volume has no base: only its allocated range (one 64 KiB chunk) is read
    assert cp3.volume(vol.id).bytes_read == CHUNK
    assert third.result["checkpoint"]["bytes_read"] == CHUNK  # the others: nothing
    assert third.result["checkpoint"]["volumes"] == 3

    d.delete(cache.ref)
    fourth = ok(shop, shop.svc.protect("shop"))
    cp4 = shop.svc.get_checkpoint(fourth.result["checkpoint"]["id"])
    assert set(cp4.diff.removed) == {cache.ref, port.ref, vol.ref} and not cp4.diff.added
    assert [c.id for c in shop.svc.list_checkpoints("shop", "b")] == [
        cp4.id,
        cp3.id,
        cp2.id,
        cp1.id,
    ]


# --------------------------------------------------------------------------------------
# failover, reprotect, failback
# --------------------------------------------------------------------------------------


def test_failover_verifies_every_byte_boots_in_order_then_reprotect_and_failback(
    shop: Any,
) -> None:
    d = shop.driver("a")
    d.write_volume(shop.volumes["db-boot"], 0, bytes(CHUNK))  # zeros where the image had data
    shop.write("a", 1, 3 * CHUNK, 64 * KiB, seed=9)
    before = shop.volume_bytes("a", "db")
    assert before[0][:CHUNK] == bytes(CHUNK)
    cp = ok(shop, shop.svc.protect("shop")).result["checkpoint"]["id"]
    shop.destroy("a")  # the disaster: servers, volumes, networks gone

    run = ok(shop, shop.svc.failover("shop", target="b"))
    assert run.result["verified"] is True and run.result["checkpoint_id"] == cp
    assert isinstance(run.result["rto_seconds"], float) and run.result["rto_seconds"] > 0
    # every recovered resource is what the recovery asked for, attribute by attribute
    created = [r for r in shop.svc.db.list_created(run.id) if not r.removed]
    assert run.result["fidelity"] == {"checked": len(created), "ok": True, "differences": []}
    assert run.result["volumes_verified"] == 2
    verifies = {k: v for k, v in run.result.items() if k.startswith("verify:")}
    assert len(verifies) == 2 and all(v["verified"] for v in verifies.values())
    # independently of VerifyVolume: the recovered volumes hold the checkpoint's bytes
    assert shop.volume_bytes("b", "db") == before
    assert shop.http("b", "web")["ok"] is True

    # boot order: each group healthy before the next one is created
    t = step_times(shop, run.id)
    db_healthy = t["check-health:db:http:5432"][1]
    app_healthy = t["check-health:app:http:8080"][1]
    assert t["create-server:db"][1] <= db_healthy <= t["create-server:app"][0]
    assert t["create-server:app"][1] <= app_healthy <= t["create-server:web"][0]
    checks = sorted((v["at"], v["server"]) for k, v in run.result.items() if k.startswith("check:"))
    assert [s for _, s in checks] == ["db", "app", "web"]
    assert t["create-floating_ip:web-fip"][0] >= t["check-health:web:http:8000"][1]
    assert [f.name for f in shop.driver("b").list_resources(K.FLOATING_IP)] == ["web-fip"]
    # the roles are reversed: the workload runs at b and is protected towards a
    w = shop.svc.get_workload("shop")
    assert w.site == "b" and w.targets == ("a",)

    # reprotect: a's cloud comes back empty, its repository survived; only the
    # difference since the recovery is read and sent
    shop.rebuild("a")
    shop.write("b", 1, 5 * CHUNK, 4 * KiB, seed=5)
    shop.write("b", 1, 30 * CHUNK, 4 * KiB, seed=6)
    expected = shop.http("b", "db", "/volumes")["volumes"]
    rp = ok(shop, shop.svc.reprotect("shop"))
    assert rp.kind is RunKind.REPROTECT
    assert rp.result["checkpoint"]["modes"] == ["cbt"]  # from the verification snapshots
    assert rp.result["checkpoint"]["bytes_read"] == 2 * CHUNK
    assert rp.result["replication:a"]["ok"] is True
    assert rp.result["replication:a"]["bytes_sent"] < 2 * CHUNK + 64 * KiB

    # failback: a planned migration back to a, with zero data loss
    fb = ok(shop, shop.svc.failback("shop"))
    assert fb.kind is RunKind.FAILBACK and fb.result["verified"] is True
    assert fb.result["fidelity"]["ok"] is True and fb.result["fidelity"]["differences"] == []
    assert fb.result["target"] == "a" and fb.result["data_loss_window_seconds"] == 0
    assert shop.http("a", "db", "/volumes")["volumes"] == expected
    w = shop.svc.get_workload("shop")
    assert w.site == "a" and w.targets == ("b",)
    for name in ("db", "app", "web"):
        assert shop.server("b", name).attrs["status"] == "SHUTOFF"  # fenced at b


def test_migrate_loses_no_data(shop: Any) -> None:
    ok(shop, shop.svc.protect("shop"))
    shop.write("a", 1, 7 * CHUNK, 12 * KiB, seed=42)  # right before the migration
    expected = shop.http("a", "db", "/volumes")["volumes"]
    run = ok(shop, shop.svc.migrate("shop", target="b"))
    assert run.result["verified"] is True
    assert shop.http("b", "db", "/volumes")["volumes"] == expected
    # zero loss: every server was fenced before the final snapshots were taken
    t = step_times(shop, run.id)
    fenced = max(v[1] for k, v in t.items() if k.startswith("fence-server:"))
    assert fenced <= min(v[0] for k, v in t.items() if k.startswith("final-snapshot-volume:"))
    assert run.result["data_loss_window_seconds"] == 0
    for name in ("db", "app", "web"):
        assert shop.server("a", name).attrs["status"] == "SHUTOFF"
    assert shop.svc.get_workload("shop").site == "b"
    final = run.result["checkpoint_id"]
    assert sorted(shop.svc.db.checkpoint_sites(final)) == ["a", "b"]


# --------------------------------------------------------------------------------------
# the worst case: primary site and the state database lost
# --------------------------------------------------------------------------------------


def test_failover_with_the_primary_and_the_state_database_lost(
    shop: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop.write("a", 1, 2 * CHUNK, 8 * KiB, seed=77)
    expected = shop.http("a", "db", "/volumes")["volumes"]
    cp = ok(shop, shop.svc.protect("shop")).result["checkpoint"]["id"]
    shop.svc.close()
    destroy_site(shop.site_path("a"))
    shutil.rmtree(tmp_path / "home")  # state.db and engine.db are gone too

    home = tmp_path / "new-home"
    monkeypatch.setenv("SEAWALL_HOME", str(home))
    svc = Service(home)
    shop.svc = svc  # the fixture closes this one
    assert svc.list_sites() == [] and svc.list_checkpoints() == []
    svc.add_site("b", "sim", {"path": str(shop.site_path("b"))}, str(tmp_path / "repos" / "b"))
    svc.add_site("a", "sim", {"path": str(shop.site_path("a"))})  # an empty cloud now
    svc.create_workload("shop", "a", Selector.parse("tag:app=shop"), "gold", ["b"])
    found = svc.catalogue("b", "shop")
    assert [c.id for c in found] == [cp]
    assert load(Checkpoint, svc.repository("b").load_manifest(cp).body) == found[0]

    # the recovery plan comes back from b's repository too: boot groups and checks
    plan = svc.recovery_plan(svc.get_workload("shop"), "b", found[0].graph)
    assert [g.name for g in plan.boot_groups] == ["data", "app", "web"]
    run = ok(shop, svc.failover("shop", target="b"))
    assert run.result["verified"] is True and run.result["checkpoint_id"] == cp
    assert "check-health:web:http:8000" in step_times(shop, run.id)
    assert shop.http("b", "db", "/volumes")["volumes"] == expected


# --------------------------------------------------------------------------------------
# on the shared world: drills, cancel, a migration that fails
# --------------------------------------------------------------------------------------


class Spy:
    """Records what a driver is asked to create (the drill deletes it all afterwards)."""

    def __init__(self, driver: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.created: list[tuple[ResourceSpec, Any]] = []
        original = driver.create

        def create(spec: ResourceSpec) -> Any:
            r = original(spec)
            self.created.append((spec, r))
            return r

        monkeypatch.setattr(driver, "create", create)


def test_drill_is_isolated_verified_and_leaves_nothing(
    protected: Any, baseline: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = protected
    # a drill into the production site itself, with a plan that maps onto its network
    shop.svc.set_plan(shop.plan("a", mappings={"network": {"net": "net"}}))
    production = shop.inventory("a")
    files = shop.files("a")
    health = {h: shop.http("a", h) for h in ("db", "app", "web")}
    spy = Spy(shop.driver("a"), monkeypatch)

    run = ok(shop, shop.svc.drill("shop", target="a", checkpoint_id=baseline))
    assert run.result["verified"] is True and run.result["residue"] == 0
    assert run.result["fidelity"]["ok"] is True, run.result["fidelity"]
    assert run.result["fidelity"]["checked"] > 0  # the bubble was compared before clean-up
    assert isinstance(run.result["rto_seconds"], float)
    assert run.result["cleanup"]["left"] == []

    # nothing left: every resource and every volume/snapshot/image file as before
    assert shop.inventory("a") == production
    assert shop.files("a") == files
    assert {h: shop.http("a", h) for h in ("db", "app", "web")} == health
    # the bubble: its own isolated network, nothing attached to production's
    created = {(spec.kind, r.id): (spec, r) for spec, r in spy.created}
    nets = {r.id for (kind, _), (_, r) in created.items() if kind is K.NETWORK}
    assert len(nets) == 1 and not nets & {rid for (_, rid) in production}
    for (kind, _), (spec, r) in created.items():
        assert r.name.startswith("drill-"), r.name
        assert spec.tags["seawall:run"] == run.id and "app" not in spec.tags
        if kind is K.NETWORK:
            assert r.attrs["isolated"] is True and r.attrs["external"] is False
        if kind in (K.PORT, K.SUBNET):
            assert set(spec.refs["network"]) <= nets
        if kind is K.ROUTER:
            assert r.attrs["external_gateway"] is False
        assert kind is not K.FLOATING_IP
    assert len([1 for (kind, _) in created if kind is K.SERVER]) == 3


def test_drill_whose_verification_fails_is_reported_and_still_cleaned_up(
    protected: Any,
) -> None:
    shop = protected
    checks = shop.plan("b")["health_checks"]
    checks.append({"server": "web", "kind": "tcp", "port": 9, "timeout_seconds": 1})
    shop.svc.set_plan(shop.plan("b", health_checks=checks))
    try:
        run = shop.svc.drill("shop", target="b")
    finally:
        shop.svc.set_plan(shop.plan("b"))
    assert run.state is RunState.PARTIALLY_FAILED, shop.explain(run)
    assert run.result["verified"] is False
    assert run.result["residue"] == 0  # cleaned up all the same (checked by the fixture)
    assert "check-health:web:tcp:9" in run.error
    failed = run.result["check:check-health:web:tcp:9"]
    assert failed["ok"] is False and "tcp" in failed["why"]
    assert run.result["check:check-health:web:http:8000"]["ok"] is True
    events = shop.svc.db.list_events(workload="shop")
    assert any(e.kind == "run-partially-failed" and e.run_id == run.id for e in events)


def test_run_cancel_during_a_failover_reverts_everything(protected: Any, tmp_path: Path) -> None:
    shop = protected
    # a script after the first boot group holds the run until the test lets it go, so
    # the cancel lands mid-run whatever the machine's speed
    gate = tmp_path / "gate"
    hold = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.05)"
    script = {"stage": "after:data", "command": [sys.executable, "-c", hold, str(gate)]}
    shop.svc.set_plan(shop.plan("b", scripts=[script]))
    result: dict[str, Any] = {}
    started = {r.id for r in shop.svc.list_runs("shop")}
    thread = threading.Thread(
        target=lambda: result.update(run=shop.svc.failover("shop", target="b")), daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + 120
        run_id = ""
        while time.monotonic() < deadline:
            new = [r for r in shop.svc.list_runs("shop") if r.id not in started]
            if new:
                run_id = new[0].id
                running = {s.name for s in shop.svc.steps(run_id) if s.state.value == "running"}
                if "run-script:0" in running:
                    break
            time.sleep(0.05)
        else:
            raise AssertionError("the failover never reached its script")
        cancel = subprocess.run(
            [sys.executable, "-m", "seawall", "--json", "run", "cancel", run_id],
            env=shop.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert cancel.returncode == 0, cancel.stderr
        assert '"cancelling"' in cancel.stdout
    finally:
        gate.touch()
        thread.join(120)
        shop.svc.set_plan(shop.plan("b"))
    assert not thread.is_alive()
    run = result["run"]
    assert run.state is RunState.CANCELLED, shop.explain(run)
    assert all(r.removed for r in shop.svc.db.list_created(run.id))
    steps = {s.name: s.state.value for s in shop.svc.steps(run.id)}
    assert steps["create-server:db"] == "reverted"
    # the next step stopped as it started: the app server was never created
    assert steps.get("create-server:app") in (None, "failed", "reverted"), steps
    created = [r.kind for r in shop.svc.db.list_created(run.id)]
    assert created.count("server") == 1
    assert "cancelled" in run.error
    # nothing left behind at b, the workload still at a: checked by the fixture


@pytest.fixture(scope="module")
def failed_migration(shop_module: Any, baseline: str) -> dict[str, Any]:
    """A migration whose recovery fails (a health check nobody answers), with a
    retention of last=1 that would forget every older checkpoint if it ran too early."""
    shop = shop_module
    with pytest.MonkeyPatch.context() as mp:
        for k in ("SEAWALL_HOME", "SEAWALL_PASSPHRASE", "SEAWALL_KDF", "SEAWALL_BACKOFF_START"):
            mp.setenv(k, shop.env[k])
        install_runtime(shop.svc)
        w = shop.svc.get_workload("shop")
        shop.svc.create_policy({"name": "lean", "retention": {"last": 1}})
        shop.svc.db.update_workload(replace(w, policy="lean"))
        bad = shop.plan("b")
        bad["health_checks"][0] = {"server": "db", "kind": "tcp", "port": 1, "timeout_seconds": 1}
        shop.svc.set_plan(bad)
        before = {
            "checkpoints": {s: [c.id for c in shop.svc.catalogue(s, "shop")] for s in "ab"},
            "files": shop.files("a"),
            "inventory": {s: shop.inventory(s) for s in "ab"},
        }
        try:
            run = shop.svc.migrate("shop", target="b")
        finally:
            shop.svc.set_plan(shop.plan("b"))
            shop.svc.db.update_workload(w)
        for name in ("db", "app", "web"):  # the primary is being powered back on
            shop.wait_healthy("a", name)
        return {"run": run, "before": before}


def test_a_migration_that_fails_reverts_and_keeps_every_checkpoint(
    shop_module: Any, failed_migration: dict[str, Any], baseline: str
) -> None:
    shop, run, before = shop_module, failed_migration["run"], failed_migration["before"]
    assert run.state is RunState.REVERTED, shop.explain(run)
    assert "check-health:db:tcp:1" in run.error
    assert {s: shop.inventory(s) for s in "ab"} == before["inventory"]
    for name in ("db", "app", "web"):  # the primary was powered back on
        assert shop.server("a", name).attrs["status"] == "ACTIVE"
    # retention (last=1) never ran: the checkpoints and change bases are all still there
    assert [c.id for c in shop.svc.catalogue("a", "shop")] == before["checkpoints"]["a"]
    assert baseline in [c.id for c in shop.svc.catalogue("b", "shop")]
    assert shop.files("a") == before["files"]
    assert shop.svc.get_workload("shop").site == "a"


def test_a_reverted_migration_leaves_no_checkpoint_at_the_target(
    shop_module: Any, failed_migration: dict[str, Any]
) -> None:
    before = failed_migration["before"]["checkpoints"]
    after = {s: [c.id for c in shop_module.svc.catalogue(s, "shop")] for s in "ab"}
    assert after == before


# --------------------------------------------------------------------------------------
# fidelity: every recovered resource is compared with what the recovery asked for
# --------------------------------------------------------------------------------------

#: run as a plan's final script (after every copy is created, before the fidelity check):
#: someone edits the recovered copies on the target site, as another actor on the cloud
#: could, by writing the sim site's own store: a rule that opens ssh to the world is added
#: to group ``sg`` and server ``web`` gets a metadata key
_TAMPER = """
import json, sqlite3, sys
con = sqlite3.connect(sys.argv[1])
for kind, name, change in (
    ("security_group", "sg", lambda a: a["rules"].append(
        {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
         "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "0.0.0.0/0"})),
    ("server", "web", lambda a: a["metadata"].update(role="tampered")),
):
    (attrs,) = con.execute(
        "SELECT attrs FROM resources WHERE kind = ? AND name = ?", (kind, name)).fetchone()
    attrs = json.loads(attrs)
    change(attrs)
    con.execute("UPDATE resources SET attrs = ? WHERE kind = ? AND name = ?",
                (json.dumps(attrs), kind, name))
con.commit()
"""


def test_a_recovered_resource_that_differs_is_named_and_the_run_is_not_verified(
    shop: Any,
) -> None:
    ok(shop, shop.svc.protect("shop"))
    site_db = str(shop.site_path("b") / "site.db")
    tamper = {"stage": "final", "command": [sys.executable, "-c", _TAMPER, site_db]}
    shop.svc.set_plan(shop.plan("b", scripts=[tamper]))
    shop.destroy("a")

    run = shop.svc.failover("shop", target="b")
    # the workload is up at b (the roles reverse), but the recovery is not verified
    assert run.state is RunState.SUCCEEDED, shop.explain(run)
    assert run.result["verified"] is False
    assert run.result["volumes_verified"] == 2  # the bytes are right; the rest is not
    fidelity = run.result["fidelity"]
    assert fidelity["ok"] is False
    assert fidelity["checked"] == len(shop.svc.db.list_created(run.id))
    named = {(d["resource"], d["attribute"]): d for d in fidelity["differences"]}
    assert set(named) == {
        ("security_group sg", "rules[ingress IPv4 tcp 22 from 0.0.0.0/0]"),
        ("server web", "metadata.role"),
    }
    rule = named[("security_group sg", "rules[ingress IPv4 tcp 22 from 0.0.0.0/0]")]
    assert rule["expected"] is None and rule["actual"]["remote_ip_prefix"] == "0.0.0.0/0"
    role = named[("server web", "metadata.role")]
    assert role["expected"] is None and role["actual"] == "tampered"
    (event,) = [e for e in shop.svc.list_events("shop") if e.kind == "fidelity-differences"]
    assert event.severity == "warning" and event.run_id == run.id
    assert (
        "security_group sg.rules[" in event.message and "server web.metadata.role" in event.message
    )
    assert shop.svc.get_workload("shop").site == "b"


def test_a_failover_of_servers_without_volumes_is_verified(shop: Any) -> None:
    """Nothing to compare byte for byte is not a failed verification: ``verified`` is
    true when every verification that applied passed, and the counts say what did."""
    d = shop.driver("a")

    def mk(kind: Any, name: str, attrs: Any = None, refs: Any = None, tags: Any = None) -> str:
        spec = ResourceSpec(
            kind, name, f"t/{kind.value}/{name}", attrs or {}, refs or {}, tags or {}
        )
        return str(d.create(spec).id)

    net = mk(K.NETWORK, "solo-net")
    subnet = mk(K.SUBNET, "solo-subnet", {"cidr": "10.40.0.0/24"}, {"network": (net,)})
    port = mk(K.PORT, "solo-port", {}, {"network": (net,), "subnet": (subnet,)})
    flavor = mk(K.FLAVOR, "tiny", {"vcpus": 1, "ram_mb": 256})
    mk(
        K.SERVER,
        "solo",
        {"metadata": {"role": "cache"}},
        {"flavor": (flavor,), "ports": (port,)},
        {"app": "solo"},
    )
    shop.svc.create_workload("solo", "a", Selector.parse("tag:app=solo"), "bronze", ["b"])
    ok(shop, shop.svc.protect("solo"))

    run = ok(shop, shop.svc.failover("solo", target="b"))
    assert run.result["verified"] is True
    assert run.result["volumes_verified"] == 0
    assert run.result["fidelity"]["ok"] is True and run.result["fidelity"]["checked"] == 5
