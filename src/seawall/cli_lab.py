"""``seawall lab up|down|status``: the real two-site OpenStack lab (see :mod:`seawall.lab`).

One module-level click group, :data:`lab_group`, which the root ``seawall`` command adds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from seawall import lab
from seawall.errors import SeawallError


def _sites(site: str | None) -> list[str]:
    return [site] if site else list(lab.SITES)


site_option = click.option(
    "--site", type=click.Choice(lab.SITES), help="One site (default: both, a then b)."
)
root_option = click.option(
    "--root",
    type=click.Path(path_type=Path),
    default=Path("/opt/seawall-lab"),  # not lab.DEFAULT_ROOT: help must not show the env
    show_default=True,
    envvar="SEAWALL_LAB_ROOT",
    help="Where the lab keeps its venv, data, logs and pid files.",
)


@click.group("lab", context_settings={"help_option_names": ["-h", "--help"]})
def lab_group() -> None:
    """A real, minimal OpenStack 2026.1 per site on this machine (127.0.0.1 only).

    Needs root, Debian 12 and about 2.5 GiB of memory per site. Site a's APIs are on the
    usual ports (Keystone 5000 ...), site b's on the same + 100.
    """


@lab_group.command("up")
@site_option
@root_option
@click.option("--skip-install", is_flag=True, help="Do not run apt-get or pip.")
@click.option("--no-rgw", is_flag=True, help="Do not start Ceph RGW (S3 and Swift).")
def up_cmd(site: str | None, root: Path, skip_install: bool, no_rgw: bool) -> None:
    """Install what is missing and start a site (idempotent: running services stay)."""
    try:
        for name in _sites(site):
            timings = lab.up(lab.LabSite(name, root), skip_install=skip_install, rgw=not no_rgw)
            shown = " ".join(f"{k}={v:.0f}s" for k, v in timings.items())
            click.echo(f"site {name}: up ({shown})")
            click.echo(f"  clouds.yaml: {lab.LabSite(name, root).clouds_yaml}")
    except SeawallError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@lab_group.command("down")
@site_option
@root_option
@click.option("--purge", is_flag=True, help="Also delete the site's data, config and logs.")
@click.argument("services", nargs=-1)
def down_cmd(site: str | None, root: Path, purge: bool, services: tuple[str, ...]) -> None:
    """Stop a site (or only SERVICES of it) by the process groups ``up`` recorded."""
    for name in reversed(_sites(site)):
        stopped = lab.down(lab.LabSite(name, root), services, purge=purge)
        click.echo(f"site {name}: stopped {len(stopped)} service(s)" + (" and purged" * purge))


@lab_group.command("status")
@site_option
@root_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_cmd(site: str | None, root: Path, as_json: bool) -> None:
    """Every service of a site: pid, processes, RSS and PSS of its group."""
    report = {}
    for name in _sites(site):
        report[name] = lab.status(lab.LabSite(name, root))
    if as_json:
        data = {n: [vars(s) for s in rows] for n, rows in report.items()}
        click.echo(json.dumps(data, indent=2))
        return
    mib = 1 << 20
    for name, rows in report.items():
        if not rows:
            click.echo(f"site {name}: nothing started")
            continue
        click.echo(f"site {name}")
        click.echo(f"  {'SERVICE':26} {'PID':>8} {'PROCS':>5} {'RSS MiB':>8} {'PSS MiB':>8}")
        for s in rows:
            pid = str(s.pid) if s.pid else "DEAD"
            click.echo(
                f"  {s.name:26} {pid:>8} {s.processes:>5} {s.rss / mib:8.1f} {s.pss / mib:8.1f}"
            )
        rss, pss = sum(s.rss for s in rows), sum(s.pss for s in rows)
        click.echo(f"  {'TOTAL':26} {'':>8} {'':>5} {rss / mib:8.1f} {pss / mib:8.1f}")
