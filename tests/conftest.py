"""Shared fixtures: a real, throwaway PostgreSQL server and the state database URLs.

The PostgreSQL server is started once per test session from the Debian package's binaries
(``/usr/lib/postgresql/*/bin``; ``./dev test`` installs them), in a temporary directory,
listening on 127.0.0.1 only, with trust authentication and durability switched off (it is
thrown away). When the tests run as root it runs as the ``postgres`` user, since
PostgreSQL refuses to run as root. Missing binaries fail the PostgreSQL tests loudly
instead of skipping them: a skipped backend would pass CI without testing anything.

Fixtures:

``postgres_server``  session-scoped; the server's admin URL (database ``postgres``).
``postgres_url``     a fresh, empty schema on that server for one test (via its URL).
``state_url``        parametrized ``sqlite`` / ``postgresql``: an empty state database URL;
                     tests using it run on both backends (the PostgreSQL variant is marked
                     ``postgres``, so ``-m "not postgres"`` runs SQLite only).
"""

from __future__ import annotations

import contextlib
import glob
import http.server
import itertools
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _pg_bindir() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if not found:
        pytest.fail(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; "
            "install the Debian package: apt-get install postgresql (./dev test does this)",
            pytrace=False,
        )
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user() -> tuple[list[str], int | None, int | None]:
    """The command prefix and uid/gid to run PostgreSQL with (it refuses to run as root)."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail(
            "running as root and there is no 'postgres' user to run the test server as; "
            "install the Debian postgresql package (it creates the user)",
            pytrace=False,
        )
    runuser = shutil.which("runuser") or "/sbin/runuser"
    return [runuser, "-u", "postgres", "--"], pw.pw_uid, pw.pw_gid


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Start a throwaway PostgreSQL cluster; yield its admin URL; stop it by its PID."""
    bindir = _pg_bindir()
    prefix, uid, gid = _as_user()
    tmp = Path(tempfile.mkdtemp(prefix="seawall-pg-"))
    if uid is not None and gid is not None:
        os.chown(tmp, uid, gid)
    data = tmp / "data"
    log = tmp / "server.log"

    def run(*args: str) -> None:
        proc = subprocess.run(
            [*prefix, *args], capture_output=True, text=True, cwd=tmp, timeout=60, check=False
        )
        if proc.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            pytest.fail(
                f"{' '.join(args[:2])} failed ({proc.returncode}):\n{proc.stdout}\n"
                f"{proc.stderr}\n{tail}",
                pytrace=False,
            )

    pid: int | None = None
    try:
        run(
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )
        for attempt in itertools.count():
            port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={port} "
                f"-c unix_socket_directories='{tmp}' -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=200"
            )
            try:
                run(
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(log),
                    "-w",
                    "-t",
                    "30",
                    "-o",
                    options,
                    "start",
                )
                break
            except pytest.fail.Exception:
                if attempt >= 2:  # the port was taken between probing and binding
                    raise
        pid = int((data / "postmaster.pid").read_text().split()[0])
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if pid is not None:
            _stop(pid)
        shutil.rmtree(tmp, ignore_errors=True)


def _stop(pid: int) -> None:
    """Immediate shutdown (SIGQUIT: the cluster is thrown away), SIGKILL if it lingers."""
    try:
        os.kill(pid, signal.SIGQUIT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


_db_counter = itertools.count()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """An empty schema for one test, dropped afterwards.

    A schema named in ``search_path`` behaves as an empty database to seawall (tables,
    ``alembic_version`` and reflection all use it) and costs milliseconds, where a
    CREATE DATABASE costs a third of a second per test.
    """
    import psycopg

    name = f"t{os.getpid()}_{next(_db_counter)}"
    admin = postgres_server.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    yield f"{postgres_server}?options=-csearch_path%3D{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty state database URL on each supported backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return str(request.getfixturevalue("postgres_url"))


# --------------------------------------------------------------------------------------
# Two sim sites and a small three-tier workload, through the Service (end-to-end tests)
# --------------------------------------------------------------------------------------
#
# ``seawall_env``  a private SEAWALL_HOME, passphrase and cheap KDF (monkeypatched env).
# ``shop``         sites ``a`` and ``b`` (each with a repository; ``b`` shares ``a``'s key)
#                  and the ``shop`` workload deployed on ``a``: db (boot + data volume),
#                  app (requires db) and web (requires app), each a real sim.app process
#                  answering /health; a network, subnet, router, security group, keypair,
#                  flavor, image and a floating IP. Policy gold, target b, and a recovery
#                  plan that boots db, app, web in that order with HTTP health checks.
#                  Both sites are destroyed at the end, which stops every process.

SHOP_PORTS = {"db": 5432, "app": 8080, "web": 8000}
SHOP_REQUIRES = {"db": "", "app": "db", "web": "app"}
MiB = 1 << 20


def use_seawall_env(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point seawall at ``root/home`` with a test passphrase and the cheap KDF; the
    environment a ``seawall`` subprocess needs is returned."""
    env = {
        "SEAWALL_HOME": str(root / "home"),
        "SEAWALL_PASSPHRASE": "test-passphrase-e2e",
        "SEAWALL_KDF": "fast",
        "SEAWALL_BACKOFF_START": "0.05",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("SEAWALL_PASSPHRASE_FILE", "SEAWALL_DB_URL"):
        monkeypatch.delenv(k, raising=False)
    return {**os.environ, **env}


@pytest.fixture
def seawall_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return use_seawall_env(tmp_path, monkeypatch)


class Shop:
    """The deployed workload and the helpers the end-to-end tests share."""

    def __init__(self, root: Path, svc: Any, env: dict[str, str]) -> None:
        self.root = root
        self.svc = svc
        self.env = env
        self.volumes: dict[str, str] = {}

    def site_path(self, site: str) -> Path:
        return self.root / "sites" / site

    def driver(self, site: str, project: str = "default") -> Any:
        return self.svc.driver(site, project)

    def deploy_ledger(self, project: str = "beta") -> str:
        """A second tenant's application on site a: project ``project``'s own network and
        a server ``db`` with a data volume (the name of one of shop's, in another
        project). Returns the server's id."""
        from seawall.clouds import ResourceSpec
        from seawall.model import ResourceKind as K

        d = self.driver("a", project)

        def mk(kind: Any, name: str, attrs: Any = None, refs: Any = None) -> str:
            spec = ResourceSpec(
                kind, name, f"t/{project}/{kind.value}/{name}", attrs or {}, refs or {}
            )
            return str(d.create(spec).id)

        net = mk(K.NETWORK, "net")
        subnet = mk(K.SUBNET, "subnet", {"cidr": "10.31.0.0/24"}, {"network": (net,)})
        port = mk(K.PORT, "db-port", {}, {"network": (net,), "subnet": (subnet,)})
        data = mk(K.VOLUME, "db-data", {"size": MiB})
        d.write_volume(data, 0, b"ledger" * 1000)
        return mk(
            K.SERVER,
            "db",
            {"hostname": "db"},
            {"flavor": (mk(K.FLAVOR, "small"),), "ports": (port,), "volumes": (data,)},
        )

    def add_sites(self, svc: Any, *, init: bool = True) -> None:
        svc.add_site(
            "a",
            "sim",
            {"path": str(self.site_path("a"))},
            str(self.root / "repos" / "a"),
            init_repository=init,
        )
        svc.add_site(
            "b",
            "sim",
            {"path": str(self.site_path("b"))},
            str(self.root / "repos" / "b"),
            init_repository=init,
            key_from="a" if init else None,
        )

    def deploy(self) -> None:
        from seawall.clouds import ResourceSpec
        from seawall.model import ResourceKind as K

        d = self.driver("a")

        def mk(kind: Any, name: str, attrs: Any = None, refs: Any = None, tags: Any = None) -> str:
            spec = ResourceSpec(
                kind, name, f"t/{kind.value}/{name}", attrs or {}, refs or {}, tags or {}
            )
            return str(d.create(spec).id)

        image_data = bytes(range(256)) * 256  # 64 KiB
        image = mk(K.IMAGE, "os", {"size": len(image_data), "disk_format": "raw"})
        d.write_image(image, [image_data])
        flavor = mk(K.FLAVOR, "small")
        key = mk(K.KEYPAIR, "key", {"public_key": "ssh-ed25519 AAAA test"})
        net = mk(K.NETWORK, "net")
        subnet = mk(K.SUBNET, "subnet", {"cidr": "10.30.0.0/24"}, {"network": (net,)})
        mk(K.ROUTER, "router", {"external_gateway": True}, {"subnets": (subnet,)})
        sg = mk(K.SECURITY_GROUP, "sg", {"rules": []})
        self.servers: dict[str, str] = {}
        for i, name in enumerate(("db", "app", "web")):
            port = mk(
                K.PORT,
                f"{name}-port",
                {"fixed_ips": [f"10.30.0.{10 + i}"]},
                {"network": (net,), "subnet": (subnet,), "security_groups": (sg,)},
            )
            vols = []
            if name == "db":  # app and web are stateless (and boot from the image)
                boot = mk(K.VOLUME, "db-boot", {"size": MiB, "bootable": True}, {"image": (image,)})
                data = mk(K.VOLUME, "db-data", {"size": 2 * MiB})
                for j in range(4):  # some data, some holes
                    d.write_volume(data, j * 256 * 1024, bytes([j + 1]) * 100_000)
                vols = [boot, data]
                self.volumes = {"db-boot": boot, "db-data": data}
            argv = ["python", "-m", "seawall.clouds.sim.app", "--role", name, "--wait", "20"]
            if SHOP_REQUIRES[name]:
                argv += ["--requires", SHOP_REQUIRES[name]]
            self.servers[name] = mk(
                K.SERVER,
                name,
                {
                    "hostname": name,
                    "command": argv,
                    "listen_port": SHOP_PORTS[name],
                    "guest_agent": True,
                },
                {
                    "flavor": (flavor,),
                    "image": (image,),
                    "keypair": (key,),
                    "ports": (port,),
                    "volumes": tuple(vols),
                },
                {"app": "shop"},
            )
            self.wait_healthy("a", name)
            if name == "web":
                mk(K.FLOATING_IP, "web-fip", {}, {"port": (port,)})

    def plan(self, target: str, **changes: Any) -> dict[str, Any]:
        data: dict[str, Any] = {
            "workload": "shop",
            "target": target,
            "boot_groups": [
                {"name": "data", "servers": ["db"]},
                {"name": "app", "servers": ["app"]},
                {"name": "web", "servers": ["web"]},
            ],
            "health_checks": [
                {"server": n, "kind": "http", "port": p, "path": "/health", "timeout_seconds": 20}
                for n, p in SHOP_PORTS.items()
            ],
        }
        data.update(changes)
        return data

    def wait_active(self, site: str, server_id: str) -> None:
        from seawall.model import ResourceKind, ResourceRef

        self.driver(site).wait_for_status(ResourceRef(ResourceKind.SERVER, server_id), "ACTIVE", 30)

    def wait_healthy(self, site: str, hostname: str, timeout: float = 30) -> None:
        """Until the server's process answers ``GET /health`` (ACTIVE only means alive)."""
        import time
        import urllib.error

        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.http(site, hostname).get("ok"):
                    return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{hostname} at {site} did not become healthy")
            time.sleep(0.05)

    def server(self, site: str, hostname: str) -> Any:
        from seawall.model import ResourceKind

        for r in self.driver(site).list_resources(ResourceKind.SERVER):
            if r.attrs.get("hostname") == hostname and not r.name.startswith("drill-"):
                return r
        raise AssertionError(f"no server {hostname} at {site}")

    def http(self, site: str, hostname: str, path: str = "/health", body: Any = None) -> Any:
        import json
        import urllib.request

        r = self.server(site, hostname)
        url = f"http://{r.attrs['access_address']}:{r.attrs['listen_port']}{path}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def write(self, site: str, volume: int, offset: int, length: int, seed: int) -> None:
        """A write by the application itself (through the sim's change journal)."""
        body = {"volume": volume, "offset": offset, "length": length, "seed": seed}
        self.http(site, "db", "/write", body)

    def volume_bytes(self, site: str, hostname: str) -> list[bytes]:
        """The bytes of a server's volumes, in attach order, read from the site's files."""
        from seawall.model import ResourceKind

        server = self.server(site, hostname)
        d = self.driver(site)
        return [
            d.volume_path(v.id).read_bytes()
            for v in server.refs.get("volumes", ())
            if v.kind is ResourceKind.VOLUME
        ]

    def inventory(self, site: str) -> dict[tuple[str, str], Any]:
        """Every resource at a site with what defines it (runtime status aside)."""
        from seawall.model import dump

        out = {}
        for r in self.driver(site).list_resources():
            data = dump(r)
            data["attrs"].pop("status", None)
            out[(r.kind.value, r.id)] = data
        return out

    def files(self, site: str) -> set[str]:
        root = self.site_path(site)
        return {
            str(p.relative_to(root))
            for sub in ("volumes", "snapshots", "images")
            for p in (root / sub).glob("*")
        }

    def destroy(self, site: str) -> None:
        from seawall.clouds.sim import destroy_site

        destroy_site(self.site_path(site))
        self.svc.forget_site_handles(site)

    def rebuild(self, site: str) -> None:
        """The site's cloud comes back empty (its repository survived)."""
        self.svc.forget_site_handles(site)
        self.driver(site).ping()

    def explain(self, run: Any) -> str:
        steps = "\n".join(f"  {s.name}: {s.state.value} {s.detail}" for s in self.svc.steps(run.id))
        return f"run {run.id} {run.state.value}: {run.error}\n{steps}"


@contextlib.contextmanager
def shop_world(root: Path, env: dict[str, str]) -> Iterator[Shop]:
    """Build the two sites and the deployed workload under ``root``; destroy them after."""
    from seawall.clouds.sim import destroy_site
    from seawall.model import Selector
    from seawall.service import Service

    svc = Service(root / "home")
    world = Shop(root, svc, env)
    try:
        world.add_sites(svc)
        world.deploy()
        svc.create_workload("shop", "a", Selector.parse("tag:app=shop"), "gold", ["b"])
        svc.set_plan(world.plan("b"))
        svc.set_plan(world.plan("a"))
        yield world
    finally:
        world.svc.close()
        for site in ("a", "b"):
            destroy_site(world.site_path(site))


@pytest.fixture
def shop(tmp_path: Path, seawall_env: dict[str, str]) -> Iterator[Shop]:
    with shop_world(tmp_path, seawall_env) as world:
        yield world


@pytest.fixture(scope="module")
def shop_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """The same world, shared by a module's tests that leave it as they found it."""
    root = tmp_path_factory.mktemp("shop")
    with pytest.MonkeyPatch.context() as mp:
        env = use_seawall_env(root, mp)
        with shop_world(root, env) as world:
            yield world


def rgw_credentials(site: str = "a") -> dict[str, str]:
    """The lab's Ceph RGW endpoint and keys (``seawall-lab up`` writes ``rgw.json``)."""
    import json

    from seawall_lab.layout import LabSite

    path = LabSite(site).rgw_json
    if not os.environ.get("SEAWALL_LAB_CLOUD") or not path.exists():
        pytest.skip(f"no lab RGW: {path} missing or SEAWALL_LAB_CLOUD unset (seawall-lab up)")
    creds: dict[str, str] = json.loads(path.read_text())
    return creds


def make_rgw_bucket(site: str) -> tuple[str, dict[str, str]]:
    """A fresh bucket on the lab's RGW of ``site`` and the storage options that reach it."""
    import boto3

    creds = rgw_credentials(site)
    name = f"seawall-test-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=creds["endpoint"],
        aws_access_key_id=creds["access_key"],
        aws_secret_access_key=creds["secret_key"],
        region_name=creds["region"],
    ).create_bucket(Bucket=name)
    options = {
        "endpoint": creds["endpoint"],
        "access_key_id": creds["access_key"],
        "secret_access_key": creds["secret_key"],
        "region": creds["region"],
    }
    return name, options


@pytest.fixture
def rgw_a() -> tuple[str, dict[str, str]]:
    """A fresh bucket on lab site a's RGW and its storage options (skips without the lab)."""
    return make_rgw_bucket("a")


@pytest.fixture
def rgw_b() -> tuple[str, dict[str, str]]:
    """A fresh bucket on lab site b's RGW and its storage options (skips without the lab)."""
    return make_rgw_bucket("b")


class Hook:
    """A local webhook receiver recording what it was sent; fails the first ``fail`` posts
    with 503 (to test retry)."""

    def __init__(self, fail: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail = fail
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if hook.fail > 0:
                    hook.fail -= 1
                    self.send_response(503)
                else:
                    hook.received.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[str]:
        return [r["event"] for r in self.received]

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


# --------------------------------------------------------------------------------------
# ``moto_endpoint``  a real ``moto_server`` S3 endpoint on 127.0.0.1 for the session;
# ``s3_options``/``s3_bucket``: options for it and a fresh bucket on it.


def _free_moto_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which(
        "moto_server"
    )
    if exe is None:
        pytest.fail("moto_server not installed; pip install 'moto[server]'", pytrace=False)
    port = _free_moto_port()
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("moto_server did not start", pytrace=False)
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def s3_options(moto_endpoint: str) -> dict[str, str]:
    """Storage options for the moto endpoint (moto accepts any credentials)."""
    return {
        "endpoint": moto_endpoint,
        "access_key_id": "testing",
        "secret_access_key": "testing",
        "region": "us-east-1",
    }


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> str:
    """A fresh bucket on the moto server (moto accepts any credentials)."""
    import boto3

    name = f"b-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=name)
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    return name
