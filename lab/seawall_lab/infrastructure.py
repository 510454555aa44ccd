"""The lab's infrastructure per site: MariaDB, RabbitMQ, Ceph (mon, mgr, one OSD, RGW), OVN.

Each site runs its own copy of everything, on its own ports (:class:`LabSite`), out of its
own directories; nothing is started through systemd (there is none), and the Debian
packages' own services stay disabled. Why each unusual setting exists is said next to it;
the facts behind them (no device-mapper, no openvswitch kernel module) are in
``docs/lab.md``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from seawall_lab.layout import HOST, PASSWORD, LabSite
from seawall_lab.process import (
    clear_stale_socket,
    http_ok,
    once,
    output,
    port_open,
    sh,
    start,
    unix_socket_open,
    wait_for,
    write,
)

DATABASES = ("keystone", "glance", "placement", "nova_api", "nova_cell0", "nova", "neutron")


def start_mysql(site: LabSite) -> None:
    d = site.data / "mysql"
    if not (d / "mysql").exists():
        d.mkdir(parents=True, exist_ok=True)
        sh(site, "mariadb-install-db", "--no-defaults", f"--datadir={d}", "--user=root",
           "--auth-root-authentication-method=socket", log_name="mysql-install")  # fmt: skip
    sock = site.run / "mysql.sock"
    start(site, "mysql", [
        "mariadbd", "--no-defaults", f"--datadir={d}", "--user=root", f"--bind-address={HOST}",
        f"--port={site.ports['mysql']}", f"--socket={sock}",
        f"--pid-file={site.run / 'mysqld.pidfile'}", "--skip-name-resolve",
        "--max-connections=2000", "--innodb-buffer-pool-size=128M",
        "--innodb-flush-log-at-trx-commit=2", "--skip-log-bin",
        f"--log-error={site.logs / 'mysql.err'}",
    ])  # fmt: skip
    wait_for("mysql", lambda: port_open(site.ports["mysql"]), 90)
    sql = [
        f"CREATE USER IF NOT EXISTS 'seawall'@'{HOST}' IDENTIFIED BY '{PASSWORD}'",
        f"GRANT ALL ON *.* TO 'seawall'@'{HOST}'",
        *(f"CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8mb4" for db in DATABASES),
        "CREATE DATABASE IF NOT EXISTS cinder CHARACTER SET utf8mb4",
    ]
    sh(site, "mariadb", "-uroot", f"--socket={sock}", "-e", "; ".join(sql) + ";")


def _rabbit_env(site: LabSite) -> dict[str, str]:
    d = site.data / "rabbitmq"
    dist = "-kernel inet_dist_use_interface {127,0,0,1}"
    return {
        **site.env(),
        # Debian's rabbitmqctl wrapper switches to the rabbitmq user and its HOME; the
        # real script is called with HOME here so it finds the server's Erlang cookie.
        "HOME": str(d),
        "RABBITMQ_NODENAME": f"seawall{site.name}@localhost",
        "RABBITMQ_USE_LONGNAME": "false",
        "ERL_EPMD_PORT": str(site.ports["epmd"]),
        "ERL_EPMD_ADDRESS": HOST,
        "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
        "RABBITMQ_LOG_BASE": str(site.logs / "rabbitmq"),
        "RABBITMQ_CONFIG_FILE": str(site.etc / "rabbitmq" / "rabbitmq"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(site.etc / "rabbitmq" / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(site.run / "rabbitmq.pidfile"),
        "RABBITMQ_DIST_PORT": str(site.ports["rabbit_dist"]),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": dist,
        "RABBITMQ_CTL_ERL_ARGS": dist,
    }


def start_rabbit(site: LabSite) -> None:
    (site.data / "rabbitmq").mkdir(parents=True, exist_ok=True)
    (site.logs / "rabbitmq").mkdir(parents=True, exist_ok=True)
    write(
        site.etc / "rabbitmq" / "rabbitmq.conf",
        f"listeners.tcp.default = {HOST}:{site.ports['rabbit']}\nloopback_users = none\n",
    )
    write(site.etc / "rabbitmq" / "enabled_plugins", "[].\n")
    env = _rabbit_env(site)
    # epmd is started here (not by the first Erlang node) so that it has a pid to stop
    start(site, "epmd", ["epmd", "-port", str(site.ports["epmd"]), "-address", HOST], env)
    start(site, "rabbitmq", ["/usr/lib/rabbitmq/bin/rabbitmq-server"], env)
    wait_for("rabbitmq", lambda: port_open(site.ports["rabbit"]), 180)
    ctl = "/usr/lib/rabbitmq/bin/rabbitmqctl"
    with open(site.logs / "rabbitmq-setup.log", "ab") as out:
        add = subprocess.run([ctl, "-q", "add_user", "seawall", PASSWORD], env=env,
                             stdout=out, stderr=out)  # fmt: skip
        if add.returncode:
            subprocess.run([ctl, "-q", "change_password", "seawall", PASSWORD], env=env,
                           stdout=out, stderr=out, check=True)  # fmt: skip
        subprocess.run([ctl, "-q", "set_permissions", "-p", "/", "seawall", ".*", ".*", ".*"],
                       env=env, stdout=out, stderr=out, check=True)  # fmt: skip


def ceph_conf(site: LabSite, fsid: str) -> str:
    d, p = site.data / "ceph", site.ports
    return f"""[global]
fsid = {fsid}
mon host = [v2:{HOST}:{p["mon_v2"]},v1:{HOST}:{p["mon_v1"]}]
mon initial members = a
# OSDs bind their cluster network to 0.0.0.0 unless told otherwise
public addr = {HOST}
cluster addr = {HOST}
public network = 127.0.0.0/8
cluster network = 127.0.0.0/8
ms bind ipv6 = false
# one node, one OSD, no cephx
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
auth allow insecure global id reclaim = false
mon data avail warn = 5
run dir = {site.run / "ceph"}
admin socket = {site.run / "ceph"}/$cluster-$name.asok
log file = {site.logs / "ceph"}/$cluster-$name.log
keyring = {site.etc / "ceph"}/$cluster.$name.keyring
[mon]
mon data = {d}/mon/$id
mon cluster log file = {site.logs / "ceph"}/cluster.log
[mgr]
mgr data = {d}/mgr/$id
[osd]
osd data = {d}/osd/$id
osd objectstore = bluestore
# outside the OSD data dir: inside it, mkfs makes a 'block' symlink to itself
bluestore block path = {d}/osd-$id.block
bluestore block create = true
bluestore block size = {os.environ.get("SEAWALL_LAB_CEPH_GB", "20")}G
osd memory target = 939524096
osd max object name len = 256
osd max object namespace len = 64
[client.rgw.{site.name}]
# a daemon's mon client offers no connection mode that auth 'none' accepts: use crc
ms mon client mode = crc
ms client mode = crc
rgw frontends = beast endpoint={HOST}:{p["rgw"]}
rgw data = {d}/rgw
rgw dns name = {HOST}
rgw swift url = http://{HOST}:{p["rgw"]}
rgw swift auth entry = auth
"""


def start_ceph(site: LabSite) -> None:
    c, d = site.etc / "ceph", site.data / "ceph"
    for sub in (c, d / "mon" / "a", d / "mgr" / "x", d / "rgw", site.logs / "ceph",
                site.run / "ceph"):  # fmt: skip
        sub.mkdir(parents=True, exist_ok=True)
    conf = site.ceph_conf
    fsid = str(uuid.uuid4())
    if conf.exists():
        fsid = next(
            line.split("=", 1)[1].strip()
            for line in conf.read_text().splitlines()
            if line.startswith("fsid")
        )
    write(conf, ceph_conf(site, fsid))
    keyring = c / "ceph.client.admin.keyring"
    if not keyring.exists():
        sh(site, "ceph-authtool", "--create-keyring", keyring, "--gen-key", "-n", "client.admin")
    # os-brick's RBD connector hard-codes /etc/ceph/<cluster>.client.<user>.keyring and
    # cinder-backup fails without it; its content is unused because cephx is off.
    system_keyring = Path("/etc/ceph/ceph.client.admin.keyring")
    if not system_keyring.exists():
        system_keyring.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(keyring, system_keyring)
        system_keyring.chmod(0o600)
    p = site.ports
    if not (d / "mon" / "a" / "store.db").exists():
        sh(site, "monmaptool", "--create", "--fsid", fsid, "--addv", "a",
           f"[v2:{HOST}:{p['mon_v2']},v1:{HOST}:{p['mon_v1']}]", d / "monmap",
           log_name="ceph-mkfs")  # fmt: skip
        sh(site, "ceph-mon", "--mkfs", "-i", "a", "--monmap", d / "monmap", log_name="ceph-mkfs")
    start(site, "ceph-mon", ["ceph-mon", "-i", "a", "-f"])
    wait_for("ceph-mon", lambda: port_open(p["mon_v1"]), 90)
    start(site, "ceph-mgr", ["ceph-mgr", "-i", "x", "-f"])
    if not (d / "osd" / "0" / "whoami").exists():
        osd_uuid = str(uuid.uuid4())
        shutil.rmtree(d / "osd" / "0", ignore_errors=True)
        (d / "osd-0.block").unlink(missing_ok=True)
        (d / "osd" / "0").mkdir(parents=True)
        sh(site, "ceph", "osd", "purge", "0", "--yes-i-really-mean-it", check=False)
        sh(site, "ceph", "osd", "new", osd_uuid, "0", log_name="ceph-mkfs")
        sh(site, "ceph-osd", "-i", "0", "--mkfs", "--osd-uuid", osd_uuid, log_name="ceph-mkfs")
    start(site, "ceph-osd", ["ceph-osd", "-i", "0", "-f"])
    wait_for("ceph osd", lambda: "1 up" in output(site, "ceph", "osd", "stat"), 180, 1)
    if "volumes" not in output(site, "ceph", "osd", "pool", "ls").split():
        sh(site, "ceph", "osd", "pool", "create", "volumes", "32")
        sh(site, "rbd", "pool", "init", "volumes")


def start_rgw(site: LabSite) -> None:
    """Ceph RGW: S3 and Swift (v1 auth at /auth) on the site's own Ceph."""
    start(site, "radosgw", ["radosgw", "-f", "-n", f"client.rgw.{site.name}"])
    wait_for("radosgw", lambda: http_ok(site.url("rgw")), 180, 1)
    creds = {
        "endpoint": site.url("rgw"),
        "region": "default",
        "access_key": f"seawall-lab-{site.name}",
        "secret_key": f"{PASSWORD}-s3-secret",
        "swift_auth_url": site.url("rgw", "/auth/1.0"),
        "swift_user": "seawall:swift",
        "swift_key": f"{PASSWORD}-swift-secret",
    }
    with once(site, "rgw-user") as todo:
        if todo:
            sh(site, "radosgw-admin", "user", "create", "--uid=seawall",
               "--display-name=seawall lab", f"--access-key={creds['access_key']}",
               f"--secret={creds['secret_key']}", log_name="rgw-setup")  # fmt: skip
            sh(site, "radosgw-admin", "subuser", "create", "--uid=seawall",
               "--subuser=seawall:swift", "--access=full", "--key-type=swift",
               f"--secret={creds['swift_key']}", log_name="rgw-setup")  # fmt: skip
    write(site.dir / "rgw.json", json.dumps(creds, indent=2) + "\n")


def start_ovn(site: LabSite) -> None:
    """OVN northbound/southbound databases and northd, on unix sockets."""
    d = site.data / "ovn"
    d.mkdir(parents=True, exist_ok=True)
    for db in ("nb", "sb"):
        path = d / f"ovn{db}_db.db"
        if not path.exists():
            sh(site, "ovsdb-tool", "create", path, f"/usr/share/ovn/ovn-{db}.ovsschema")
        clear_stale_socket(site, f"ovsdb-{db}", site.run / f"ovn{db}_db.sock")
        start(site, f"ovsdb-{db}", [
            "ovsdb-server", f"--remote=punix:{site.run}/ovn{db}_db.sock",
            f"--unixctl={site.run}/ovsdb-{db}.ctl",
            f"--log-file={site.logs}/ovsdb-{db}.file.log", str(path),
        ])  # fmt: skip
    nb, sb = f"unix:{site.run}/ovnnb_db.sock", f"unix:{site.run}/ovnsb_db.sock"
    start(site, "ovn-northd", [
        "ovn-northd", f"--ovnnb-db={nb}", f"--ovnsb-db={sb}",
        f"--unixctl={site.run}/ovn-northd.ctl", f"--log-file={site.logs}/ovn-northd.file.log",
    ])  # fmt: skip
    wait_for("ovsdb sockets", lambda: all(
        unix_socket_open(site.run / f"ovn{db}_db.sock") for db in ("nb", "sb")), 60)  # fmt: skip
    sh(site, "ovn-nbctl", f"--db={nb}", "--timeout=10", "init")
    sh(site, "ovn-sbctl", f"--db={sb}", "--timeout=10", "init")


def start_chassis(site: LabSite) -> None:
    """A live OVN chassis for the compute host: ML2/OVN binds a port only when the
    chassis echoes nb_cfg, so a registered-by-hand chassis would count as dead.

    The datapath is OVS's ``dummy`` one (as in OVN's own sandbox): no kernel module and
    no device at all. The userspace ``netdev`` datapath would need a tap device named
    ``ovs-netdev``, the same name for every site, so the second site's bridge fails
    ("creating tap device failed: Device or resource busy") and its chassis later goes
    dead; nothing here carries packets, so nothing is lost."""
    d = site.data / "ovs"
    d.mkdir(parents=True, exist_ok=True)
    (site.run / "ovs").mkdir(parents=True, exist_ok=True)
    env = {**site.env(), "OVS_RUNDIR": str(site.run / "ovs"), "OVS_DBDIR": str(d),
           "OVS_LOGDIR": str(site.logs), "OVN_RUNDIR": str(site.run / "ovs")}  # fmt: skip
    if not (d / "conf.db").exists():
        sh(site, "ovsdb-tool", "create", d / "conf.db",
           "/usr/share/openvswitch/vswitch.ovsschema")  # fmt: skip
    db = f"unix:{site.run}/ovs-db.sock"
    clear_stale_socket(site, "ovsdb-local", site.run / "ovs-db.sock")
    start(site, "ovsdb-local", [
        "ovsdb-server", f"--remote=punix:{site.run}/ovs-db.sock",
        f"--unixctl={site.run}/ovsdb-local.ctl", f"--log-file={site.logs}/ovsdb-local.file.log",
        str(d / "conf.db"),
    ], env)  # fmt: skip
    wait_for("ovs db socket", lambda: unix_socket_open(site.run / "ovs-db.sock"), 60)
    host = site.compute_host
    sh(site, "ovs-vsctl", f"--db={db}", "--no-wait", "init")
    sh(site, "ovs-vsctl", f"--db={db}", "--no-wait", "set", "Open_vSwitch", ".",
       f"external_ids:system-id={host}", f"external_ids:hostname={host}",
       f"external_ids:ovn-remote=unix:{site.run}/ovnsb_db.sock",
       "external_ids:ovn-encap-type=geneve", f"external_ids:ovn-encap-ip={HOST}",
       # one bridge name per site, so the two sites' tap devices do not clash
       f"external_ids:ovn-bridge=br-int-{site.name}",
       "external_ids:ovn-bridge-datapath-type=dummy")  # fmt: skip
    bridge = f"br-int-{site.name}"
    if sh(site, "ovs-vsctl", f"--db={db}", "br-exists", bridge, check=False) == 0:
        sh(site, "ovs-vsctl", f"--db={db}", "--no-wait", "set", "Bridge", bridge,
           "datapath_type=dummy")  # fmt: skip
    start(site, "ovs-vswitchd", ["ovs-vswitchd", db, "--enable-dummy",
          f"--unixctl={site.run}/ovs-vswitchd.ctl",
          f"--log-file={site.logs}/ovs-vswitchd.file.log"], env)  # fmt: skip
    # ovn-controller 23.03 has no --unixctl: OVN_RUNDIR places its control socket
    start(site, "ovn-controller", ["ovn-controller", db,
          f"--log-file={site.logs}/ovn-controller.file.log"], env)  # fmt: skip
    sb = f"unix:{site.run}/ovnsb_db.sock"
    wait_for("OVN chassis", lambda: host in output(
        site, "ovn-sbctl", f"--db={sb}", "--timeout=5", "--bare", "--columns=hostname",
        "list", "Chassis").split(), 90, 1)  # fmt: skip
