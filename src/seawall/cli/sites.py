"""``seawall site ...``: the clouds seawall protects and recovers into."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from seawall.cli.context import Ctx, pass_ctx, read_file
from seawall.cli.output import CommandGroup, emit, out
from seawall.errors import InvalidInput
from seawall.model import dump

#: The fields of a site file (``--file``).
SITE_FIELDS = ("driver", "name", "params", "repository")


@click.group("site", cls=CommandGroup)
def site_group() -> None:
    """Clouds seawall protects and recovers into."""


def _params(pairs: tuple[str, ...]) -> dict[str, str]:
    """``--param KEY=VALUE`` options as a mapping."""
    params = {}
    for p in pairs:
        if "=" not in p:
            raise InvalidInput(f"expected KEY=VALUE, got {p!r}", field="--param")
        k, v = p.split("=", 1)
        params[k] = v
    return params


def _site_file(path: str | None) -> dict[str, Any]:
    data: dict[str, Any] = read_file(path) if path else {}
    unknown = sorted(set(data) - set(SITE_FIELDS))
    if unknown:
        raise InvalidInput(
            f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(SITE_FIELDS)}",
            field="site",
        )
    if not isinstance(data.get("params", {}), dict):
        raise InvalidInput(f"expected a mapping, got {data['params']!r}", field="site.params")
    return data


@site_group.command("add")
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
    data = _site_file(file_)
    pairs = _params(params)
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
    emit(ctx.as_json, dump(s), lambda: out.print(f"site {s.name} added ({s.driver})"))


@site_group.command("list")
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

    emit(ctx.as_json, sites, human)


@site_group.command("remove")
@click.argument("name")
@pass_ctx
def site_remove(ctx: Ctx, name: str) -> None:
    """Forget a site (its cloud and repository are not touched)."""
    ctx.service.remove_site(name)
    emit(ctx.as_json, {"removed": name}, lambda: out.print(f"site {name} removed"))
