"""``seawall checkpoint ...``: recovery points, from the state database or a repository."""

from __future__ import annotations

import json
import time
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from seawall.cli.context import Ctx, pass_ctx
from seawall.cli.output import CommandGroup, emit, out
from seawall.errors import CorruptObject, InvalidInput
from seawall.model import Checkpoint, dump
from seawall.units import format_bytes


@click.group("checkpoint", cls=CommandGroup)
def checkpoint_group() -> None:
    """Recovery points."""


@checkpoint_group.command("list")
@click.option("--workload", "workload_name")
@click.option("--site", "site_name", help="Read the site's repository (works without the DB).")
@pass_ctx
def checkpoint_list(ctx: Ctx, workload_name: str | None, site_name: str | None) -> None:
    """List checkpoints, newest first."""
    if ctx.remote:
        if site_name:
            raise InvalidInput(
                "reads the site's repository from this machine; it is local-only "
                "(run without --url, or leave out --site)",
                field="--site",
            )
        _table(ctx, ctx.remote.checkpoint_rows(workload_name))
        return
    cps = (
        ctx.service.catalogue(site_name, workload_name)
        if site_name
        else ctx.service.list_checkpoints(workload_name)
    )
    _table(ctx, [_row(ctx, c) for c in cps])


def _row(ctx: Ctx, c: Checkpoint) -> dict[str, Any]:
    """A checkpoint as ``checkpoint list`` shows it (the same row as client mode's)."""
    return {
        "id": c.id,
        "workload": c.workload,
        "site": c.site,
        "created_at": c.created_at,
        "volumes": len(c.volumes),
        "consistency": c.consistency.value,
        "bytes_read": sum(v.bytes_read for v in c.volumes),
        "bytes_stored": sum(v.bytes_stored for v in c.volumes),
        "copies": ctx.service.db.checkpoint_sites(c.id),
    }


def _table(ctx: Ctx, rows: list[dict[str, Any]]) -> None:
    def human() -> None:
        t = Table("id", "workload", "created", "volumes", "consistency", "read", "stored", "copies")
        for r in rows:
            t.add_row(
                r["id"],
                r["workload"],
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["created_at"])),
                str(r["volumes"]),
                r["consistency"],
                format_bytes(r["bytes_read"]),
                format_bytes(r["bytes_stored"]),
                ",".join(r["copies"]),
            )
        out.print(t)

    emit(ctx.as_json, rows, human)


@checkpoint_group.command("show")
@click.argument("checkpoint_id")
@pass_ctx
def checkpoint_show(ctx: Ctx, checkpoint_id: str) -> None:
    """Show a checkpoint: graph, volumes, diff against its parent."""
    cp = ctx.service.get_checkpoint(checkpoint_id)
    emit(ctx.as_json, {**dump(cp), "copies": ctx.service.db.checkpoint_sites(cp.id)})


@checkpoint_group.command("diff")
@click.argument("older")
@click.argument("newer")
@pass_ctx
def checkpoint_diff(ctx: Ctx, older: str, newer: str) -> None:
    """Show the drift from checkpoint OLDER to NEWER.

    Both must be checkpoints of one workload. Prints the resources added (+) and
    removed (-), and every attribute that changed (~) with its value before and after;
    runtime state (a server's status) is not drift."""
    if ctx.remote:
        from seawall.cli.remote import q

        report = ctx.remote.request("GET", f"/v1/checkpoints/{q(older)}/diff/{q(newer)}")
    else:
        a, b, drift = ctx.service.diff_checkpoints(older, newer)
        report = {"workload": a.workload, "older": a.id, "newer": b.id, **drift.report()}
    show_drift(ctx, report, f"checkpoint {report['older']} -> {report['newer']}")


def show_drift(ctx: Ctx, report: dict[str, Any], title: str) -> None:
    """A drift report (``Drift.report()``): ``+`` added, ``-`` removed, ``~`` changed."""

    def human() -> None:
        out.print(f"[bold]{escape(title)}[/bold] ({report['workload']})", highlight=False)
        if not (report["added"] or report["removed"] or report["changed"]):
            out.print("  no changes")
        for name in report["added"]:
            out.print(f"  [green]+ {escape(name)}[/]", highlight=False)
        for name in report["removed"]:
            out.print(f"  [red]- {escape(name)}[/]", highlight=False)
        for c in report["changed"]:
            line = (
                f"~ {c['resource']}.{c['attribute']}: {_value(c['before'])} -> {_value(c['after'])}"
            )
            out.print(f"  [yellow]{escape(line)}[/]", highlight=False, soft_wrap=True)

    emit(ctx.as_json, report, human)


def _value(value: Any) -> str:
    return "(absent)" if value is None else json.dumps(value, sort_keys=True, default=str)


@checkpoint_group.command("verify")
@click.argument("checkpoint_id")
@click.option("--site", "site_name")
@pass_ctx
def checkpoint_verify(ctx: Ctx, checkpoint_id: str, site_name: str | None) -> None:
    """Read back and authenticate every byte of a checkpoint."""
    report = ctx.service.verify_checkpoint(checkpoint_id, site_name)

    def human() -> None:
        for s, r in report["sites"].items():
            out.print(f"{s}: {'[green]ok[/]' if r['ok'] else '[red]DAMAGED[/]'}")
            for v in r["volumes"]:
                out.print(
                    f"  {v['volume_id']}: {'ok' if v['ok'] else v['why']} "
                    f"({format_bytes(v['bytes'])})"
                )

    emit(ctx.as_json, report, human)
    if not report["ok"]:  # the report names the damage; the exit code says it is damage
        raise SystemExit(CorruptObject.exit_code)
