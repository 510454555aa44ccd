"""The ``seawall`` command line: the root group, its global options, and :func:`main`.

Every command is a thin shell over :class:`seawall.service.Service`: parse, call, print.
One module per command group (borg's ``archiver/*_cmd.py`` layout)::

    cli/__init__.py     the root group, --home/--json/--url/--token, client mode, main()
    cli/output.py       the one output and error convention (JSON vs human, exit codes)
    cli/context.py      Ctx (local service or remote server), file and duration input
    cli/sites.py        site add|list|remove
    cli/policies.py     policy create|list|show
    cli/workloads.py    workload create|list|show
    cli/plans.py        plan set|show (dry runs)
    cli/operations.py   protect, failover, migrate, drill, reprotect, failback; progress
    cli/checkpoints.py  checkpoint list|show|verify
    cli/runs.py         run list|show|cancel|resume
    cli/audit.py        audit list
    cli/repo.py         repo ... and volume ... (the repository engine, no service)
    cli/serve.py        serve (scheduler, REST API, dashboard)
    cli/remote.py       the REST client behind ``seawall --url``
    cli/plugins.py      plugins
    cli/demo.py         demo

Errors and output follow :mod:`seawall.cli.output`. The service stack (TaskFlow,
SQLAlchemy) and the REST client are imported only by the commands that use them, so
``seawall --help`` and ``seawall repo ...`` start quickly.

With ``--url`` (or ``SEAWALL_URL``) the commands in :data:`REMOTE` run against a
running ``seawall serve`` through :class:`seawall.cli.remote.Remote` instead of the
local state directory, with the same output and exit codes; every other command is
refused there, before it does anything.

Locally, the commands in :data:`AUDITED` (those that change the state database) are
recorded in the audit trail by :class:`Root` as they end, as the local OS user
(``via=cli``) with their positional arguments as the target and their exit code; with
``--url`` the server records them instead.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

import click

from seawall import __version__
from seawall.cli import (
    audit,
    checkpoints,
    demo,
    operations,
    plans,
    plugins,
    policies,
    repo,
    runs,
    serve,
    sites,
    workloads,
)
from seawall.cli.context import Ctx
from seawall.cli.output import INTERRUPTED, RUN_FAILED, USAGE, CommandGroup, console, fail
from seawall.errors import InvalidInput, SeawallError

#: The commands that also work against a server (``--url``); the rest need the state
#: directory and are refused with ``--url`` (:class:`Root`).
REMOTE = frozenset(
    {
        "site list",
        "policy list",
        "workload list",
        "workload show",
        "checkpoint list",
        "checkpoint diff",
        "run list",
        "run show",
        "run cancel",
        "protect",
        "failover",
        "drill",
        "migrate",
        "reprotect",
        "failback",
        "audit list",
    }
)

#: The commands that change the state database, recorded in the audit trail when they
#: run locally (``seawall repo ...`` works on a repository, not on the state database).
AUDITED = frozenset(
    {
        "site add",
        "site remove",
        "policy create",
        "workload create",
        "plan set",
        "protect",
        "failover",
        "drill",
        "migrate",
        "reprotect",
        "failback",
        "run cancel",
        "run resume",
    }
)

#: where :meth:`Root.resolve_command` leaves the command's path, leaf and arguments
_INVOKED = "seawall.invoked"


class Root(CommandGroup):
    """The ``seawall`` group: with ``--url``, a command outside :data:`REMOTE` is refused
    before anything runs (one line, exit 2)."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, cmd, rest = super().resolve_command(ctx, args)
        if cmd is None or {"-h", "--help"} & set(rest):
            return name, cmd, rest
        words, leaf, left = [name or cmd.name or ""], cmd, list(rest)
        while left:  # down to the leaf: `repo init`, `site add`
            if not isinstance(leaf, click.Group) or (sub := leaf.get_command(ctx, left[0])) is None:
                break
            words.append(left.pop(0))
            leaf = sub
        path = " ".join(words)
        if ctx.params.get("url") and not isinstance(leaf, click.Group) and path not in REMOTE:
            raise InvalidInput(
                f"`seawall {path}` is local-only: it works on this machine's state "
                "directory, not through a seawall server; run it without --url "
                "(and SEAWALL_URL)"
            )
        ctx.meta[_INVOKED] = (path, leaf, left)
        return name, cmd, rest

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; record it in the audit trail as it ends (see the module)."""
        code = 0
        try:
            return super().invoke(ctx)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            raise
        except click.exceptions.Exit as exc:
            code = exc.exit_code
            raise
        except click.ClickException as exc:  # a usage error inside the command
            code = exc.exit_code
            raise
        except KeyboardInterrupt:
            code = INTERRUPTED
            raise
        except BaseException:
            code = RUN_FAILED
            raise
        finally:
            invoked = ctx.meta.get(_INVOKED)
            if invoked is not None and invoked[0] in AUDITED and isinstance(ctx.obj, Ctx):
                record_command(ctx, ctx.obj, *invoked, code=code)


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
        from seawall.cli.remote import Remote

        os_token = None if token else os.environ.get("OS_AUTH_TOKEN")
        remote = Remote(url, token=token, auth_token=os_token)
    ctx = Ctx(home, as_json, remote)
    click_ctx.obj = ctx
    click_ctx.call_on_close(ctx.close)


for _command in (
    sites.site_group,
    policies.policy_group,
    workloads.workload_group,
    plans.plan_group,
    *operations.COMMANDS,
    checkpoints.checkpoint_group,
    runs.run_group,
    audit.audit_group,
    plugins.plugins_command,
    demo.demo_command,
    repo.repo_group,
    repo.volume_group,
    serve.serve_command,
):
    cli.add_command(_command)


def record_command(
    ctx: click.Context, obj: Ctx, path: str, leaf: click.Command, args: list[str], *, code: int
) -> None:
    """One audit record for a local command: its positional arguments are the target
    (names and ids; options, which may carry secrets, are never recorded)."""
    if obj.remote is not None:
        return  # the server audits what it is asked
    from seawall.service.audit import AuditRecord, local_initiator

    try:
        parsed = leaf.make_context(path, list(args), parent=ctx, resilient_parsing=True)
        names = [p.name for p in leaf.params if isinstance(p, click.Argument) and p.name]
        target = {n: str(parsed.params[n]) for n in names if parsed.params.get(n) is not None}
        obj.service.audit.record(
            AuditRecord(
                action=path,
                outcome="allowed" if code == 0 else "failed",
                initiator=local_initiator(),
                method="cli",
                route=f"seawall {path}",
                target=target,
                status=code,
                client=socket.gethostname(),
                user_agent=f"seawall/{__version__}",
            )
        )
    except Exception as exc:  # the command's own outcome stands; say what was not kept
        console.print(f"warning: `seawall {path}` was not recorded in the audit trail: {exc}")


def main() -> None:
    """The ``seawall`` console script: the error tree's exit codes, not tracebacks."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        console.print("aborted")
        sys.exit(INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(USAGE)
    except SeawallError as exc:  # raised while parsing, before a group's invoke
        fail(exc)
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED)
