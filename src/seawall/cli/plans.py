"""``seawall plan ...``: recovery plans and dry runs."""

from __future__ import annotations

import click

from seawall.cli.context import Ctx, pass_ctx, read_file
from seawall.cli.output import CommandGroup, emit, out
from seawall.model import dump

#: The operations a dry run can compile.
OPERATIONS = ("protect", "failover", "drill", "migrate", "reprotect", "failback")


@click.group("plan", cls=CommandGroup)
def plan_group() -> None:
    """Recovery plans and dry runs."""


@plan_group.command("set")
@click.option("--file", "file_", required=True, help="Recovery plan as YAML/JSON.")
@pass_ctx
def plan_set(ctx: Ctx, file_: str) -> None:
    """Set a workload's recovery plan for a target site."""
    p = ctx.service.set_plan(read_file(file_))
    emit(ctx.as_json, dump(p), lambda: out.print(f"plan for {p.workload} → {p.target} set"))


@plan_group.command("show")
@click.argument("workload_name")
@click.option("--operation", type=click.Choice(OPERATIONS), default="failover", show_default=True)
@click.option("--target")
@click.option("--checkpoint", "checkpoint_id")
@pass_ctx
def plan_show(
    ctx: Ctx, workload_name: str, operation: str, target: str | None, checkpoint_id: str | None
) -> None:
    """The compiled steps of an operation (a dry run: nothing is created)."""
    fp = ctx.service.plan_operation(
        operation, workload_name, target=target, checkpoint_id=checkpoint_id
    )

    def human() -> None:
        out.print(f"[bold]{fp.title}[/bold]")
        for stage in fp.stages:
            out.print(f"  {stage.name} ({'parallel' if stage.parallel else 'in order'})")
            for s in stage.steps:
                out.print(f"    {s.name}")
        out.print(f"{len(fp.steps())} steps")

    emit(ctx.as_json, fp.to_dict(), human)
