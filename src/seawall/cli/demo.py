"""``seawall demo``: the whole story on two local sites (:mod:`seawall.demo`)."""

from __future__ import annotations

from pathlib import Path

import click

from seawall.cli.context import Ctx, pass_ctx
from seawall.cli.output import RUN_FAILED, console, emit


@click.command("demo")
@click.option(
    "--workdir", default="./seawall-demo", show_default=True, help="Where the demo's sites live."
)
@click.option("--keep", is_flag=True, help="Leave the demo's server processes running at the end.")
@pass_ctx
def demo_command(ctx: Ctx, workdir: str, keep: bool) -> None:
    """Two local sites, a three-tier app: protect, disaster, failover, drill, failback."""
    from seawall.demo import run_demo  # imports the service stack

    report = run_demo(Path(workdir), console=console if not ctx.as_json else None, keep=keep)
    if ctx.as_json:
        emit(True, report)
    if not report["ok"]:
        raise SystemExit(RUN_FAILED)
