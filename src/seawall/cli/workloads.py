"""``seawall workload ...``: the applications seawall protects."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click
from rich.table import Table

from seawall.cli.context import Ctx, pass_ctx
from seawall.cli.output import CommandGroup, emit, out
from seawall.errors import InvalidInput
from seawall.model import Selector, dump

if TYPE_CHECKING:  # the REST client (httpx) is imported only in client mode
    from seawall.cli.remote import Remote


@click.group("workload", cls=CommandGroup)
def workload_group() -> None:
    """Protected applications."""


@workload_group.command("create")
@click.argument("name")
@click.option("--site", required=True, help="Site the workload runs on.")
@click.option("--select", "select", help="Selector: tag:key=value, project, or members:a,b.")
@click.option("--member", "members", multiple=True, help="A server name or id (repeatable).")
@click.option("--policy", "policy_", required=True, help="Policy name (gold, silver, bronze...).")
@click.option("--target", "targets", multiple=True, help="Recovery site (repeatable).")
@click.option("--project", default="default")
@pass_ctx
def workload_create(
    ctx: Ctx,
    name: str,
    site: str,
    select: str | None,
    members: tuple[str, ...],
    policy_: str,
    targets: tuple[str, ...],
    project: str,
) -> None:
    """Mark a workload for protection."""
    if bool(select) == bool(members):
        raise InvalidInput("give either --select or one or more --member", field="selector")
    selector = Selector.parse(select) if select else Selector(members=members)
    w = ctx.service.create_workload(name, site, selector, policy_, targets, project)
    emit(ctx.as_json, dump(w), lambda: out.print(f"workload {w.name} created on {w.site}"))


@workload_group.command("list")
@pass_ctx
def workload_list(ctx: Ctx) -> None:
    """List workloads with their newest checkpoint and achieved RPO."""
    if ctx.remote:
        from seawall.cli.remote import workload_row

        rows = [workload_row(w) for w in ctx.remote.workloads()]
    else:
        rows = [
            {**dump(w), "achieved_rpo_seconds": ctx.service.achieved_rpo(w.name)}
            for w in ctx.service.list_workloads()
        ]

    def human() -> None:
        t = Table("name", "site", "targets", "policy", "achieved RPO")
        for r in rows:
            rpo = r["achieved_rpo_seconds"]
            t.add_row(
                r["name"],
                r["site"],
                ",".join(r["targets"]),
                r["policy"],
                "-" if rpo is None else f"{rpo:.0f}s",
            )
        out.print(t)

    emit(ctx.as_json, rows, human)


@workload_group.command("show")
@click.argument("name")
@pass_ctx
def workload_show(ctx: Ctx, name: str) -> None:
    """Show a workload and its resolved resource graph."""
    if ctx.remote:
        _show_remote(ctx, ctx.remote, name)
        return
    w = ctx.service.get_workload(name)
    graph = ctx.service.resolve(w)
    data = {
        **dump(w),
        "graph": dump(graph),
        "restore_order": [f"{r.kind.value}/{r.name}" for r in graph.restore_order()],
    }

    def human() -> None:
        out.print(
            f"[bold]{w.name}[/bold] on {w.site} → {', '.join(w.targets) or '-'} (policy {w.policy})"
        )
        t = Table("kind", "name", "id", "depends on")
        for r in graph.restore_order():
            deps = ", ".join(
                f"{d.kind.value}/{graph.get(d).name}" if graph.find(d) else str(d)
                for d in r.depends_on
            )
            t.add_row(r.kind.value, r.name, r.id[:12], deps)
        out.print(t)

    emit(ctx.as_json, data, human)


def _show_remote(ctx: Ctx, remote: Remote, name: str) -> None:
    """A server does not resolve graphs on request: the workload and its RPO status."""
    data = remote.workload(name)

    def human() -> None:
        out.print(
            f"[bold]{data['name']}[/bold] on {data['site']} → "
            f"{', '.join(data['targets']) or '-'} (policy {data['policy']})"
        )
        rpo = data.get("rpo")
        if rpo:
            achieved = rpo["achieved_rpo_seconds"]
            newest = rpo["newest_checkpoint_at"]
            t = Table("RPO", "achieved", "compliant", "recovery site", "newest checkpoint")
            t.add_row(
                "-" if rpo["rpo_seconds"] is None else f"{rpo['rpo_seconds']}s",
                "-" if achieved is None else f"{achieved:.0f}s",
                {True: "yes", False: "NO"}.get(rpo["compliant"], "-"),
                rpo["recovery_site"],
                "-" if newest is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(newest)),
            )
            out.print(t)
        out.print("(the resource graph is shown in local mode only)", style="dim")

    emit(ctx.as_json, data, human)
