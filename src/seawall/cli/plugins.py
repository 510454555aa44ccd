"""``seawall plugins``: what the entry-point registry found installed."""

from __future__ import annotations

import click
from rich.table import Table

from seawall.cli.context import Ctx, pass_ctx
from seawall.cli.output import emit, out


@click.command("plugins")
@pass_ctx
def plugins_command(ctx: Ctx) -> None:
    """List installed plugins (storage backends, cloud drivers, quiesce agents)."""
    items = ctx.service.plugins()

    def human() -> None:
        t = Table("kind", "name", "target", "distribution")
        for p in items:
            t.add_row(p["kind"], p["name"], p["target"], p["distribution"])
        out.print(t)

    emit(ctx.as_json, items, human)
