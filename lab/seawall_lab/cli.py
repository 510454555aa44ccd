"""``seawall-lab up|down|status|env`` (also ``python -m seawall_lab``): the two-site lab.

Errors are printed as ``seawall-lab: error: ...`` with exit status 1; ``lab/openstack/ci.sh``
retries a failed ``up`` once, as ``up`` continues from what already runs.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from seawall_lab.layout import SITES, LabError, LabSite
from seawall_lab.lifecycle import down, status, up


def _sites(site: str | None) -> list[str]:
    return [site] if site else list(SITES)


site_option = click.option(
    "--site", type=click.Choice(SITES), help="One site (default: both, a then b)."
)
root_option = click.option(
    "--root",
    type=click.Path(path_type=Path),
    default=Path("/opt/seawall-lab"),  # not layout.DEFAULT_ROOT: help must not show the env
    show_default=True,
    envvar="SEAWALL_LAB_ROOT",
    help="Where the lab keeps its venv, data, logs and pid files.",
)


@click.group("seawall-lab", context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """A real, minimal OpenStack 2026.1 per site on this machine (127.0.0.1 only).

    Needs root, Debian 12 and about 2.5 GiB of memory per site. Site a's APIs are on the
    usual ports (Keystone 5000 ...), site b's on the same + 100.
    """


@main.command("up")
@site_option
@root_option
@click.option("--skip-install", is_flag=True, help="Do not run apt-get or pip.")
@click.option("--no-rgw", is_flag=True, help="Do not start Ceph RGW (S3 and Swift).")
def up_cmd(site: str | None, root: Path, skip_install: bool, no_rgw: bool) -> None:
    """Install what is missing and start a site (idempotent: running services stay)."""
    try:
        for name in _sites(site):
            timings = up(LabSite(name, root), skip_install=skip_install, rgw=not no_rgw)
            shown = " ".join(f"{k}={v:.0f}s" for k, v in timings.items())
            click.echo(f"site {name}: up ({shown})")
            click.echo(f"  clouds.yaml: {LabSite(name, root).clouds_yaml}")
    except LabError as exc:
        click.echo(f"seawall-lab: error: {exc}", err=True)
        sys.exit(1)


@main.command("down")
@site_option
@root_option
@click.option("--purge", is_flag=True, help="Also delete the site's data, config and logs.")
@click.argument("services", nargs=-1)
def down_cmd(site: str | None, root: Path, purge: bool, services: tuple[str, ...]) -> None:
    """Stop a site (or only SERVICES of it) by the process groups ``up`` recorded."""
    for name in reversed(_sites(site)):
        stopped = down(LabSite(name, root), services, purge=purge)
        click.echo(f"site {name}: stopped {len(stopped)} service(s)" + (" and purged" * purge))


@main.command("status")
@site_option
@root_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_cmd(site: str | None, root: Path, as_json: bool) -> None:
    """Every service of a site: pid, processes, RSS and PSS of its group."""
    report = {name: status(LabSite(name, root)) for name in _sites(site)}
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


@main.command("env")
@click.option("--site", type=click.Choice(SITES), default="a", show_default=True,
              help="The site the tests' single-site lab tests use.")  # fmt: skip
@root_option
def env_cmd(site: str, root: Path) -> None:
    """Print the exports that point the lab tier's tests at a site.

    Use as ``eval "$(seawall-lab env)"``: the names and paths are the ones ``up`` writes,
    so a test run and the lab cannot disagree.
    """
    for key, value in LabSite(site, root).test_env().items():
        click.echo(f"export {key}={shlex.quote(value)}")
