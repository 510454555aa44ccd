"""``seawall demo``: the whole story on two embedded sites, in about a minute.

It deploys a three-tier application on site A (a database server with two data volumes
holding real data, two app servers, a web server; front and back networks, a router,
security groups, a keypair, a floating IP — each server a real process answering health
checks, the web tier refusing to start before its app and db peers), then:

protect (full) → change data → protect (incremental) → destroy site A's cloud →
fail over to B (every volume compared byte for byte, health checks in boot order) →
drill of the recovered copy in an isolated bubble (verified, zero residue) →
rebuild A → reprotect B → A (only the difference travels) → fail back to A.

Site A's repository lives on storage that survives the loss of A's cloud (think of a
separate object store), which is what lets reprotect send only the difference.
The figures are printed as a table and written to ``DIR/report.json``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import secrets
import shutil
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from seawall.clouds import ResourceSpec
from seawall.model import (
    BootGroup,
    CheckKind,
    HealthCheck,
    ResourceKind,
    Run,
    RunState,
    Selector,
    dump,
)
from seawall.service import Service
from seawall.units import format_bytes

K = ResourceKind
MiB = 1 << 20

BOOT_SIZE = 16 * MiB
DATA_SIZE = 64 * MiB
IMAGE_SIZE = 4 * MiB


def _pattern(seed: int, n: int, text: bool) -> bytes:
    rng = random.Random(seed)
    if text:
        words = [b"GET", b"/api/orders", b"200", b"INFO", b"db.commit", b"user=", b"ms", b"\n"]
        parts: list[bytes] = []
        size = 0
        while size < n:
            w = rng.choice(words) + b" " + str(rng.randrange(10**6)).encode() + b" "
            parts.append(w)
            size += len(w)
        return b"".join(parts)[:n]
    return rng.randbytes(n)


class Demo:
    def __init__(self, workdir: Path, console: Console | None) -> None:
        self.dir = workdir.resolve()
        self.console = console
        self.phases: dict[str, dict[str, Any]] = {}
        self.checkpoints: list[dict[str, Any]] = []
        self.svc: Service | None = None

    # -- output -------------------------------------------------------------------------
    def say(self, text: str) -> None:
        if self.console:
            self.console.print(text)

    def phase(self, name: str, run: Run, **extra: Any) -> dict[str, Any]:
        r = run.result
        entry = {
            "run": run.id,
            "state": run.state.value,
            "verified": bool(r.get("verified", run.state is RunState.SUCCEEDED)),
            "rto_seconds": r.get("rto_seconds"),
            "duration_seconds": r.get("duration_seconds"),
            **extra,
        }
        if "checkpoint" in r:
            entry["checkpoint"] = r["checkpoint"]
        sent = sum(v.get("bytes_sent", 0) for k, v in r.items() if k.startswith("replication:"))
        entry["bytes_sent"] = sent
        self.phases[name] = entry
        mark = "[green]✔[/]" if run.state is RunState.SUCCEEDED else "[red]✘[/]"
        self.say(f"{mark} {name}: {run.state.value} ({entry['duration_seconds']}s)")
        if run.state is not RunState.SUCCEEDED:
            raise DemoFailed(f"{name} ended {run.state.value}: {run.error}")
        return entry

    # -- set-up -------------------------------------------------------------------------
    def prepare(self) -> Service:
        if self.dir.exists():
            self._teardown_sites()
            shutil.rmtree(self.dir)
        (self.dir / "home").mkdir(parents=True)
        pp = self.dir / "passphrase"
        pp.write_text(secrets.token_urlsafe(24))
        pp.chmod(0o600)
        os.environ["SEAWALL_PASSPHRASE_FILE"] = str(pp)
        os.environ.pop("SEAWALL_PASSPHRASE", None)
        svc = Service(self.dir / "home")
        self.svc = svc
        svc.add_site(
            "site-a",
            "sim",
            {"path": str(self.dir / "sites/a")},
            str(self.dir / "repos/a"),
            init_repository=True,
        )
        svc.add_site(
            "site-b",
            "sim",
            {"path": str(self.dir / "sites/b")},
            str(self.dir / "repos/b"),
            init_repository=True,
            key_from="site-a",
        )
        return svc

    def _teardown_sites(self) -> None:
        from seawall.clouds.sim import destroy_site

        for sub in ("a", "b"):
            path = self.dir / "sites" / sub
            if path.exists():
                destroy_site(path)

    def deploy(self, svc: Service) -> dict[str, Any]:
        """The sample application, created through the cloud's own API as a tenant would."""
        d = svc.driver("site-a")

        def mk(
            kind: ResourceKind,
            name: str,
            attrs: dict[str, Any] | None = None,
            refs: dict[str, tuple[str, ...]] | None = None,
            tags: dict[str, str] | None = None,
        ) -> str:
            r = d.create(
                ResourceSpec(
                    kind, name, f"demo/{kind.value}/{name}", attrs or {}, refs or {}, tags or {}
                )
            )
            return r.id

        image_data = _pattern(1, IMAGE_SIZE // 2, True) + _pattern(2, IMAGE_SIZE // 2, False)
        image = mk(
            K.IMAGE,
            "shop-os",
            {
                "size": IMAGE_SIZE,
                "disk_format": "raw",
                "checksum": hashlib.md5(image_data).hexdigest(),
            },
        )
        d.write_image(image, [image_data])
        flavor = mk(
            K.FLAVOR, "m1.small", {"vcpus": 1, "ram_mb": 512, "disk_gb": 1, "extra_specs": {}}
        )
        key = mk(K.KEYPAIR, "shop-key", {"public_key": "ssh-ed25519 AAAAC3Nz demo@seawall"})
        front = mk(K.NETWORK, "front", {"external": False, "isolated": False, "mtu": 1450})
        back = mk(K.NETWORK, "back", {"external": False, "isolated": False, "mtu": 1450})
        front_sn = mk(
            K.SUBNET,
            "front-subnet",
            {
                "cidr": "10.10.1.0/24",
                "gateway_ip": "10.10.1.1",
                "enable_dhcp": True,
                "dns_nameservers": ["10.10.1.2"],
                "allocation_pools": [],
                "host_routes": [],
            },
            {"network": (front,)},
        )
        back_sn = mk(
            K.SUBNET,
            "back-subnet",
            {
                "cidr": "10.10.2.0/24",
                "gateway_ip": "10.10.2.1",
                "enable_dhcp": True,
                "dns_nameservers": [],
                "allocation_pools": [],
                "host_routes": [],
            },
            {"network": (back,)},
        )
        mk(K.ROUTER, "shop-router", {"external_gateway": True}, {"subnets": (front_sn, back_sn)})

        def rule(port: int, prefix: str) -> dict[str, Any]:
            return {
                "direction": "ingress",
                "ethertype": "IPv4",
                "protocol": "tcp",
                "port_range_min": port,
                "port_range_max": port,
                "remote_ip_prefix": prefix,
            }

        web_sg = mk(
            K.SECURITY_GROUP, "web-sg", {"rules": [rule(80, "0.0.0.0/0"), rule(443, "0.0.0.0/0")]}
        )
        app_sg = mk(K.SECURITY_GROUP, "app-sg", {"rules": [rule(8080, "10.10.1.0/24")]})
        db_sg = mk(K.SECURITY_GROUP, "db-sg", {"rules": [rule(5432, "10.10.2.0/24")]})

        servers: dict[str, dict[str, Any]] = {
            "db": {"ips": [("back", "10.10.2.10")], "sg": db_sg, "port": 5432, "requires": []},
            "app-1": {
                "ips": [("front", "10.10.1.21"), ("back", "10.10.2.21")],
                "sg": app_sg,
                "port": 8080,
                "requires": ["db"],
            },
            "app-2": {
                "ips": [("front", "10.10.1.22"), ("back", "10.10.2.22")],
                "sg": app_sg,
                "port": 8080,
                "requires": ["db"],
            },
            "web": {
                "ips": [("front", "10.10.1.30"), ("back", "10.10.2.30")],
                "sg": web_sg,
                "port": 8000,
                "requires": ["app-1", "app-2", "db"],
            },
        }
        nets = {"front": (front, front_sn), "back": (back, back_sn)}
        boot_data = image_data
        ids: dict[str, str] = {}
        for name, s in servers.items():
            ports: list[str] = []
            for i, (net, ip) in enumerate(s["ips"]):
                n, sn = nets[net]
                ports.append(
                    mk(
                        K.PORT,
                        f"{name}-port-{i}",
                        {
                            "fixed_ips": [ip],
                            "mac_address": _mac(len(ports), ip),
                            "allowed_address_pairs": [],
                        },
                        {"network": (n,), "subnet": (sn,), "security_groups": (s["sg"],)},
                    )
                )
            boot = mk(
                K.VOLUME,
                f"{name}-boot",
                {"size": BOOT_SIZE, "bootable": True, "availability_zone": "nova"},
                {"image": (image,)},
            )
            d.write_volume(boot, 0, boot_data)
            vols = [boot]
            if name == "db":
                for v in (1, 2):
                    vid = mk(
                        K.VOLUME,
                        f"db-data-{v}",
                        {"size": DATA_SIZE, "bootable": False, "availability_zone": "nova"},
                    )
                    rng = random.Random(100 + v)
                    off = 0
                    for j in range(12):
                        off += rng.randrange(1, 4) * MiB
                        d.write_volume(vid, off, _pattern(1000 * v + j, 512 * 1024, j % 2 == 0))
                    vols.append(vid)
            cmd = [sys.executable, "-m", "seawall.clouds.sim.app", "--role", name.split("-")[0]]
            if s["requires"]:
                cmd += ["--requires", ",".join(s["requires"])]
            ids[name] = mk(
                K.SERVER,
                name,
                {
                    "hostname": name,
                    "availability_zone": "nova",
                    "metadata": {"tier": name.split("-")[0]},
                    "command": cmd,
                    "listen_port": s["port"],
                    "guest_agent": True,
                },
                {
                    "flavor": (flavor,),
                    "image": (image,),
                    "keypair": (key,),
                    "ports": tuple(ports),
                    "volumes": tuple(vols),
                },
                {"app": "shop"},
            )
            d.wait_for_status(_server_ref(ids[name]), "ACTIVE", 30)
        fip_port = next(p for p in d.list_resources(K.PORT) if p.name == "web-port-0")
        mk(
            K.FLOATING_IP,
            "web-fip",
            {"address": "203.0.113.10", "floating_network": "public"},
            {"port": (fip_port.id,)},
        )
        return {"servers": ids}

    def http(
        self,
        svc: Service,
        site: str,
        server: str,
        method: str = "GET",
        path: str = "/health",
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        for r in svc.driver(site).list_resources(K.SERVER):
            if (
                r.attrs.get("hostname") == server
                and not r.name.startswith("drill-")
                and r.attrs.get("status") == "ACTIVE"
            ):
                url = f"http://{r.attrs['access_address']}:{r.attrs['listen_port']}{path}"
                data = json.dumps(body).encode() if body is not None else None
                req = urllib.request.Request(
                    url, data=data, method=method, headers={"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(req, timeout=10) as resp:
                    result: dict[str, Any] = json.loads(resp.read())
                    return result
        raise DemoFailed(f"no running server {server} at {site}")

    def change_data(self, svc: Service, site: str, seed: int, writes: int) -> None:
        rng = random.Random(seed)
        for i in range(writes):
            vol = 1 + (i % 2)  # the two data volumes (index 0 is the boot volume)
            off = rng.randrange(0, DATA_SIZE // 4096 - 16) * 4096
            self.http(
                svc,
                site,
                "db",
                "POST",
                "/write",
                {
                    "volume": vol,
                    "offset": off,
                    "length": rng.choice([4096, 16384, 65536]),
                    "seed": seed * 1000 + i,
                },
            )

    # -- the story ----------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        t0 = time.monotonic()
        svc = self.prepare()
        self.say(f"[bold]seawall demo[/bold] in {self.dir}")
        self.deploy(svc)
        self.say("✔ deployed the shop application on site-a (db, app-1, app-2, web)")
        svc.create_workload("shop", "site-a", Selector.parse("tag:app=shop"), "gold", ["site-b"])
        svc.set_plan(_shop_plan("site-b"))
        svc.set_plan(_shop_plan("site-a"))

        full = svc.protect("shop")
        self.phase("protect_full", full)
        self.change_data(svc, "site-a", seed=7, writes=24)
        expected = self.http(svc, "site-a", "db", path="/volumes")
        incr = svc.protect("shop")
        self.phase("protect_incremental", incr)
        for run in (full, incr):
            self.checkpoints.append(dict(run.result["checkpoint"]))

        latest = svc.get_checkpoint(incr.result["checkpoint"]["id"])
        from seawall.clouds.sim import destroy_site

        disaster_at = time.time()
        destroy_site(self.dir / "sites/a")
        svc.forget_site_handles("site-a")
        self.say("[red]✘ site-a's cloud destroyed[/red] (servers, volumes, networks gone)")
        achieved_rpo = round(disaster_at - latest.created_at, 3)

        fo = svc.failover("shop", target="site-b")
        entry = self.phase("failover", fo)
        got = self.http(svc, "site-b", "db", path="/volumes")
        entry["application_data_matches"] = got == expected
        if got != expected:
            raise DemoFailed(
                "the recovered database does not hold the data it held before the disaster"
            )

        before = len(svc.driver("site-b").list_resources())
        dr = svc.drill("shop", target="site-b", checkpoint_id=latest.id)
        after = len(svc.driver("site-b").list_resources())
        self.phase(
            "drill",
            dr,
            residue=int(dr.result.get("residue", -1)),
            resources_before=before,
            resources_after=after,
        )
        if dr.result.get("residue", -1) != 0 or before != after:
            raise DemoFailed(
                f"the drill left residue: {dr.result.get('residue')} ({before} → {after})"
            )

        # site A comes back as an empty cloud; its repository survived.
        svc.forget_site_handles("site-a")
        svc.driver("site-a").ping()
        self.change_data(svc, "site-b", seed=11, writes=8)
        expected = self.http(svc, "site-b", "db", path="/volumes")
        rp = svc.reprotect("shop")
        self.phase("reprotect", rp)
        self.checkpoints.append(dict(rp.result["checkpoint"]))

        fb = svc.failback("shop")
        entry = self.phase("failback", fb)
        self.checkpoints.append(dict(fb.result["checkpoint"]))
        got = self.http(svc, "site-a", "db", path="/volumes")
        entry["application_data_matches"] = got == expected
        if got != expected:
            raise DemoFailed("after failback the database does not hold the data written at site-b")

        report = {
            "ok": True,
            "workdir": str(self.dir),
            "total_seconds": round(time.monotonic() - t0, 1),
            "achieved_rpo_seconds": achieved_rpo,
            "checkpoints": self.checkpoints,
            "phases": self.phases,
            "workload": dump(svc.get_workload("shop")),
        }
        return report

    def table(self, report: dict[str, Any]) -> None:
        if not self.console:
            return
        t = Table(title="seawall demo — summary")
        for col in ("phase", "state", "verified", "RTO", "read", "stored", "sent", "took"):
            t.add_column(col, no_wrap=True)
        for name, p in report["phases"].items():
            cp = p.get("checkpoint", {})
            t.add_row(
                name,
                p["state"],
                "yes" if p["verified"] else "NO",
                f"{p['rto_seconds']:.1f}s" if p.get("rto_seconds") is not None else "-",
                format_bytes(cp.get("bytes_read", 0)) if cp else "-",
                format_bytes(cp.get("bytes_stored", 0)) if cp else "-",
                format_bytes(p.get("bytes_sent", 0)),
                f"{p['duration_seconds']:.1f}s" if p.get("duration_seconds") is not None else "-",
            )
        wide = Console(
            file=self.console.file,
            width=max(self.console.width, 110),
            force_terminal=self.console.is_terminal,
        )
        wide.print(t)
        self.console.print(
            f"achieved RPO at the disaster: {report['achieved_rpo_seconds']:.1f}s; "
            f"drill residue: {report['phases'].get('drill', {}).get('residue')}; "
            f"total {report['total_seconds']}s; report: {self.dir / 'report.json'}"
        )


def _shop_plan(target: str) -> dict[str, Any]:
    """The shop's recovery plan at ``target``: the same boot order and health checks
    whichever way it moves (site-b for the failover and drill, site-a for the failback)."""
    return {
        "workload": "shop",
        "target": target,
        "boot_groups": [
            dump(BootGroup("data", ("db",))),
            dump(BootGroup("app", ("app-1", "app-2"))),
            dump(BootGroup("web", ("web",))),
        ],
        "health_checks": [
            dump(HealthCheck(n, CheckKind.HTTP, port=p, path="/health", timeout_seconds=30))
            for n, p in (("db", 5432), ("app-1", 8080), ("app-2", 8080), ("web", 8000))
        ],
    }


class DemoFailed(Exception):
    pass


def _mac(index: int, ip: str) -> str:
    return f"fa:16:3e:00:{index:02x}:{int(ip.split('.')[-1]):02x}"


def _server_ref(server_id: str) -> Any:
    from seawall.model import ResourceRef

    return ResourceRef(K.SERVER, server_id)


def run_demo(workdir: Path, *, console: Console | None, keep: bool = False) -> dict[str, Any]:
    demo = Demo(workdir, console)
    try:
        report = demo.run()
    except (DemoFailed, Exception) as exc:  # the report says what failed, always
        report = {
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}",
            "phases": demo.phases,
            "checkpoints": demo.checkpoints,
            "workdir": str(demo.dir),
        }
        if console:
            console.print(f"[red]demo failed:[/] {exc}")
    finally:
        if demo.svc is not None and not keep:
            for site in ("site-a", "site-b"):
                with contextlib.suppress(Exception):  # a destroyed site has nothing to stop
                    demo.svc.driver(site).stop_all()  # type: ignore[attr-defined]
    demo.dir.mkdir(parents=True, exist_ok=True)
    (demo.dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    if report["ok"]:
        demo.table(report)
    if demo.svc is not None:
        demo.svc.close()
    return report
