"""The sim driver's own behaviour: real processes, real isolation, a real change journal.

Every test runs on a site from the ``sim`` fixture, whose finalizer destroys the site and
kills its processes, so nothing outlives the test even when an assertion fails.
"""

from __future__ import annotations

import gc
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seawall.clouds import Extent, ResourceSpec
from seawall.clouds.sim import (
    SimDriver,
    VolumeWriter,
    destroy_site,
    journal_path_for,
    merge_extents,
    open_sim,
)
from seawall.clouds.sim.app import pattern
from seawall.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    SiteUnavailable,
    VerificationFailed,
)
from seawall.model import ResourceKind, ResourceRef, Site

from .conftest import SimHarness, health_status, http_json, wait_healthy

K = ResourceKind


def process_state(pid: int) -> str | None:
    """The kernel's one-letter state of ``pid`` (R, S, T, Z...), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat[stat.rindex(")") + 2]


def gone(pid: int) -> bool:
    return process_state(pid) in (None, "Z", "X")


# -- processes -------------------------------------------------------------------------------


def test_boot_order_is_real(sim: SimHarness) -> None:
    """web refuses to start until app and db answer; health follows its peers."""
    front, _ = sim.network("front", "10.1.0.0/24")
    data = sim.make(K.VOLUME, "db-data", {"size": 1 << 16})
    db = sim.server("db", networks=(front,), volumes=(data,), command=sim.app_command("db"))
    app = sim.server("app", networks=(front,), command=sim.app_command("app", "db"))
    wait_healthy(db)
    wait_healthy(app)
    sim.driver.power_off(app.id)
    web = sim.server("web", networks=(front,), command=sim.app_command("web", "app,db", wait=1))
    assert sim.driver.wait_for_status(web.ref, "ERROR", 15).attrs["status"] == "ERROR"
    log = sim.sim.log_path(web.id).read_text()
    assert "app did not answer /health" in log

    sim.driver.power_on(app.id)
    wait_healthy(app)
    sim.driver.power_on(web.id)
    health = wait_healthy(web)
    assert health["ok"] is True and health["role"] == "web" and health["hostname"] == "web"

    sim.driver.power_off(db.id)
    assert health_status(app) == 503  # app requires db
    assert health_status(web) == 503  # and web requires both


def test_peers_follow_networks(sim: SimHarness) -> None:
    """Servers see only servers that share a network: a drill's bubble is really isolated."""
    net_a, _ = sim.network("a", "10.1.0.0/24")
    net_b, _ = sim.network("b", "10.2.0.0/24")
    a1 = sim.server("a1", networks=(net_a,), command=sim.app_command("db"))
    sim.server("a2", networks=(net_a,), command=sim.app_command("db"))
    b1 = sim.server("b1", networks=(net_b,), command=sim.app_command("db"))
    bridge = sim.server("bridge", networks=(net_a, net_b), command=sim.app_command("app"))
    assert wait_healthy(bridge)["peers"] == ["a1", "a2", "b1"]
    assert wait_healthy(b1)["peers"] == []  # its view at boot: nothing else on b yet
    sim.driver.power_off(a1.id)
    sim.driver.power_on(a1.id)  # a reboot refreshes the view
    assert wait_healthy(a1)["peers"] == ["a2", "bridge"]

    lonely = sim.server("lonely", networks=(net_b,), command=sim.app_command("web", "a1"))
    sim.driver.wait_for_status(lonely.ref, "ERROR", 10)
    assert "not on any of my networks" in sim.sim.log_path(lonely.id).read_text()


def test_environment_lists_volumes_in_attach_order(sim: SimHarness) -> None:
    net, _ = sim.network()
    v1 = sim.make(K.VOLUME, "v1", {"size": 8192})
    v2 = sim.make(K.VOLUME, "v2", {"size": 4096})
    sim.driver.write_volume(v2.id, 0, b"second")
    server = sim.server("s", networks=(net,), volumes=(v2, v1), command=sim.app_command("db"))
    expected = [
        hashlib.sha256(sim.sim.volume_path(v).read_bytes()).hexdigest() for v in (v2.id, v1.id)
    ]
    assert wait_healthy(server)["volumes"] == expected
    url = f"http://{server.attrs['access_address']}:8080/volumes"
    assert http_json(url)["volumes"] == expected


#: what seawall's own environment may hold that no workload may ever see
SECRETS = {
    "SEAWALL_PASSPHRASE": "hunter2",
    "SEAWALL_PASSPHRASE_FILE": "/etc/seawall/pp",
    "SEAWALL_TOKEN": "tok-secret",
    "OS_PASSWORD": "os-secret",
    "OS_AUTH_TOKEN": "gAAAA-secret",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "SOME_OPERATOR_VARIABLE": "x",
}


def environ_of(pid: int) -> dict[str, str]:
    """A live process's environment as the kernel holds it (``/proc/<pid>/environ``)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(e.split("=", 1) for e in raw.decode().split("\0") if "=" in e)


def test_a_server_process_gets_nothing_of_seawalls_environment(
    sim: SimHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    net, _ = sim.network()
    server = sim.server("s", networks=(net,), command=sim.app_command("db"))
    wait_healthy(server)
    pid = sim.sim.server_pid(server.id)
    assert pid is not None
    env = environ_of(pid)
    assert not set(SECRETS) & set(env), env
    assert not any(k.startswith(("OS_", "AWS_")) for k in env)
    assert set(env) <= {
        "PATH",
        "LANG",
        "LC_ALL",
        "TZ",
        "HOME",
        "PYTHONPATH",
        "PYTHONUNBUFFERED",
    } | {k for k in env if k.startswith("SEAWALL_") and not k.startswith("SEAWALL_PASSPHRASE")}
    assert env["SEAWALL_SERVER_ID"] == server.id
    assert env["HOME"] == str(sim.sim.path)


def test_writes_through_the_server_are_tracked(sim: SimHarness) -> None:
    net, _ = sim.network()
    vol = sim.make(K.VOLUME, "data", {"size": 1 << 16})
    db = sim.server("db", networks=(net,), volumes=(vol,), command=sim.app_command("db"))
    wait_healthy(db)
    d = sim.driver
    s1 = d.create_snapshot(vol.id, "s1")
    url = f"http://{db.attrs['access_address']}:8080/write"
    reply = http_json(url, {"volume": 0, "offset": 1000, "length": 3000, "seed": 7})
    s2 = d.create_snapshot(vol.id, "s2")
    assert d.changed_extents(s2.id, s1.id) == [Extent(1000, 3000)]
    assert d.read_snapshot(s2.id, 1000, 3000) == pattern(7, 3000)
    assert d.read_snapshot(s1.id, 1000, 3000) == bytes(3000)
    assert reply["sha256"] == hashlib.sha256(d.read_snapshot(s2.id, 0, 1 << 16)).hexdigest()


def test_fsfreeze_stops_and_thaw_resumes(sim: SimHarness) -> None:
    net, _ = sim.network()
    vol = sim.make(K.VOLUME, "data", {"size": 4096})
    db = sim.server(
        "db", networks=(net,), volumes=(vol,), command=sim.app_command("db"), guest_agent=True
    )
    wait_healthy(db)
    pid = sim.sim.server_pid(db.id)
    assert pid is not None
    sim.driver.guest_agent(db.id, "fsfreeze-freeze")
    assert process_state(pid) == "T"
    assert health_status(db, timeout=0.5) is None
    snap = sim.driver.create_snapshot(vol.id, "frozen")  # the journal is not held
    assert snap.size == 4096
    sim.driver.guest_agent(db.id, "fsfreeze-thaw")
    assert health_status(db) == 200
    with pytest.raises(InvalidInput):
        sim.driver.guest_agent(db.id, "reboot")


def test_a_server_outlives_the_driver_object(sim: SimHarness) -> None:
    driver = open_sim(sim.site)
    net, _ = sim.network()
    spec = ResourceSpec(
        K.SERVER,
        "long",
        "k-long",
        {"command": sim.app_command("db"), "listen_port": 8080},
        {
            "flavor": (sim.make(K.FLAVOR, "f").id,),
            "ports": (sim.make(K.PORT, "p", refs={"network": (net.id,)}).id,),
        },
    )
    server = driver.create(spec)
    pid = driver.server_pid(server.id)
    assert pid is not None
    del driver
    gc.collect()
    assert not gone(pid)
    wait_healthy(server)
    again = open_sim(sim.site)
    assert again.get(server.ref).attrs["status"] == "ACTIVE"  # type: ignore[union-attr]
    assert again.server_pid(server.id) == pid


def test_destroy_site_kills_every_process(sim: SimHarness) -> None:
    net, _ = sim.network()
    servers = [
        sim.server(f"s{i}", networks=(net,), command=sim.app_command("db")) for i in range(2)
    ]
    for s in servers:
        wait_healthy(s)
    pids = [sim.sim.server_pid(s.id) for s in servers]
    destroy_site(sim.path)
    assert all(pid is not None and gone(pid) for pid in pids)
    assert not sim.path.exists()
    with pytest.raises(SiteUnavailable, match="gone"):
        sim.driver.ping()
    with pytest.raises(SiteUnavailable):
        sim.driver.list_resources()


def test_a_crashed_process_is_error_until_powered_on(sim: SimHarness) -> None:
    net, _ = sim.network()
    server = sim.server("crashy", networks=(net,), command=sim.app_command("db"))
    wait_healthy(server)
    pid = sim.sim.server_pid(server.id)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    sim.driver.wait_for_status(server.ref, "ERROR", 10)
    sim.driver.power_on(server.id)
    sim.driver.wait_for_status(server.ref, "ACTIVE", 10)
    wait_healthy(server)


def test_power_off_kills_a_process_that_ignores_sigterm(sim: SimHarness) -> None:
    sim.sim.stop_grace = 0.3
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    server = sim.make(
        K.SERVER,
        "stubborn",
        {"command": ["python", "-c", stubborn]},
        {"flavor": (sim.make(K.FLAVOR, "f").id,)},
    )
    pid = sim.sim.server_pid(server.id)
    assert pid is not None
    time.sleep(0.2)  # let it install its handler
    started = time.monotonic()
    sim.driver.power_off(server.id)
    assert time.monotonic() - started < 3
    assert gone(pid)
    assert sim.driver.get(server.ref).attrs["status"] == "SHUTOFF"  # type: ignore[union-attr]


def test_a_command_that_cannot_start_is_error(sim: SimHarness) -> None:
    server = sim.make(
        K.SERVER,
        "broken",
        {"command": ["/no/such/program"]},
        {"flavor": (sim.make(K.FLAVOR, "f").id,)},
    )
    assert server.attrs["status"] == "ERROR"
    assert "cannot start" in sim.sim.log_path(server.id).read_text()


def test_loopback_addresses_are_unique_across_sites(sim: SimHarness, sim_b: SimHarness) -> None:
    addresses = []
    for h in (sim, sim_b):
        for i in range(5):
            s = h.make(K.SERVER, f"s{i}", refs={"flavor": (h.make(K.FLAVOR, "f").id,)})
            addresses.append(s.attrs["access_address"])
    assert len(set(addresses)) == len(addresses)
    assert all(a.startswith("127.") and not a.startswith("127.0.0.") for a in addresses)


def test_stop_all_powers_everything_off(sim: SimHarness) -> None:
    net, _ = sim.network()
    servers = [
        sim.server(f"s{i}", networks=(net,), command=sim.app_command("db")) for i in range(2)
    ]
    pids = [sim.sim.server_pid(s.id) for s in servers]
    sim.sim.stop_all()
    assert all(p is not None and gone(p) for p in pids)
    assert {r.attrs["status"] for r in sim.driver.list_resources(K.SERVER)} == {"SHUTOFF"}


# -- change journal ----------------------------------------------------------------------------


def test_torn_journal_tail_is_ignored_and_repaired(sim: SimHarness) -> None:
    d = sim.driver
    vol = sim.make(K.VOLUME, "v", {"size": 1 << 16})
    d.write_volume(vol.id, 0, b"x" * 10)
    s1 = d.create_snapshot(vol.id, "s1")
    journal = journal_path_for(sim.sim.volume_path(vol.id))
    with open(journal, "ab") as f:
        f.write(b"CBT1\x00\x01")  # a crash in the middle of a record
    d.write_volume(vol.id, 100, b"y" * 10)
    with open(journal, "ab") as f:
        f.write(b"\xff" * 24)  # a whole record that never made it to disk correctly
    s2 = d.create_snapshot(vol.id, "s2")
    assert d.changed_extents(s2.id, s1.id) == [Extent(100, 10)]
    d.write_volume(vol.id, 200, b"z" * 10)
    s3 = d.create_snapshot(vol.id, "s3")
    assert d.changed_extents(s3.id, s2.id) == [Extent(200, 10)]
    assert d.changed_extents(s3.id, s1.id) == [Extent(100, 10), Extent(200, 10)]


def test_damaged_journal_means_read_in_full(sim: SimHarness) -> None:
    d = sim.driver
    vol = sim.make(K.VOLUME, "v", {"size": 1 << 16})
    s1 = d.create_snapshot(vol.id, "s1")
    for i in range(3):
        d.write_volume(vol.id, i * 100, b"w")
    s2 = d.create_snapshot(vol.id, "s2")
    journal = journal_path_for(sim.sim.volume_path(vol.id))
    raw = bytearray(journal.read_bytes())
    raw[30] ^= 0xFF  # damage the second of three records
    journal.write_bytes(bytes(raw))
    with pytest.raises(NotFound, match="in full"):
        d.changed_extents(s2.id, s1.id)
    assert d.changed_extents(s2.id, None)  # the full path still works


def test_volume_writer_is_what_servers_use(sim: SimHarness) -> None:
    vol = sim.make(K.VOLUME, "v", {"size": 8192})
    s1 = sim.driver.create_snapshot(vol.id, "s1")
    with VolumeWriter(sim.sim.volume_path(vol.id)) as w:
        w.write(10, b"abc")
        w.write(11, b"bcdef")
        with pytest.raises(InvalidInput):
            w.write(8190, b"abc")
    s2 = sim.driver.create_snapshot(vol.id, "s2")
    assert sim.driver.changed_extents(s2.id, s1.id) == [Extent(10, 6)]
    with pytest.raises(NotFound):
        VolumeWriter(sim.path / "volumes" / "missing.img")


def test_merge_extents() -> None:
    assert merge_extents([(10, 5), (0, 5), (5, 5), (30, 0), (40, 10), (45, 2)]) == [
        Extent(0, 15),
        Extent(40, 10),
    ]
    assert merge_extents([]) == []


def test_snapshot_must_be_of_the_same_volume_and_older(sim: SimHarness) -> None:
    d = sim.driver
    v1 = sim.make(K.VOLUME, "v1", {"size": 4096})
    v2 = sim.make(K.VOLUME, "v2", {"size": 4096})
    a = d.create_snapshot(v1.id, "a")
    d.write_volume(v1.id, 0, b"1")
    b = d.create_snapshot(v1.id, "b")
    other = d.create_snapshot(v2.id, "a")
    with pytest.raises(InvalidInput):
        d.changed_extents(b.id, other.id)
    with pytest.raises(InvalidInput):
        d.changed_extents(a.id, b.id)


# -- resources -----------------------------------------------------------------------------------


def test_delete_refuses_what_is_still_referenced(sim: SimHarness) -> None:
    net, sub = sim.network()
    port = sim.make(K.PORT, "p", refs={"network": (net.id,)})
    fip = sim.make(K.FLOATING_IP, "fip", refs={"port": (port.id,)})
    assert fip.attrs["address"].startswith("203.0.113.")
    with pytest.raises(Conflict, match="still used by"):
        sim.driver.delete(net.ref)
    sim.driver.delete(port.ref)  # a floating IP does not block: it is disassociated
    after = sim.driver.get(fip.ref)
    assert after is not None and "port" not in after.refs
    sim.driver.delete(sub.ref)
    sim.driver.delete(net.ref)


def test_deleting_a_volume_removes_its_files_and_snapshots(sim: SimHarness) -> None:
    d = sim.driver
    vol = sim.make(K.VOLUME, "v", {"size": 4096})
    d.write_volume(vol.id, 0, b"data")
    snap = d.create_snapshot(vol.id, "s")
    server = sim.make(
        K.SERVER, "user", refs={"flavor": (sim.make(K.FLAVOR, "f").id,), "volumes": (vol.id,)}
    )
    assert d.get(vol.ref).attrs["status"] == "in-use"  # type: ignore[union-attr]
    with pytest.raises(Conflict):
        d.delete(vol.ref)
    with pytest.raises(Conflict, match="already attached"):
        sim.make(
            K.SERVER, "thief", refs={"flavor": (sim.make(K.FLAVOR, "f").id,), "volumes": (vol.id,)}
        )
    d.delete(server.ref)
    d.delete(vol.ref)
    assert list((sim.path / "volumes").iterdir()) == []
    assert list((sim.path / "snapshots").iterdir()) == []
    with pytest.raises(NotFound):
        d.read_snapshot(snap.id, 0, 1)


def test_images_upload_once_and_are_checked(sim: SimHarness) -> None:
    d = sim.driver
    good = hashlib.md5(b"payload", usedforsecurity=False).hexdigest()
    image = sim.make(K.IMAGE, "img", {"checksum": good})
    with pytest.raises(Conflict, match="no data yet"):
        d.read_image(image.id)
    with pytest.raises(Conflict, match="no data yet"):
        sim.make(K.VOLUME, "early", {"size": 4096}, {"image": (image.id,)})
    with pytest.raises(VerificationFailed):
        d.write_image(image.id, [b"tampered"])
    d.write_image(image.id, [b"pay", b"load"])
    with pytest.raises(Conflict):
        d.write_image(image.id, [b"other"])
    assert b"".join(d.read_image(image.id)) == b"payload"


def test_open_sim_needs_a_path_and_creates_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="path"):
        open_sim(Site("x", "sim"))
    path = tmp_path / "deep" / "site"
    driver = open_sim(Site("x", "sim", {"path": str(path)}))
    try:
        assert (path / "site.db").is_file()
        driver.ping()
        assert driver.list_resources() == []
    finally:
        destroy_site(path)


def test_a_site_opened_while_down_comes_up_later(tmp_path: Path) -> None:
    path = tmp_path / "site"
    path.mkdir()
    (path / "DOWN").touch()
    driver = open_sim(Site("x", "sim", {"path": str(path)}))
    with pytest.raises(SiteUnavailable, match="down"):
        driver.ping()
    (path / "DOWN").unlink()
    driver.ping()
    assert driver.list_resources() == []


def test_malformed_quotas_are_named(sim: SimHarness) -> None:
    (sim.path / "quotas.json").write_text('{"cores": 4}')
    with pytest.raises(InvalidInput, match=r"quotas\.json"):
        sim.driver.quotas()


def test_unknown_ref_role_is_input_error(sim: SimHarness) -> None:
    with pytest.raises(InvalidInput, match="unknown ref role"):
        sim.make(K.NETWORK, "n", refs={"router": ("x",)})
    with pytest.raises(InvalidInput, match="mtu"):
        sim.make(K.NETWORK, "n2", {"mtu": "big"})
    with pytest.raises(InvalidInput, match="size"):
        sim.make(K.VOLUME, "v", {"size": 0})


def test_find_or_create_is_atomic_across_processes(sim: SimHarness) -> None:
    """Several processes create the same key at once: one resource, one id for all."""
    script = (
        "import sys\n"
        "from seawall.clouds.sim import open_sim\n"
        "from seawall.clouds import ResourceSpec\n"
        "from seawall.model import Site, ResourceKind\n"
        "d = open_sim(Site('sim-a', 'sim', {'path': sys.argv[1]}))\n"
        "print(d.create(ResourceSpec(ResourceKind.NETWORK, 'shared', 'race')).id)\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(sim.path)], stdout=subprocess.PIPE)
        for _ in range(4)
    ]
    ids = {p.communicate(timeout=30)[0].strip() for p in procs}
    assert len(ids) == 1
    assert len(sim.driver.list_resources(K.NETWORK)) == 1


def test_clock_and_ids_are_injectable(tmp_path: Path) -> None:
    counter = iter(range(1000))
    driver = SimDriver(
        Site("x", "sim", {"path": str(tmp_path / "s")}),
        tmp_path / "s",
        clock=lambda: 1000.0,
        new_id=lambda: f"id-{next(counter)}",
    )
    net = driver.create(ResourceSpec(K.NETWORK, "n", "k"))
    vol = driver.create(ResourceSpec(K.VOLUME, "v", "kv", {"size": 512}))
    snap = driver.create_snapshot(vol.id, "s")
    assert (net.id, vol.id, snap.id, snap.created_at) == ("id-0", "id-1", "id-2", 1000.0)
    assert driver.get(ResourceRef(K.NETWORK, "id-0")) == net
