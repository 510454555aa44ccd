"""``seawall policy ...``: protection policies (gold, silver and bronze are built in)."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from seawall.cli.context import Ctx, parse_duration, pass_ctx, read_file
from seawall.cli.output import CommandGroup, emit, out
from seawall.model import dump
from seawall.units import parse_rate


@click.group("policy", cls=CommandGroup)
def policy_group() -> None:
    """Protection policies (gold, silver and bronze are built in)."""


@policy_group.command("create")
@click.argument("name", required=False)
@click.option("--file", "file_", help="Policy as YAML/JSON.")
@click.option("--rpo", help="Recovery point objective, e.g. 15m.")
@click.option("--rto", help="Recovery time objective, e.g. 1h.")
@click.option("--consistency", type=click.Choice(["crash", "application"]))
@click.option("--target", "targets", multiple=True, help="Site receiving every checkpoint.")
@click.option("--keep-last", type=int)
@click.option("--keep-daily", type=int)
@click.option("--limit-rate", help="Replication bandwidth limit, e.g. 50MiB/s or 50M.")
@pass_ctx
def policy_create(
    ctx: Ctx,
    name: str | None,
    file_: str | None,
    rpo: str | None,
    rto: str | None,
    consistency: str | None,
    targets: tuple[str, ...],
    keep_last: int | None,
    keep_daily: int | None,
    limit_rate: str | None,
) -> None:
    """Create a policy from a file or options."""
    data: dict[str, Any] = read_file(file_) if file_ else {}
    if name:
        data["name"] = name
    if rpo:
        data["rpo_seconds"] = parse_duration(rpo, "--rpo")
    if rto:
        data["rto_target_seconds"] = parse_duration(rto, "--rto")
    if consistency:
        data["consistency"] = consistency
    if targets:
        data["targets"] = list(targets)
    if keep_last is not None or keep_daily is not None:
        r = dict(data.get("retention", {}))
        if keep_last is not None:
            r["last"] = keep_last
        if keep_daily is not None:
            r["daily"] = keep_daily
        data["retention"] = r
    if limit_rate:
        data["bandwidth"] = {"bytes_per_second": parse_rate(limit_rate, field="--limit-rate")}
    p = ctx.service.create_policy(data)
    emit(ctx.as_json, dump(p), lambda: out.print(f"policy {p.name} created"))


@policy_group.command("list")
@pass_ctx
def policy_list(ctx: Ctx) -> None:
    """List policies."""
    items = ctx.remote.policies() if ctx.remote else [dump(p) for p in ctx.service.list_policies()]

    def human() -> None:
        t = Table("name", "rpo", "rto", "consistency", "retention")
        for p in items:
            r = p["retention"]
            t.add_row(
                p["name"],
                f"{p['rpo_seconds']}s",
                f"{p['rto_target_seconds']}s",
                p["consistency"],
                f"last={r['last']} h={r['hourly']} d={r['daily']} w={r['weekly']} m={r['monthly']}",
            )
        out.print(t)

    emit(ctx.as_json, items, human)


@policy_group.command("show")
@click.argument("name")
@pass_ctx
def policy_show(ctx: Ctx, name: str) -> None:
    """Show one policy."""
    emit(ctx.as_json, dump(ctx.service.get_policy(name)))
