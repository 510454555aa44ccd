"""``seawall audit ...``: the audit trail (who did what, when and from where).

``audit list`` reads the local state database, or with ``--url`` the server's
``GET /v1/audit`` (admins only there). What each record holds, and how to ship the trail,
is docs/security.md.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import click
from rich.table import Table

from seawall.cli.context import Ctx, parse_duration, pass_ctx
from seawall.cli.output import CommandGroup, emit, out
from seawall.errors import InvalidInput

OUTCOMES = ("allowed", "denied", "failed", "pending")


@click.group("audit", cls=CommandGroup)
def audit_group() -> None:
    """The audit trail: every change and every run, with who, what, when, from where."""


def point_in_time(text: str | None, field: str) -> float | None:
    """``2026-12-04T22:00:00Z`` (ISO 8601; UTC unless it says otherwise) or a duration
    ago (``90s``, ``15m``, ``4h``, ``1d``), as seconds since the epoch."""
    if text is None:
        return None
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        try:
            return time.time() - parse_duration(text, field)
        except InvalidInput:
            raise InvalidInput(
                f"{text!r} is neither a time like 2026-12-04T22:00:00Z nor a duration "
                "ago like 15m, 4h or 1d",
                field=field,
            ) from None
    return (at if at.tzinfo else at.replace(tzinfo=dt.UTC)).timestamp()


@audit_group.command("list")
@click.option("--since", help="From this time on: ISO 8601 or a duration ago (4h, 1d).")
@click.option("--until", help="Before this time: ISO 8601 or a duration ago.")
@click.option("--project", help="The initiator's project (name or id).")
@click.option("--user", help="The initiator's user name.")
@click.option("--action", help="The action (start_run, run.start, site add ...).")
@click.option("--outcome", type=click.Choice(OUTCOMES))
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10000))
@pass_ctx
def audit_list(
    ctx: Ctx,
    since: str | None,
    until: str | None,
    project: str | None,
    user: str | None,
    action: str | None,
    outcome: str | None,
    limit: int,
) -> None:
    """List audit records, newest first."""
    query: dict[str, Any] = {
        "since": point_in_time(since, "since"),
        "until": point_in_time(until, "until"),
        "project": project,
        "user": user,
        "action": action,
        "outcome": outcome,
    }
    if ctx.remote is not None:
        records = ctx.remote.audit(query, most=limit)
    else:
        from seawall.service.audit import AuditFilter

        found = ctx.service.audit.list(AuditFilter(**query), limit=limit)
        records = [r.as_dict() for r in found]

    def human() -> None:
        t = Table("time (UTC)", "user", "project", "via", "action", "target", "outcome", "status")
        for r in records:
            who = r["initiator"]
            target = " ".join(f"{k}={v}" for k, v in r["target"].items())
            t.add_row(
                r["time"][:19].replace("T", " "),
                who["user"],
                who["project"],
                who["via"],
                r["action"],
                target[:60],
                r["outcome"],
                str(r["status"]),
            )
        out.print(t)

    emit(ctx.as_json, records, human)
