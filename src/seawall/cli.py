"""The ``seawall`` command line.

Every command is a thin shell over :class:`seawall.service.Service`: parse, call, print.
Errors come back as :class:`~seawall.errors.SeawallError` subclasses and leave through
:func:`main` as one line on stderr and the class's exit code. ``--json`` prints machine
output; long operations show live step progress on a terminal.

With ``--url`` (or ``SEAWALL_URL``) the commands in :data:`REMOTE` run against a
running ``seawall serve`` through :class:`seawall.cli_remote.Remote` instead of the local
state directory, with the same output and exit codes; every other command is refused
there, before it does anything.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

# The repository commands first: ``seawall repo ...`` and ``seawall volume ...`` must not
# pay for importing the service stack (TaskFlow, SQLAlchemy: ~0.5 s per invocation).
from seawall.cli_repo import repo_group, volume_group  # isort: skip

import yaml
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from seawall import __version__
from seawall.errors import InvalidInput, SeawallError
from seawall.model import Run, RunState, Selector, Step, dump

if TYPE_CHECKING:
    from seawall.cli_remote import Remote
    from seawall.service import Service


def human_bytes(n: float) -> str:
    """:func:`seawall.demo.human_bytes`, imported when first used (seawall.demo imports
    the service stack)."""
    from seawall.demo import human_bytes as impl

    return impl(n)


console = Console(stderr=True)
out = Console()


#: The commands that also work against a server (``--url``); the rest need the state
#: directory and are refused with ``--url`` (:class:`Root`).
REMOTE = frozenset(
    {
        "site list",
        "policy list",
        "workload list",
        "workload show",
        "checkpoint list",
        "run list",
        "run show",
        "run cancel",
        "protect",
        "failover",
        "drill",
        "migrate",
        "reprotect",
        "failback",
    }
)


class Ctx:
    """What a command works on: the local :class:`Service`, or a server (``remote``)."""

    def __init__(self, home: str | None, as_json: bool, remote: Remote | None = None) -> None:
        self.home = home
        self.as_json = as_json
        self.remote = remote
        self._service: Service | None = None

    @property
    def service(self) -> Service:
        if self.remote is not None:  # Root refuses such commands first; a safety net
            raise InvalidInput("this command is local-only; run it without --url")
        if self._service is None:
            from seawall.service import Service

            self._service = Service(self.home)
        return self._service

    def close(self) -> None:
        if self._service is not None:
            self._service.close()
        if self.remote is not None:
            self.remote.close()


pass_ctx = click.make_pass_decorator(Ctx)


def emit(ctx: Ctx, data: Any, human: Callable[[], None] | None = None) -> None:
    if ctx.as_json or human is None:
        out.print_json(json.dumps(data, default=str))
    else:
        human()


def read_file(path: str) -> dict[str, Any]:
    """A YAML or JSON document that must be a mapping."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", field="file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise InvalidInput(f"{path} is not valid YAML/JSON: {problem}{at}", field="file") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{path} must hold a mapping at the top level", field="file")
    return data


def parse_duration(text: str, field: str = "duration") -> int:
    """``90``, ``90s``, ``15m``, ``4h``, ``1d`` -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip().lower()
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise InvalidInput(
            f"{text!r} is not a duration like 90s, 15m, 4h or 1d", field=field
        ) from None


# --------------------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------------------

GLYPH = {
    "pending": "·",
    "running": "▶",
    "done": "✔",
    "failed": "✘",
    "skipped": "-",
    "reverting": "↺",
    "reverted": "↩",
}


def steps_table(run: Run, steps: list[Step], *, only_active: bool = False) -> Table:
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
                    if run.state not in (
                        RunState.RUNNING,
                        RunState.PENDING,
                        RunState.CANCELLING,
                        RunState.REVERTING,
                    ):
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
    watcher = Watcher(ctx)
    ctx.service.on_run_started(watcher)
    try:
        yield
    finally:
        watcher.stop()


def report_run(ctx: Ctx, run: Run, steps: list[Step]) -> None:
    data = dump(run)
    data["steps"] = [dump(s) for s in steps]

    def human() -> None:
        colour = {"succeeded": "green", "partially_failed": "yellow"}.get(run.state.value, "red")
        out.print(
            f"[bold]{run.kind.value}[/bold] {run.workload}: "
            f"[{colour}]{run.state.value}[/]  (run {run.id})"
        )
        keys = (
            "rto_seconds",
            "verified",
            "residue",
            "duration_seconds",
            "data_loss_window_seconds",
        )
        figures = {k: run.result[k] for k in keys if k in run.result}
        if "checkpoint" in run.result:
            figures["checkpoint"] = run.result["checkpoint"]
        for k, v in figures.items():
            out.print(f"  {k}: {v}")
        if run.error:
            out.print(f"  [red]{run.error}[/]")

    emit(ctx, data, human)
    if run.state not in (RunState.SUCCEEDED,):
        raise SystemExit(1 if run.state is not RunState.PARTIALLY_FAILED else 3)


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


# --------------------------------------------------------------------------------------
# root
# --------------------------------------------------------------------------------------


class Root(click.Group):
    """The ``seawall`` group: with ``--url``, a command outside :data:`REMOTE` is refused
    before anything runs (one line, exit 2)."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, cmd, rest = super().resolve_command(ctx, args)
        if ctx.params.get("url") and cmd is not None and not {"-h", "--help"} & set(rest):
            words, leaf = [name or cmd.name or ""], cmd
            for arg in rest:  # down to the leaf: `repo init`, `site add`
                if not isinstance(leaf, click.Group) or (sub := leaf.get_command(ctx, arg)) is None:
                    break
                words.append(arg)
                leaf = sub
            path = " ".join(words)
            if not isinstance(leaf, click.Group) and path not in REMOTE:
                raise InvalidInput(
                    f"`seawall {path}` is local-only: it works on this machine's state "
                    "directory, not through a seawall server; run it without --url "
                    "(and SEAWALL_URL)"
                )
        return name, cmd, rest


@click.group(cls=Root, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", envvar="SEAWALL_HOME", help="State directory (default ~/.seawall).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--url",
    envvar="SEAWALL_URL",
    help="Client mode: run the command on the seawall server at this URL (`seawall serve`) "
    "instead of the local state directory.",
)
@click.option(
    "--token",
    envvar="SEAWALL_TOKEN",
    help="API token for --url (local or Keystone). Default: $SEAWALL_TOKEN, else $OS_AUTH_TOKEN.",
)
@click.version_option(__version__, prog_name="seawall")
@click.pass_context
def cli(
    click_ctx: click.Context, home: str | None, as_json: bool, url: str | None, token: str | None
) -> None:
    """seawall — disaster recovery for OpenStack workloads."""
    remote = None
    if url:
        from seawall.cli_remote import Remote

        os_token = None if token else os.environ.get("OS_AUTH_TOKEN")
        remote = Remote(url, token=token, auth_token=os_token)
    ctx = Ctx(home, as_json, remote)
    click_ctx.obj = ctx
    click_ctx.call_on_close(ctx.close)


# -- sites -----------------------------------------------------------------------------


@cli.group()
def site() -> None:
    """Clouds seawall protects and recovers into."""


@site.command("add")
@click.argument("name", required=False)
@click.option("--driver", help="Cloud driver: sim or openstack.")
@click.option("--param", "params", multiple=True, help="Driver parameter KEY=VALUE (repeatable).")
@click.option(
    "--repository", default="", help="Repository URL at this site (path, file://, s3://)."
)
@click.option("--init-repository", is_flag=True, help="Create the repository if it does not exist.")
@click.option(
    "--key-from", help="Share the repository key of another site (needed for replication)."
)
@click.option("--file", "file_", help="Site definition as YAML/JSON instead of options.")
@pass_ctx
def site_add(
    ctx: Ctx,
    name: str | None,
    driver: str | None,
    params: tuple[str, ...],
    repository: str,
    init_repository: bool,
    key_from: str | None,
    file_: str | None,
) -> None:
    """Register a site (its driver must answer)."""
    data: dict[str, Any] = read_file(file_) if file_ else {}
    unknown = sorted(set(data) - {"name", "driver", "params", "repository"})
    if unknown:
        raise InvalidInput(
            f"unknown field(s) {', '.join(map(repr, unknown))}; "
            "allowed: driver, name, params, repository",
            field="site",
        )
    if not isinstance(data.get("params", {}), dict):
        raise InvalidInput(f"expected a mapping, got {data['params']!r}", field="site.params")
    pairs = {}
    for p in params:
        if "=" not in p:
            raise InvalidInput(f"expected KEY=VALUE, got {p!r}", field="--param")
        k, v = p.split("=", 1)
        pairs[k] = v
    name = name or data.get("name")
    driver = driver or data.get("driver")
    if not name:
        raise InvalidInput("is required", field="site.name")
    if not driver:
        raise InvalidInput("is required", field="site.driver")
    s = ctx.service.add_site(
        name,
        driver,
        {**data.get("params", {}), **pairs},
        repository or data.get("repository", ""),
        init_repository=init_repository,
        key_from=key_from,
    )
    emit(ctx, dump(s), lambda: out.print(f"site {s.name} added ({s.driver})"))


@site.command("list")
@pass_ctx
def site_list(ctx: Ctx) -> None:
    """List sites."""
    # a server does not disclose a site's parameters or repository
    sites = ctx.remote.sites() if ctx.remote else [dump(s) for s in ctx.service.list_sites()]
    columns = ("name", "driver") if ctx.remote else ("name", "driver", "repository")

    def human() -> None:
        t = Table(*columns)
        for s in sites:
            t.add_row(*(s[c] for c in columns))
        out.print(t)

    emit(ctx, sites, human)


@site.command("remove")
@click.argument("name")
@pass_ctx
def site_remove(ctx: Ctx, name: str) -> None:
    """Forget a site (its cloud and repository are not touched)."""
    ctx.service.remove_site(name)
    emit(ctx, {"removed": name}, lambda: out.print(f"site {name} removed"))


# -- policies --------------------------------------------------------------------------


@cli.group()
def policy() -> None:
    """Protection policies (gold, silver and bronze are built in)."""


@policy.command("create")
@click.argument("name", required=False)
@click.option("--file", "file_", help="Policy as YAML/JSON.")
@click.option("--rpo", help="Recovery point objective, e.g. 15m.")
@click.option("--rto", help="Recovery time objective, e.g. 1h.")
@click.option("--consistency", type=click.Choice(["crash", "application"]))
@click.option("--target", "targets", multiple=True, help="Site receiving every checkpoint.")
@click.option("--keep-last", type=int)
@click.option("--keep-daily", type=int)
@click.option("--limit-rate", help="Replication bandwidth limit, e.g. 50MiB/s.")
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
        data["bandwidth"] = {"bytes_per_second": parse_rate(limit_rate)}
    p = ctx.service.create_policy(data)
    emit(ctx, dump(p), lambda: out.print(f"policy {p.name} created"))


def parse_rate(text: str) -> int:
    """``50MiB/s``, ``10MB/s``, ``1048576`` -> bytes per second."""
    t = text.strip().removesuffix("/s")
    units = {
        "KiB": 1024,
        "MiB": 1024**2,
        "GiB": 1024**3,
        "KB": 1000,
        "MB": 1000**2,
        "GB": 1000**3,
        "B": 1,
    }
    for u, mult in units.items():
        if t.endswith(u):
            try:
                return int(float(t[: -len(u)]) * mult)
            except ValueError:
                break
    try:
        return int(t)
    except ValueError:
        raise InvalidInput(f"{text!r} is not a rate like 50MiB/s", field="--limit-rate") from None


@policy.command("list")
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

    emit(ctx, items, human)


@policy.command("show")
@click.argument("name")
@pass_ctx
def policy_show(ctx: Ctx, name: str) -> None:
    """Show one policy."""
    emit(ctx, dump(ctx.service.get_policy(name)))


# -- workloads -------------------------------------------------------------------------


@cli.group()
def workload() -> None:
    """Protected applications."""


@workload.command("create")
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
    emit(ctx, dump(w), lambda: out.print(f"workload {w.name} created on {w.site}"))


@workload.command("list")
@pass_ctx
def workload_list(ctx: Ctx) -> None:
    """List workloads with their newest checkpoint and achieved RPO."""
    if ctx.remote:
        from seawall.cli_remote import workload_row

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

    emit(ctx, rows, human)


@workload.command("show")
@click.argument("name")
@pass_ctx
def workload_show(ctx: Ctx, name: str) -> None:
    """Show a workload and its resolved resource graph."""
    if ctx.remote:
        workload_show_remote(ctx, ctx.remote, name)
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

    emit(ctx, data, human)


def workload_show_remote(ctx: Ctx, remote: Remote, name: str) -> None:
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

    emit(ctx, data, human)


# -- plans -----------------------------------------------------------------------------


@cli.group()
def plan() -> None:
    """Recovery plans and dry runs."""


@plan.command("set")
@click.option("--file", "file_", required=True, help="Recovery plan as YAML/JSON.")
@pass_ctx
def plan_set(ctx: Ctx, file_: str) -> None:
    """Set a workload's recovery plan for a target site."""
    p = ctx.service.set_plan(read_file(file_))
    emit(ctx, dump(p), lambda: out.print(f"plan for {p.workload} → {p.target} set"))


@plan.command("show")
@click.argument("workload_name")
@click.option(
    "--operation",
    type=click.Choice(["protect", "failover", "drill", "migrate", "reprotect", "failback"]),
    default="failover",
    show_default=True,
)
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

    emit(ctx, fp.to_dict(), human)


# -- operations ------------------------------------------------------------------------


@cli.command()
@click.argument("workload_name")
@pass_ctx
def protect(ctx: Ctx, workload_name: str) -> None:
    """Take a checkpoint now and replicate it to the workload's targets."""
    run_operation(ctx, "protect", workload_name, lambda: ctx.service.protect(workload_name))


@cli.command()
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


@cli.command()
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


@cli.command()
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


@cli.command()
@click.argument("workload_name")
@pass_ctx
def reprotect(ctx: Ctx, workload_name: str) -> None:
    """After a failover: protect the recovered copy back towards the old primary."""
    run_operation(ctx, "reprotect", workload_name, lambda: ctx.service.reprotect(workload_name))


@cli.command()
@click.argument("workload_name")
@pass_ctx
def failback(ctx: Ctx, workload_name: str) -> None:
    """After reprotect: planned migration back to the original site."""
    run_operation(ctx, "failback", workload_name, lambda: ctx.service.failback(workload_name))


# -- checkpoints -----------------------------------------------------------------------


@cli.group()
def checkpoint() -> None:
    """Recovery points."""


@checkpoint.command("list")
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
        checkpoint_table(ctx, ctx.remote.checkpoint_rows(workload_name))
        return
    cps = (
        ctx.service.catalogue(site_name, workload_name)
        if site_name
        else ctx.service.list_checkpoints(workload_name)
    )
    rows: list[dict[str, Any]] = [
        {
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
        for c in cps
    ]
    checkpoint_table(ctx, rows)


def checkpoint_table(ctx: Ctx, rows: list[dict[str, Any]]) -> None:
    def human() -> None:
        t = Table("id", "workload", "created", "volumes", "consistency", "read", "stored", "copies")
        for r in rows:
            t.add_row(
                r["id"],
                r["workload"],
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["created_at"])),
                str(r["volumes"]),
                r["consistency"],
                human_bytes(r["bytes_read"]),
                human_bytes(r["bytes_stored"]),
                ",".join(r["copies"]),
            )
        out.print(t)

    emit(ctx, rows, human)


@checkpoint.command("show")
@click.argument("checkpoint_id")
@pass_ctx
def checkpoint_show(ctx: Ctx, checkpoint_id: str) -> None:
    """Show a checkpoint: graph, volumes, diff against its parent."""
    cp = ctx.service.get_checkpoint(checkpoint_id)
    emit(ctx, {**dump(cp), "copies": ctx.service.db.checkpoint_sites(cp.id)})


@checkpoint.command("verify")
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
                    f"({human_bytes(v['bytes'])})"
                )

    emit(ctx, report, human)
    if not report["ok"]:
        raise SystemExit(12)


# -- runs ------------------------------------------------------------------------------


@cli.group()
def run() -> None:
    """Runs of operations and their steps."""


@run.command("list")
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

    emit(ctx, [dump(r) for r in runs], human)


@run.command("show")
@click.argument("run_id")
@pass_ctx
def run_show(ctx: Ctx, run_id: str) -> None:
    """Show a run with its steps."""
    if ctx.remote:
        r, steps = ctx.remote.run(run_id)
    else:
        r, steps = ctx.service.get_run(run_id), ctx.service.steps(run_id)
    data = {**dump(r), "steps": [dump(s) for s in steps]}
    emit(ctx, data, lambda: out.print(steps_table(r, steps)))


@run.command("cancel")
@click.argument("run_id")
@pass_ctx
def run_cancel(ctx: Ctx, run_id: str) -> None:
    """Cancel a run; it stops at the next step boundary and reverts."""
    r = ctx.remote.cancel(run_id) if ctx.remote else ctx.service.cancel(run_id)
    emit(ctx, dump(r), lambda: out.print(f"run {run_id}: {r.state.value}"))


@run.command("resume")
@pass_ctx
def run_resume(ctx: Ctx) -> None:
    """Resume or revert every run whose process died (also done at every start)."""
    with watching(ctx):
        runs = ctx.service.resume_unfinished()
    emit(
        ctx,
        [dump(r) for r in runs],
        lambda: out.print(
            "\n".join(f"{r.id}: {r.state.value}" for r in runs) or "nothing to resume"
        ),
    )


# -- misc ------------------------------------------------------------------------------


@cli.command()
@pass_ctx
def plugins(ctx: Ctx) -> None:
    """List installed plugins (storage backends, cloud drivers, quiesce agents)."""
    items = ctx.service.plugins()

    def human() -> None:
        t = Table("kind", "name", "target", "distribution")
        for p in items:
            t.add_row(p["kind"], p["name"], p["target"], p["distribution"])
        out.print(t)

    emit(ctx, items, human)


@cli.command()
@click.option(
    "--workdir", default="./seawall-demo", show_default=True, help="Where the demo's sites live."
)
@click.option("--keep", is_flag=True, help="Leave the demo's server processes running at the end.")
@pass_ctx
def demo(ctx: Ctx, workdir: str, keep: bool) -> None:
    """Two local sites, a three-tier app: protect, disaster, failover, drill, failback."""
    from seawall.demo import run_demo

    report = run_demo(Path(workdir), console=console if not ctx.as_json else None, keep=keep)
    if ctx.as_json:
        out.print_json(json.dumps(report))
    if not report["ok"]:
        raise SystemExit(1)


def _add_repo_commands() -> None:
    cli.add_command(repo_group, "repo")
    cli.add_command(volume_group, "volume")
    cli.add_command(__import__("seawall.cli_lab").cli_lab.lab_group, "lab")
    cli.add_command(__import__("seawall.cli_serve").cli_serve.serve_command, "serve")


_add_repo_commands()


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except SeawallError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
