"""The operations: ``protect``, ``failover``, ``migrate``, ``drill``, ``reprotect``,
``failback``, and how a run's progress is shown while it runs.

Locally the service runs the operation in this process and :class:`Watcher` shows its
steps live on a terminal; with ``--url`` the server starts it and :func:`follow_remote`
polls it to the end. Either way the run ends in :func:`report_run`: its figures, then
exit 0 only if it succeeded (:data:`~seawall.cli.output.RUN_FAILED`,
:data:`~seawall.cli.output.RUN_PARTIAL` otherwise).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from seawall.cli.context import Ctx, pass_ctx
from seawall.cli.output import RUN_FAILED, RUN_PARTIAL, console, emit, out
from seawall.errors import SeawallError
from seawall.fidelity import Difference
from seawall.model import Run, RunState, Step, dump, load

if TYPE_CHECKING:
    from seawall.cli.remote import Remote

GLYPH = {
    "pending": "·",
    "running": "▶",
    "done": "✔",
    "failed": "✘",
    "skipped": "-",
    "reverting": "↺",
    "reverted": "↩",
}

#: The run states in which a run still changes (the live table keeps refreshing).
ACTIVE = (RunState.RUNNING, RunState.PENDING, RunState.CANCELLING, RunState.REVERTING)

#: The figures of ``run.result`` a human report shows, in this order.
FIGURES = (
    "rto_seconds",
    "verified",
    "volumes_verified",
    "checks_passed",
    "residue",
    "duration_seconds",
    "data_loss_window_seconds",
    "checkpoint",
)


def steps_table(run: Run, steps: list[Step], *, only_active: bool = False) -> Table:
    """A run's steps as a table; ``only_active`` keeps a long run's live view short."""
    table = Table(title=f"{run.kind.value} {run.workload} — {run.state.value}", expand=False)
    table.add_column("step")
    table.add_column("state")
    table.add_column("progress", justify="right")
    table.add_column("detail", overflow="fold", max_width=60)
    if only_active and len(steps) > 14:
        active = [s for s in steps if s.state.value in ("running", "failed", "reverting")]
        table.caption = f"{len(steps)} steps so far"
        steps = (active or steps[-3:])[-10:]
    for s in steps:
        bar = "█" * int(s.progress * 10) + "░" * (10 - int(s.progress * 10))
        table.add_row(
            s.name, f"{GLYPH.get(s.state.value, '?')} {s.state.value}", bar, s.detail[:120]
        )
    return table


class Watcher:
    """Shows a run's steps live while the service runs it in this process."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __call__(self, run_id: str) -> None:
        if self.ctx.as_json or not console.is_terminal:
            console.print(f"run {run_id} started")
            return
        t = threading.Thread(target=self._show, args=(run_id,), daemon=True)
        self._threads.append(t)
        t.start()

    def _show(self, run_id: str) -> None:
        service = self.ctx.service
        with Live(console=console, refresh_per_second=4, transient=True) as live:
            while not self._stop.is_set():
                try:
                    run = service.get_run(run_id)
                    live.update(steps_table(run, service.steps(run_id), only_active=True))
                    if run.state not in ACTIVE:
                        return
                except SeawallError:
                    pass
                time.sleep(0.25)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)


@contextmanager
def watching(ctx: Ctx) -> Iterator[None]:
    """Show every run the service starts inside the block (:class:`Watcher`)."""
    watcher = Watcher(ctx)
    ctx.service.on_run_started(watcher)
    try:
        yield
    finally:
        watcher.stop()


def report_run(ctx: Ctx, run: Run, steps: list[Step]) -> None:
    """Print a finished run; exit non-zero unless it succeeded."""
    data = dump(run)
    data["steps"] = [dump(s) for s in steps]

    def human() -> None:
        colour = {"succeeded": "green", "partially_failed": "yellow"}.get(run.state.value, "red")
        out.print(
            f"[bold]{run.kind.value}[/bold] {run.workload}: "
            f"[{colour}]{run.state.value}[/]  (run {run.id})"
        )
        for k in FIGURES:
            if k in run.result:
                out.print(f"  {k}: {run.result[k]}")
        fidelity = run.result.get("fidelity")
        if isinstance(fidelity, dict):
            differences = list(fidelity.get("differences", ()))
            out.print(
                f"  fidelity: {fidelity.get('checked', 0)} resource(s) checked, "
                f"{len(differences)} unexplained difference(s)"
            )
            for d in differences:
                out.print(
                    f"    [yellow]{escape(str(load(Difference, d)))}[/]",
                    highlight=False,
                    soft_wrap=True,
                )
        if run.error:
            out.print(f"  [red]{run.error}[/]")

    emit(ctx.as_json, data, human)
    if run.state is RunState.PARTIALLY_FAILED:
        raise SystemExit(RUN_PARTIAL)
    if run.state is not RunState.SUCCEEDED:
        raise SystemExit(RUN_FAILED)


def run_operation(
    ctx: Ctx, operation: str, workload: str, fn: Callable[[], Run], **options: str | None
) -> None:
    """Run an operation here (``fn``), or start it on the server and follow it there."""
    if ctx.remote is not None:
        started = ctx.remote.start(operation, workload, **options)
        report_run(ctx, *follow_remote(ctx, ctx.remote, started))
        return
    ctx.service.resume_unfinished()
    with watching(ctx):
        run = fn()
    report_run(ctx, run, ctx.service.steps(run.id))


def follow_remote(ctx: Ctx, remote: Remote, run: Run) -> tuple[Run, list[Step]]:
    """Wait for a run on the server, showing its steps as :class:`Watcher` does here."""
    try:
        if ctx.as_json or not console.is_terminal:
            console.print(f"run {run.id} started")
            return remote.wait_for_run(run.id)
        with Live(console=console, refresh_per_second=4, transient=True) as live:
            return remote.wait_for_run(
                run.id, lambda r, steps: live.update(steps_table(r, steps, only_active=True))
            )
    except KeyboardInterrupt:
        console.print(
            f"run {run.id} goes on at {remote.url}; "
            f"`seawall --url {remote.url} run cancel {run.id}` stops it",
            highlight=False,
            soft_wrap=True,
        )
        raise


# -- the commands ----------------------------------------------------------------------


@click.command()
@click.argument("workload_name")
@pass_ctx
def protect(ctx: Ctx, workload_name: str) -> None:
    """Take a checkpoint now and replicate it to the workload's targets."""
    run_operation(ctx, "protect", workload_name, lambda: ctx.service.protect(workload_name))


@click.command()
@click.argument("workload_name")
@click.option("--checkpoint", "checkpoint_id", help="Default: the newest at the target.")
@click.option("--target")
@pass_ctx
def failover(ctx: Ctx, workload_name: str, checkpoint_id: str | None, target: str | None) -> None:
    """Recover at the target site (unplanned: the primary is lost)."""
    run_operation(
        ctx,
        "failover",
        workload_name,
        lambda: ctx.service.failover(workload_name, checkpoint_id=checkpoint_id, target=target),
        checkpoint_id=checkpoint_id,
        target=target,
    )


@click.command()
@click.argument("workload_name")
@click.option("--target")
@pass_ctx
def migrate(ctx: Ctx, workload_name: str, target: str | None) -> None:
    """Planned migration: fence, final checkpoint, recover with zero data loss."""
    run_operation(
        ctx,
        "migrate",
        workload_name,
        lambda: ctx.service.migrate(workload_name, target=target),
        target=target,
    )


@click.command()
@click.argument("workload_name")
@click.option("--checkpoint", "checkpoint_id")
@click.option("--target")
@pass_ctx
def drill(ctx: Ctx, workload_name: str, checkpoint_id: str | None, target: str | None) -> None:
    """Test recovery in an isolated bubble, verify it, then remove every trace."""
    run_operation(
        ctx,
        "drill",
        workload_name,
        lambda: ctx.service.drill(workload_name, checkpoint_id=checkpoint_id, target=target),
        checkpoint_id=checkpoint_id,
        target=target,
    )


@click.command()
@click.argument("workload_name")
@pass_ctx
def reprotect(ctx: Ctx, workload_name: str) -> None:
    """After a failover: protect the recovered copy back towards the old primary."""
    run_operation(ctx, "reprotect", workload_name, lambda: ctx.service.reprotect(workload_name))


@click.command()
@click.argument("workload_name")
@pass_ctx
def failback(ctx: Ctx, workload_name: str) -> None:
    """After reprotect: planned migration back to the original site."""
    run_operation(ctx, "failback", workload_name, lambda: ctx.service.failback(workload_name))


#: Every operation command, as the root group adds them.
COMMANDS = (protect, failover, migrate, drill, reprotect, failback)
