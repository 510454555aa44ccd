"""``seawall run ...``: runs of operations and their steps."""

from __future__ import annotations

import time

import click
from rich.table import Table

from seawall.cli.context import Ctx, pass_ctx
from seawall.cli.operations import steps_table, watching
from seawall.cli.output import CommandGroup, emit, out
from seawall.model import dump


@click.group("run", cls=CommandGroup)
def run_group() -> None:
    """Runs of operations and their steps."""


@run_group.command("list")
@click.option("--workload", "workload_name")
@pass_ctx
def run_list(ctx: Ctx, workload_name: str | None) -> None:
    """List runs, newest first."""
    runs = ctx.remote.runs(workload_name) if ctx.remote else ctx.service.list_runs(workload_name)

    def human() -> None:
        t = Table("id", "kind", "workload", "state", "started", "error")
        for r in runs:
            t.add_row(
                r.id,
                r.kind.value,
                r.workload,
                r.state.value,
                time.strftime("%H:%M:%S", time.gmtime(r.created_at)),
                r.error[:60],
            )
        out.print(t)

    emit(ctx.as_json, [dump(r) for r in runs], human)


@run_group.command("show")
@click.argument("run_id")
@pass_ctx
def run_show(ctx: Ctx, run_id: str) -> None:
    """Show a run with its steps."""
    if ctx.remote:
        r, steps = ctx.remote.run(run_id)
    else:
        r, steps = ctx.service.get_run(run_id), ctx.service.steps(run_id)
    data = {**dump(r), "steps": [dump(s) for s in steps]}
    emit(ctx.as_json, data, lambda: out.print(steps_table(r, steps)))


@run_group.command("cancel")
@click.argument("run_id")
@pass_ctx
def run_cancel(ctx: Ctx, run_id: str) -> None:
    """Cancel a run; it stops at the next step boundary and reverts."""
    r = ctx.remote.cancel(run_id) if ctx.remote else ctx.service.cancel(run_id)
    emit(ctx.as_json, dump(r), lambda: out.print(f"run {run_id}: {r.state.value}"))


@run_group.command("resume")
@pass_ctx
def run_resume(ctx: Ctx) -> None:
    """Resume or revert every run whose process died (also done at every start)."""
    with watching(ctx):
        runs = ctx.service.resume_unfinished()
    emit(
        ctx.as_json,
        [dump(r) for r in runs],
        lambda: out.print(
            "\n".join(f"{r.id}: {r.state.value}" for r in runs) or "nothing to resume"
        ),
    )
