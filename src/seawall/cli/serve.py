"""``seawall serve``: the scheduler, the REST API, the dashboard and /metrics in one process.

Heavy imports (FastAPI, uvicorn, the service stack) happen inside the command, so
``seawall --help`` stays fast.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

import click


def _home(click_ctx: click.Context, home: str | None) -> Path:
    root = click_ctx.find_root().obj
    chosen = home or getattr(root, "home", None) or os.environ.get("SEAWALL_HOME")
    return Path(chosen) if chosen else Path.home() / ".seawall"


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8470, show_default=True, type=int, help="Port to listen on.")
@click.option("--home", envvar="SEAWALL_HOME", help="State directory (default ~/.seawall).")
@click.option("--db-url", envvar="SEAWALL_DB_URL", help="State database (default SQLite in home).")
@click.option(
    "--tick",
    envvar="SEAWALL_TICK_SECONDS",
    default=15.0,
    show_default=True,
    type=float,
    help="Seconds between scheduler ticks.",
)
@click.option("--webhook", envvar="SEAWALL_WEBHOOK_URL", help="POST alerts (JSON) to this URL.")
@click.option(
    "--keystone",
    envvar="SEAWALL_KEYSTONE_URL",
    help="Keystone URL; X-Auth-Token headers are validated against it.",
)
@click.option("--workers", default=2, show_default=True, help="Runs executed in parallel.")
@click.option("--no-scheduler", is_flag=True, help="Serve the API and dashboard only.")
@click.option("--public-metrics", is_flag=True, help="/metrics without an admin token.")
@click.option(
    "--audit-file",
    envvar="SEAWALL_AUDIT_FILE",
    type=click.Path(dir_okay=False),
    help="Also append every audit record to this file, one JSON line each (CADF field "
    "names), for a log shipper; the state database keeps them either way.",
)
@click.option(
    "--issue-token",
    metavar="PROJECT",
    help="Print a new local API token for PROJECT (stored hashed in home) and exit.",
)
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice(["reader", "member", "dr-operator", "admin"]),
    help="With --issue-token: a role the token holds (repeatable; default member).",
)
@click.option("--admin", is_flag=True, help="With --issue-token: same as --role admin.")
@click.option(
    "--rbac-file",
    envvar="SEAWALL_RBAC_FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="oslo.policy YAML file overriding the default RBAC rules (docs/reference/rbac.md).",
)
@click.option("--log-level", default="info", show_default=True)
@click.pass_context
def serve_command(
    click_ctx: click.Context,
    host: str,
    port: int,
    home: str | None,
    db_url: str | None,
    tick: float,
    webhook: str | None,
    keystone: str | None,
    workers: int,
    no_scheduler: bool,
    public_metrics: bool,
    audit_file: str | None,
    issue_token: str | None,
    roles: tuple[str, ...],
    admin: bool,
    rbac_file: Path | None,
    log_level: str,
) -> None:
    """Run seawall as a service: policies on schedule, REST API (/v1), dashboard (/)."""
    from seawall.api.auth import Authenticator, KeystoneTokens, LocalTokens

    root = _home(click_ctx, home)
    tokens = LocalTokens(root)
    if issue_token:
        click.echo(tokens.issue(issue_token, roles=roles or ("member",), admin=admin))
        return

    from seawall.service.rbac import Rbac

    rbac = Rbac(rbac_file)  # before anything starts or is written: a bad file stops here

    import uvicorn

    from seawall.api.app import Launcher, RedactUrlCredentials, create_app
    from seawall.scheduler import Scheduler, Webhook
    from seawall.service import Service
    from seawall.web import add_dashboard

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log = logging.getLogger("seawall.serve")
    if not tokens.path.exists():
        token = tokens.issue("admin", roles=["admin"], name="first admin")
        first = root / "admin-token"
        first.write_text(token + "\n")
        first.chmod(0o600)
        log.info("created an admin API token in %s", first)

    svc = Service(root, db_url)
    if audit_file:
        svc.audit.file = Path(audit_file)
    auth = Authenticator(tokens, KeystoneTokens(keystone) if keystone else None)
    launcher = Launcher(svc, workers)
    scheduler: Scheduler | None = None
    if not no_scheduler:
        scheduler = Scheduler(
            svc,
            tick_seconds=tick,
            webhook=Webhook(webhook) if webhook else None,
            max_parallel=workers,
        )
    app = create_app(
        svc,
        auth,
        launcher=launcher,
        leader=(lambda: scheduler.leader) if scheduler else None,
        public_metrics=public_metrics,
        rbac=rbac,
    )
    add_dashboard(app, svc, auth.principal, launcher.start, rbac=rbac)

    def resume() -> None:
        try:
            done = svc.resume_unfinished()
            if done:
                log.info("resumed %d unfinished run(s)", len(done))
        except Exception:
            log.exception("resuming unfinished runs failed")

    threading.Thread(target=resume, name="seawall-resume", daemon=True).start()
    if scheduler is not None:
        scheduler.start()
    log.info("seawall serve on http://%s:%d (tick %.1fs)", host, port, tick)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level)
    # after uvicorn configured its loggers: no credential of a URL reaches the access log
    logging.getLogger("uvicorn.access").addFilter(RedactUrlCredentials())
    server = uvicorn.Server(config)
    try:
        server.run()
        if not server.started:  # as uvicorn.run does: the port was taken, say, and logged
            raise SystemExit(3)
    finally:
        if scheduler is not None:
            scheduler.stop(wait=False)
        launcher.close()
        svc.close()
        sys.stdout.flush()
