"""The lab: a real, minimal OpenStack (2026.1) per site, on one machine, on 127.0.0.1.

For developers and for users who want to try seawall against real OpenStack without a
cloud: ``seawall lab up --site a`` and ``--site b`` give two independent clouds (own
MariaDB, RabbitMQ, Ceph, OVN, Keystone ...) with real Keystone, Glance, Placement, Nova
(only the virt driver is fake: servers run no guest), Neutron ML2/OVN, Cinder on a
single-node Ceph (RBD) with cinder-backup, and a Ceph RGW that offers S3 and Swift.

Layout (``SEAWALL_LAB_ROOT``, default ``/opt/seawall-lab``)::

    venv/                       the OpenStack services (PyPI, 2026.1 upper-constraints)
    bin/sudo                    shim: services run as root; sudo and rootwrap are dropped
    sites/<site>/clouds.yaml    ``seawall-lab-<site>`` (project admin) and ``...-system``
    sites/<site>/rgw.json       the RGW endpoint and its S3/Swift credentials
    sites/<site>/{etc,data,log,run}/
    sites/<site>/run/<svc>.pid  "pid starttime" of every service this module started

Invariants:

- every service is started in a session of its own, so its pid is its process group;
  ``down`` signals exactly the groups whose pid (and start time) it recorded, never a
  process found by name;
- ``up`` is idempotent: a running service is left alone; one-time steps (database
  migrations, Ceph mkfs, Keystone bootstrap) leave a stamp in ``data/.done-<step>``;
- nothing is written outside the lab root except the apt packages and the dummy keyring
  ``/etc/ceph/ceph.client.admin.keyring`` that os-brick insists on (cephx is off).

Why each unusual setting exists is said next to it; the facts behind them (no
device-mapper, no openvswitch kernel module, no systemd) are in ``docs/lab.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seawall.errors import PermanentError, StepTimeout

DEFAULT_ROOT = Path(os.environ.get("SEAWALL_LAB_ROOT", "/opt/seawall-lab"))
HOST = "127.0.0.1"
REGION = "RegionOne"
PASSWORD = os.environ.get("SEAWALL_LAB_PASSWORD", "seawall-lab")

#: The OpenStack 2026.1 service releases; everything else comes from the constraints file.
PIP_PACKAGES = (
    "keystone==29.1.0",
    "glance==32.0.0",
    "openstack-placement==15.0.0",
    "nova==33.0.2",
    "neutron==28.0.2",
    "cinder==28.0.0",
    "PyMySQL",
    "python-openstackclient",
    "openstacksdk",
    "uwsgi",  # not in the constraints: built from the sdist (about 1.5 min)
)
APT_PACKAGES = (
    "mariadb-server",
    "rabbitmq-server",
    "ceph-mon",
    "ceph-mgr",
    "ceph-osd",
    "ceph-common",
    "radosgw",
    "openvswitch-switch",
    "openvswitch-common",
    "ovn-central",
    "ovn-host",
    "python3-rbd",
    "python3-rados",
    "qemu-utils",
    "curl",
    "uuid-runtime",
)
#: where the 2026.1 upper-constraints file lives in a source checkout
CONSTRAINTS = Path(__file__).resolve().parents[2] / "lab" / "openstack" / "upper-constraints.txt"

SITES = ("a", "b")


def log(site: str, message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} [lab {site}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# A site: names, ports and paths
# --------------------------------------------------------------------------------------


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
        raise PermanentError(f"unknown lab site {self.name!r}; the lab has sites a and b")

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

    etc = property(lambda self: self.dir / "etc")
    data = property(lambda self: self.dir / "data")
    logs = property(lambda self: self.dir / "log")
    run = property(lambda self: self.dir / "run")
    venv = property(lambda self: self.root / "venv")
    clouds_yaml = property(lambda self: self.dir / "clouds.yaml")
    ceph_conf = property(lambda self: self.dir / "etc" / "ceph" / "ceph.conf")

    @property
    def cloud(self) -> str:
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
        path = f"{self.root / 'bin'}:{self.venv / 'bin'}:/usr/sbin:/sbin:{os.environ['PATH']}"
        return {**os.environ, "PATH": path, "CEPH_CONF": str(self.ceph_conf)}


# --------------------------------------------------------------------------------------
# Processes: started in their own session, recorded by pid and start time
# --------------------------------------------------------------------------------------


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _recorded(site: LabSite, name: str) -> tuple[int, int] | None:
    try:
        pid, start = (site.run / f"{name}.pid").read_text().split()
        return int(pid), int(start)
    except (OSError, ValueError):
        return None


def running(site: LabSite, name: str) -> int | None:
    """The pid of service ``name`` if the process this module started is still alive."""
    rec = _recorded(site, name)
    if rec is None or _start_time(rec[0]) != rec[1]:
        return None
    return rec[0]


def start(site: LabSite, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Start ``argv`` as service ``name`` unless it runs already; returns its pid."""
    pid = running(site, name)
    if pid is not None:
        return pid
    site.logs.mkdir(parents=True, exist_ok=True)
    with open(site.logs / f"{name}.log", "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env or site.env(),
            cwd=site.dir,
            start_new_session=True,
            close_fds=True,
        )
    start_time = _start_time(proc.pid)
    (site.run / f"{name}.pid").write_text(f"{proc.pid} {start_time}\n")
    order = site.run / "order"
    names = order.read_text().split() if order.exists() else []
    if name not in names:
        with open(order, "a") as f:
            f.write(name + "\n")
    log(site.name, f"started {name} (pid {proc.pid})")
    return proc.pid


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(site: LabSite, names: Sequence[str] = (), grace: float = 15.0) -> list[str]:
    """SIGTERM the recorded process groups (reverse start order), SIGKILL what is left
    after ``grace`` seconds (nova and cinder-scheduler ignore SIGTERM for longer)."""
    order = site.run / "order"
    every = order.read_text().split() if order.exists() else []
    chosen = list(names) or list(reversed(every))
    signalled: dict[str, int] = {}
    for name in chosen:
        pid = running(site, name)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            signalled[name] = pid
        (site.run / f"{name}.pid").unlink(missing_ok=True)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_group_alive(p) for p in signalled.values()):
        time.sleep(0.5)
    for name, pid in signalled.items():
        if _group_alive(pid):
            log(site.name, f"{name} ({pid}) still running after SIGTERM; SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    if not names:
        order.unlink(missing_ok=True)
        # the userspace datapath leaves its persistent tap device behind
        bridge = f"br-int-{site.name}"
        if subprocess.run(["ip", "link", "show", bridge], capture_output=True).returncode == 0:
            subprocess.run(["ip", "link", "delete", bridge], capture_output=True)
    return list(signalled)


# --------------------------------------------------------------------------------------
# Small waits and commands
# --------------------------------------------------------------------------------------


def wait_for(what: str, ready: Callable[[], bool], timeout: float, step: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise StepTimeout(f"lab: {what} not ready after {timeout:g}s")
        time.sleep(step)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((HOST, port)) == 0


def http_ok(url: str) -> bool:
    """Any answer below 500 counts: an API that says 401 is up."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def sh(site: LabSite, *argv: str | Path, log_name: str = "setup", check: bool = True) -> int:
    """Run a setup command, its output appended to ``log/<log_name>.log``."""
    site.logs.mkdir(parents=True, exist_ok=True)
    with open(site.logs / f"{log_name}.log", "ab") as out:
        rc = subprocess.run(
            [str(a) for a in argv], stdout=out, stderr=subprocess.STDOUT, env=site.env()
        ).returncode
    if check and rc != 0:
        raise PermanentError(
            f"lab {site.name}: {' '.join(map(str, argv))} failed (exit {rc}); "
            f"see {site.logs / (log_name + '.log')}"
        )
    return rc


def output(site: LabSite, *argv: str) -> str:
    return subprocess.run(
        list(argv), capture_output=True, text=True, env=site.env(), check=False
    ).stdout


@contextlib.contextmanager
def once(site: LabSite, step: str) -> Iterator[bool]:
    """``with once(site, "x") as todo: if todo: ...``: stamp the step when it succeeded."""
    stamp = site.data / f".done-{step}"
    done = stamp.exists()
    yield not done
    if not done:
        stamp.touch()


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


# --------------------------------------------------------------------------------------
# Install: Debian packages and a venv of the 2026.1 services
# --------------------------------------------------------------------------------------


def install(root: Path = DEFAULT_ROOT, constraints: Path = CONSTRAINTS) -> dict[str, float]:
    """apt and pip, each only when something is missing; returns seconds per step."""
    timings: dict[str, float] = {}
    root.mkdir(parents=True, exist_ok=True)
    t = time.monotonic()
    missing = subprocess.run(["dpkg", "-s", *APT_PACKAGES], capture_output=True).returncode
    if missing:
        log("*", "apt-get install (services are not auto-started: policy-rc.d)")
        prc = Path("/usr/sbin/policy-rc.d")
        made = not prc.exists()
        if made:
            prc.write_text("#!/bin/sh\nexit 101\n")
            prc.chmod(0o755)
        try:
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            with open(root / "apt.log", "ab") as out:
                for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q"]):
                    pkgs = list(APT_PACKAGES) if "install" in argv else []
                    subprocess.run([*argv, *pkgs], stdout=out, stderr=out, env=env, check=True)
        finally:
            if made:
                prc.unlink()
        timings["apt"] = time.monotonic() - t
    venv = root / "venv"
    t = time.monotonic()
    if not (venv / "bin" / "nova-manage").exists():
        if not constraints.is_file():
            raise PermanentError(f"lab: constraints file {constraints} is missing")
        log("*", f"pip install the OpenStack 2026.1 services into {venv} (about 4 min)")
        python = os.environ.get("SEAWALL_LAB_PYTHON", "python3")
        with open(root / "pip.log", "ab") as out:
            pip = str(venv / "bin/pip")
            for argv in (
                [python, "-m", "venv", str(venv)],
                [pip, "install", "-q", "-U", "pip", "setuptools", "wheel"],
                [pip, "install", "-c", str(constraints), *PIP_PACKAGES],
            ):
                subprocess.run(argv, stdout=out, stderr=out, check=True)
        timings["pip"] = time.monotonic() - t
    link_ceph_bindings(venv)
    link_ceph_bindings()  # and seawall's own venv, for the openstack driver's RBD path
    shim = root / "bin" / "sudo"
    write(
        shim,
        "#!/bin/sh\n"
        "# seawall lab: services run as root; drop sudo's flags and '*-rootwrap CONF'.\n"
        'while [ $# -gt 0 ]; do case "$1" in -E|-n|-H|-S) shift ;; --) shift; break ;;'
        " *) break ;; esac; done\n"
        'case "$1" in *-rootwrap) shift 2 ;; esac\n'
        'exec "$@"\n',
    )
    shim.chmod(0o755)
    return timings


def link_ceph_bindings(venv: Path | None = None) -> Path | None:
    """Make Debian's rados/rbd extensions (built for CPython 3.11) importable in ``venv``
    (default: the venv seawall runs in). Returns the site-packages linked, or None."""
    if venv is None:
        if sys.prefix == sys.base_prefix:
            return None
        purelib = Path(sysconfig.get_paths()["purelib"])
        python = sys.executable
    else:
        python = str(venv / "bin" / "python")
        out = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        )
        purelib = Path(out.stdout.strip())
    for mod in ("rados", "rbd"):
        src = Path(f"/usr/lib/python3/dist-packages/{mod}.cpython-311-x86_64-linux-gnu.so")
        dst = purelib / src.name
        if src.exists() and not dst.exists():
            dst.symlink_to(src)
    return purelib


# --------------------------------------------------------------------------------------
# Infrastructure: MariaDB, RabbitMQ, Ceph (+ RGW), OVN
# --------------------------------------------------------------------------------------

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
        (site.run / f"ovn{db}_db.sock").exists() for db in ("nb", "sb")), 60)  # fmt: skip
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
    start(site, "ovsdb-local", [
        "ovsdb-server", f"--remote=punix:{site.run}/ovs-db.sock",
        f"--unixctl={site.run}/ovsdb-local.ctl", f"--log-file={site.logs}/ovsdb-local.file.log",
        str(d / "conf.db"),
    ], env)  # fmt: skip
    wait_for("ovs db socket", lambda: (site.run / "ovs-db.sock").exists(), 60)
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


# --------------------------------------------------------------------------------------
# OpenStack services
# --------------------------------------------------------------------------------------


def _ini(sections: dict[str, dict[str, Any]]) -> str:
    out = []
    for name, values in sections.items():
        out.append(f"[{name}]")
        out.extend(f"{k} = {v}" for k, v in values.items())
        out.append("")
    return "\n".join(out)


def _password_auth(site: LabSite, user: str) -> dict[str, Any]:
    return {
        "auth_url": site.url("keystone"),
        "auth_type": "password",
        "project_domain_name": "Default",
        "user_domain_name": "Default",
        "project_name": "service",
        "username": user,
        "password": PASSWORD,
        "region_name": REGION,
    }


def _authtoken(site: LabSite, user: str) -> dict[str, Any]:
    return {
        "www_authenticate_uri": site.url("keystone"),
        **_password_auth(site, user),
        "service_token_roles_required": "true",
    }


def _service_user(site: LabSite, user: str) -> dict[str, Any]:
    # 2026.1 policies want a service token for external events and attachment deletes
    auth = _password_auth(site, user)
    auth.pop("region_name")
    return {"send_service_user_token": "true", **auth}


def start_uwsgi(site: LabSite, name: str, port: int, module: str, env: dict[str, str],
                pyargv: str = "", extra: Sequence[str] = ()) -> None:  # fmt: skip
    """An API under uwsgi: one master, one worker, four threads."""
    argv = [
        str(site.venv / "bin" / "uwsgi"), "--master", "--processes", "1", "--threads", "4",
        "--enable-threads", "--die-on-term", "--lazy-apps", "--need-app",
        "--virtualenv", str(site.venv), "--http-socket", f"{HOST}:{port}", "--module", module,
        "--buffer-size", "65535", "--add-header", "Connection: close",
        "--procname-prefix", f"seawall-lab-{site.name}-",
    ]  # fmt: skip
    if pyargv:
        argv += ["--pyargv", pyargv]
    start(site, name, [*argv, *extra], {**site.env(), **env})


def write_clouds_yaml(site: LabSite) -> None:
    auth = {
        "auth_url": site.url("keystone", "/v3"),
        "username": "admin",
        "password": PASSWORD,
        "user_domain_name": "Default",
    }
    clouds = {
        "clouds": {
            site.cloud: {
                "auth": {**auth, "project_name": "admin", "project_domain_name": "Default"},
                "region_name": REGION,
                "identity_api_version": 3,
                "interface": "public",
            },
            f"{site.cloud}-system": {
                "auth": {**auth, "system_scope": "all"},
                "region_name": REGION,
                "identity_api_version": 3,
            },
        }
    }
    write(site.clouds_yaml, json.dumps(clouds, indent=2) + "\n")  # JSON is YAML


def connect(site: LabSite) -> Any:
    """An openstacksdk connection to the site as the admin project."""
    import openstack  # the lab needs it; seawall's core does not import it eagerly

    config = openstack.config.OpenStackConfig(config_files=[str(site.clouds_yaml)])
    return openstack.connection.Connection(config=config.get_one(cloud=site.cloud))


def register_services(site: LabSite) -> None:
    """Service project, users (admin + service roles), services and endpoints."""
    conn = connect(site)
    idc = conn.identity
    dom = idc.find_domain("default")
    proj = idc.find_project("service", domain_id=dom.id) or idc.create_project(
        name="service", domain_id=dom.id
    )
    roles = {r: idc.find_role(r) or idc.create_role(name=r) for r in ("admin", "service")}
    for r in ("member", "reader"):
        idc.find_role(r) or idc.create_role(name=r)
    catalog = {
        "glance": ("image", site.url("glance")),
        "placement": ("placement", site.url("placement")),
        "nova": ("compute", site.url("nova", "/v2.1")),
        "neutron": ("network", site.url("neutron")),
        "cinder": ("block-storage", site.url("cinder", "/v3")),
    }
    for name, (stype, url) in catalog.items():
        user = idc.find_user(name, domain_id=dom.id)
        if user is None:
            user = idc.create_user(
                name=name, password=PASSWORD, domain_id=dom.id, default_project_id=proj.id
            )
        for role in roles.values():
            idc.assign_project_role_to_user(proj, user, role)
        svc = next((s for s in idc.services() if s.type == stype), None)
        if svc is None:
            svc = idc.create_service(name=name, type=stype, enabled=True)
        have = {(e.interface, e.url) for e in idc.endpoints(service_id=svc.id)}
        for iface in ("public", "internal", "admin"):
            if (iface, url) not in have:
                idc.create_endpoint(
                    service_id=svc.id, interface=iface, url=url, region_id=REGION, enabled=True
                )


def start_keystone(site: LabSite) -> None:
    c, d = site.etc / "keystone", site.data / "keystone"
    d.mkdir(parents=True, exist_ok=True)
    write(c / "keystone.conf", _ini({
        "DEFAULT": {"use_stderr": "true"},
        "database": {"connection": f"{site.db_url}/keystone"},
        "token": {"provider": "fernet"},
        "fernet_tokens": {"key_repository": d / "fernet-keys"},
        "fernet_receipts": {"key_repository": d / "fernet-keys"},
        "credential": {"key_repository": d / "credential-keys"},
    }))  # fmt: skip
    km = [str(site.venv / "bin/keystone-manage"), "--config-file", str(c / "keystone.conf")]
    with once(site, "keystone-db") as todo:
        if todo:
            ks = site.url("keystone", "/v3")
            for args in (
                ["db_sync"],
                ["fernet_setup", "--keystone-user", "root", "--keystone-group", "root"],
                ["credential_setup", "--keystone-user", "root", "--keystone-group", "root"],
                ["bootstrap", "--bootstrap-password", PASSWORD, "--bootstrap-region-id", REGION,
                 "--bootstrap-admin-url", ks, "--bootstrap-internal-url", ks,
                 "--bootstrap-public-url", ks],
            ):  # fmt: skip
                sh(site, *km, *args, log_name="keystone-setup")
    env = {"OS_KEYSTONE_CONFIG_DIR": str(c), "OS_KEYSTONE_CONFIG_FILES": "keystone.conf"}
    start_uwsgi(site, "keystone", site.ports["keystone"], "keystone.wsgi.api:application", env)
    wait_for("keystone", lambda: http_ok(site.url("keystone", "/v3")), 180)
    write_clouds_yaml(site)
    with once(site, "keystone-services") as todo:
        if todo:
            register_services(site)


def start_glance(site: LabSite) -> None:
    c, d = site.etc / "glance", site.data / "glance"
    for sub in ("images", "staging", "tasks", "lock"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    c.mkdir(parents=True, exist_ok=True)
    shutil.copy(site.venv / "etc/glance/glance-api-paste.ini", c)
    write(c / "glance-api.conf", _ini({
        "DEFAULT": {"use_stderr": "true", "enabled_backends": "fs:file",
                    "worker_self_reference_url": site.url("glance")},
        "database": {"connection": f"{site.db_url}/glance"},
        "paste_deploy": {"flavor": "keystone"},
        "glance_store": {"default_backend": "fs"},
        "fs": {"filesystem_store_datadir": d / "images"},
        "os_glance_staging_store": {"filesystem_store_datadir": d / "staging"},
        "os_glance_tasks_store": {"filesystem_store_datadir": d / "tasks"},
        "oslo_concurrency": {"lock_path": d / "lock"},
        "oslo_policy": {"enforce_new_defaults": "true"},
        "keystone_authtoken": _authtoken(site, "glance"),
    }))  # fmt: skip
    with once(site, "glance-db") as todo:
        if todo:
            sh(site, "glance-manage", "--config-file", c / "glance-api.conf", "db_sync",
               log_name="glance-setup")  # fmt: skip
    # Cinder uploads volumes to images with chunked requests; uwsgi's default chunk limit
    # (1 MiB) fails them with "unable to receive chunked part"
    start_uwsgi(site, "glance-api", site.ports["glance"], "glance.wsgi.api:application",
                {"OS_GLANCE_CONFIG_DIR": str(c)},
                extra=["--chunked-input-limit", str(64 << 20),
                       "--chunked-input-timeout", "300"])  # fmt: skip


def start_placement(site: LabSite) -> None:
    c = site.etc / "placement"
    write(c / "placement.conf", _ini({
        "DEFAULT": {"use_stderr": "true"},
        "placement_database": {"connection": f"{site.db_url}/placement"},
        "api": {"auth_strategy": "keystone"},
        "keystone_authtoken": _authtoken(site, "placement"),
    }))  # fmt: skip
    with once(site, "placement-db") as todo:
        if todo:
            sh(site, "placement-manage", "--config-file", c / "placement.conf", "db", "sync",
               log_name="placement-setup")  # fmt: skip
    start_uwsgi(site, "placement-api", site.ports["placement"], "placement.wsgi.api:application",
                {"OS_PLACEMENT_CONFIG_DIR": str(c)})  # fmt: skip


def start_nova(site: LabSite) -> None:
    c, d = site.etc / "nova", site.data / "nova"
    for sub in ("instances", "lock"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    c.mkdir(parents=True, exist_ok=True)
    shutil.copy(site.venv / "etc/nova/api-paste.ini", c)
    write(c / "nova.conf", _ini({
        "DEFAULT": {
            "use_stderr": "true", "host": site.compute_host, "my_ip": HOST,
            "transport_url": site.rabbit_url,
            # fake.FakeDriver draws a new node uuid per process and then refuses to
            # restart; this one derives it from the host name (uuid5), written below.
            "compute_driver": "fake.PredictableNodeUUIDDriver",
            # SmallFakeDriver reports 1 vCPU / 8 GiB: overcommit for scheduling room
            "cpu_allocation_ratio": "128.0", "ram_allocation_ratio": "128.0",
            "disk_allocation_ratio": "128.0",
            "state_path": d, "instances_path": d / "instances",
            # the fake driver never plugs a VIF, so ports stay DOWN
            "vif_plugging_is_fatal": "false", "vif_plugging_timeout": "0",
        },
        "api": {"auth_strategy": "keystone"},
        "api_database": {"connection": f"{site.db_url}/nova_api"},
        "database": {"connection": f"{site.db_url}/nova"},
        "conductor": {"workers": 1},
        "scheduler": {"workers": 1, "discover_hosts_in_cells_interval": 10},
        "vnc": {"enabled": "false"},
        "oslo_concurrency": {"lock_path": d / "lock"},
        "oslo_messaging_notifications": {"driver": "noop"},
        "cinder": {"catalog_info": "block-storage::publicURL", "os_region_name": REGION,
                   **{k: v for k, v in _password_auth(site, "nova").items()
                      if k != "region_name"}},
        "service_user": _service_user(site, "nova"),
        "keystone_authtoken": _authtoken(site, "nova"),
        "placement": _password_auth(site, "placement"),
        "neutron": _password_auth(site, "neutron"),
        "glance": {"region_name": REGION},
    }))  # fmt: skip
    nm = [str(site.venv / "bin/nova-manage"), "--config-file", str(c / "nova.conf")]
    with once(site, "nova-db") as todo:
        if todo:
            sh(site, *nm, "api_db", "sync", log_name="nova-setup")
            cells = output(site, *nm, "cell_v2", "list_cells")
            if " cell0 " not in cells:
                sh(site, *nm, "cell_v2", "map_cell0", "--database_connection",
                   f"{site.db_url}/nova_cell0", log_name="nova-setup")  # fmt: skip
            if " cell1 " not in cells:
                sh(site, *nm, "cell_v2", "create_cell", "--name", "cell1", log_name="nova-setup")
            sh(site, *nm, "db", "sync", log_name="nova-setup")
    compute_id = d / "compute_id"
    if not compute_id.exists():
        compute_id.write_text(str(uuid.uuid5(uuid.NAMESPACE_DNS, site.compute_host)) + "\n")
    start_uwsgi(site, "nova-api", site.ports["nova"], "nova.wsgi.osapi_compute:application",
                {"OS_NOVA_CONFIG_DIR": str(c)})  # fmt: skip
    for svc in ("conductor", "scheduler", "compute"):
        start(site, f"nova-{svc}", [str(site.venv / f"bin/nova-{svc}"),
                                    "--config-file", str(c / "nova.conf")])  # fmt: skip


def start_neutron(site: LabSite) -> None:
    c, d = site.etc / "neutron", site.data / "neutron"
    (d / "lock").mkdir(parents=True, exist_ok=True)
    c.mkdir(parents=True, exist_ok=True)
    shutil.copy(site.venv / "etc/neutron/api-paste.ini", c)
    write(c / "neutron.conf", _ini({
        "DEFAULT": {
            "use_stderr": "true", "core_plugin": "ml2", "service_plugins": "ovn-router",
            "auth_strategy": "keystone", "transport_url": site.rabbit_url,
            "api_paste_config": c / "api-paste.ini", "state_path": d,
            "allow_overlapping_ips": "true",
            "notify_nova_on_port_status_changes": "true",
            "notify_nova_on_port_data_changes": "true",
            "api_workers": 1, "rpc_workers": 0,
        },
        "database": {"connection": f"{site.db_url}/neutron"},
        "oslo_concurrency": {"lock_path": d / "lock"},
        "oslo_messaging_notifications": {"driver": "noop"},
        "keystone_authtoken": _authtoken(site, "neutron"),
        "nova": _password_auth(site, "nova"),
    }))  # fmt: skip
    write(c / "ml2_conf.ini", _ini({
        "ml2": {"type_drivers": "geneve,flat,vlan", "tenant_network_types": "geneve",
                "mechanism_drivers": "ovn", "extension_drivers": "port_security",
                "overlay_ip_version": 4},
        "ml2_type_geneve": {"vni_ranges": "1:65536", "max_header_size": 38},
        "ml2_type_flat": {"flat_networks": "*"},
        "securitygroup": {"enable_security_group": "true"},
        "ovn": {"ovn_nb_connection": f"unix:{site.run}/ovnnb_db.sock",
                "ovn_sb_connection": f"unix:{site.run}/ovnsb_db.sock",
                "ovn_metadata_enabled": "false", "enable_distributed_floating_ip": "false"},
    }))  # fmt: skip
    confs = ["--config-file", str(c / "neutron.conf"), "--config-file", str(c / "ml2_conf.ini")]
    with once(site, "neutron-db") as todo:
        if todo:
            sh(site, "neutron-db-manage", *confs, "upgrade", "head", log_name="neutron-setup")
    # 2026.1 has no neutron-server binary: the API runs under uwsgi beside the worker
    start_uwsgi(site, "neutron-api", site.ports["neutron"], "neutron.wsgi.api:application",
                {"OS_NEUTRON_CONFIG_DIR": str(c),
                 "OS_NEUTRON_CONFIG_FILES": "neutron.conf;ml2_conf.ini"})  # fmt: skip
    start(site, "neutron-ovn-maintenance",
          [str(site.venv / "bin/neutron-ovn-maintenance-worker"), *confs])  # fmt: skip


def start_cinder(site: LabSite) -> None:
    c, d = site.etc / "cinder", site.data / "cinder"
    for sub in ("lock", "backups", "conversion"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    c.mkdir(parents=True, exist_ok=True)
    shutil.copy(site.venv / "etc/cinder/api-paste.ini", c)
    write(c / "cinder.conf", _ini({
        "DEFAULT": {
            "use_stderr": "true", "host": f"seawall-lab-{site.name}-cinder", "my_ip": HOST,
            "transport_url": site.rabbit_url, "auth_strategy": "keystone",
            "api_paste_config": c / "api-paste.ini", "state_path": d,
            "image_conversion_dir": d / "conversion", "enabled_backends": "ceph",
            "glance_api_servers": site.url("glance"),
            "backup_driver": "cinder.backup.drivers.posix.PosixBackupDriver",
            "backup_posix_path": d / "backups",
            "rootwrap_config": site.venv / "etc/cinder/rootwrap.conf",
        },
        "database": {"connection": f"{site.db_url}/cinder"},
        "oslo_concurrency": {"lock_path": d / "lock"},
        "oslo_messaging_notifications": {"driver": "noop"},
        "ceph": {
            "volume_driver": "cinder.volume.drivers.rbd.RBDDriver",
            "volume_backend_name": "ceph", "rbd_pool": "volumes",
            "rbd_ceph_conf": site.ceph_conf, "rbd_user": "admin",
            "rbd_secret_uuid": "11111111-2222-3333-4444-555555555555",
            "rbd_flatten_volume_from_snapshot": "false", "report_discard_supported": "true",
        },
        "keystone_authtoken": _authtoken(site, "cinder"),
        "nova": _password_auth(site, "nova"),
        "service_user": _service_user(site, "cinder"),
    }))  # fmt: skip
    with once(site, "cinder-db") as todo:
        if todo:
            sh(site, "cinder-manage", "--config-file", c / "cinder.conf", "db", "sync",
               log_name="cinder-setup")  # fmt: skip
    start_uwsgi(site, "cinder-api", site.ports["cinder"], "cinder.wsgi.api:application", {},
                pyargv=f"--config-file {c / 'cinder.conf'}")  # fmt: skip
    for svc in ("scheduler", "volume", "backup"):
        start(site, f"cinder-{svc}", [str(site.venv / f"bin/cinder-{svc}"),
                                      "--config-file", str(c / "cinder.conf")])  # fmt: skip


def wait_for_ready(site: LabSite, timeout: float = 420) -> None:
    """Every API answers, a hypervisor and cinder-volume are up, the OVN agent is alive,
    and the compute host is mapped to its cell."""
    for service in ("keystone", "glance", "placement", "nova", "neutron", "cinder"):
        wait_for(service, lambda s=service: http_ok(site.url(s)), timeout)  # type: ignore[misc]
    conn = connect(site)

    def registered() -> bool:
        try:
            hv = [h for h in conn.compute.hypervisors(details=False) if h.state == "up"]
            cv = [s for s in conn.block_storage.services()
                  if s.binary == "cinder-volume" and s.state == "up"]  # fmt: skip
            ag = [a for a in conn.network.agents() if a.is_alive]
        except Exception:  # the APIs answer before their services register
            return False
        return bool(hv and cv and ag)

    wait_for("compute, volume and network services", registered, timeout, 2)
    nova_conf = site.etc / "nova" / "nova.conf"
    sh(site, site.venv / "bin/nova-manage", "--config-file", nova_conf, "cell_v2",
       "discover_hosts", log_name="nova-setup")  # fmt: skip


def set_up_project(site: LabSite) -> None:
    """The admin project's quotas lifted (the defaults, 10 volumes and 10 snapshots, run
    out within one test run), and a flat external network ``public`` (TEST-NET-3) for
    router gateways and floating IPs. Nothing is bridged to it: the addresses are
    bookkeeping, as every guest is fake."""
    conn = connect(site)
    project = conn.current_project_id
    conn.set_compute_quotas(project, instances=-1, cores=-1, ram=-1, key_pairs=-1,
                            server_groups=-1, server_group_members=-1)  # fmt: skip
    conn.set_volume_quotas(project, volumes=-1, snapshots=-1, gigabytes=-1, backups=-1)
    if conn.network.find_network("public") is not None:
        return
    net = conn.network.create_network(
        name="public",
        is_router_external=True,
        provider_network_type="flat",
        provider_physical_network="public",
    )
    conn.network.create_subnet(
        name="public-subnet",
        network_id=net.id,
        ip_version=4,
        cidr="203.0.113.0/24",
        gateway_ip="203.0.113.1",
        is_dhcp_enabled=False,
    )


# --------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------

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
    name: str
    pid: int | None
    processes: int
    rss: int  #: bytes, summed over the process group
    pss: int  #: bytes, summed over the process group


def status(site: LabSite) -> list[ServiceStatus]:
    """Every service ``up`` started, with its group's memory (RSS and PSS)."""
    order = site.run / "order"
    names = order.read_text().split() if order.exists() else []
    groups: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            groups.setdefault(int(stat[2]), []).append(int(proc.name))
    out = []
    for name in names:
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
