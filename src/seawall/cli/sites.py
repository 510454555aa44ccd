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


def _credentials(access_key_id: str | None, secret_file: str | None) -> dict[str, str]:
    """The S3 credentials options as storage options; the secret is read from a file (or
    ``-``, standard input) so that it is in no shell history and no process listing."""
    creds: dict[str, str] = {}
    if access_key_id:
        creds["access_key_id"] = access_key_id
    if secret_file:
        text = click.open_file(secret_file).read().strip()
        if not text:
            raise InvalidInput(f"{secret_file} is empty", field="--s3-secret-access-key-file")
        creds["secret_access_key"] = text
    if bool(access_key_id) != bool(secret_file):
        raise InvalidInput(
            "give both --s3-access-key-id and --s3-secret-access-key-file, or neither",
            field="credentials",
        )
    return creds


def credential_options(fn: Any) -> Any:
    """``--s3-access-key-id`` and ``--s3-secret-access-key-file``, shared by the commands
    that take a repository's credentials."""
    fn = click.option(
        "--s3-secret-access-key-file",
        metavar="PATH",
        help="File holding the S3 secret access key ('-': standard input).",
    )(fn)
    return click.option(
        "--s3-access-key-id",
        metavar="ID",
        help="S3 access key id of the repository (kept encrypted in the home, never shown).",
    )(fn)


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
@credential_options
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
    s3_access_key_id: str | None,
    s3_secret_access_key_file: str | None,
) -> None:
    """Register a site (its driver must answer).

    S3 credentials are given with --s3-access-key-id and --s3-secret-access-key-file (or
    come from the standard AWS_* environment of seawall); any written into the
    repository URL are moved out of it. Either way they are kept encrypted under the
    passphrase in the home, never in the state database, and never shown."""
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
        credentials=_credentials(s3_access_key_id, s3_secret_access_key_file),
    )
    emit(ctx.as_json, dump(s), lambda: out.print(f"site {s.name} added ({s.driver})"))


@site_group.command("credentials")
@click.argument("name")
@credential_options
@pass_ctx
def site_credentials(
    ctx: Ctx, name: str, s3_access_key_id: str | None, s3_secret_access_key_file: str | None
) -> None:
    """Set a site's S3 credentials; move any out of its URL.

    New credentials are given with --s3-access-key-id and --s3-secret-access-key-file;
    with neither, the credentials still written in the repository URL of a site added
    by an older seawall are moved out of the state database, encrypted into the home."""
    s = ctx.service.set_site_credentials(
        name, _credentials(s3_access_key_id, s3_secret_access_key_file)
    )
    emit(ctx.as_json, dump(s), lambda: out.print(f"site {s.name}: credentials kept encrypted"))


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
        for s in sites:
            if "***" in s.get("repository", ""):
                out.print(
                    f"site {s['name']} keeps credentials in its repository URL: move them "
                    f"out with `seawall site credentials {s['name']}`"
                )

    emit(ctx.as_json, sites, human)


@site_group.command("remove")
@click.argument("name")
@pass_ctx
def site_remove(ctx: Ctx, name: str) -> None:
    """Forget a site (its cloud and repository are not touched)."""
    ctx.service.remove_site(name)
    emit(ctx.as_json, {"removed": name}, lambda: out.print(f"site {name} removed"))
