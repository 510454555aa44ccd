"""``seawall repo ...`` and ``seawall volume ...``: the repository engine on the command line.

Two module-level click groups, :data:`repo_group` and :data:`volume_group`, which the
root ``seawall`` command adds; they also run on their own (``bench/repo.py`` and the
crash tests call them directly), failing the same way (:class:`CommandGroup`). They use
:mod:`seawall.repo` and :mod:`seawall.storage` only, never the service stack. The
passphrase comes from ``--passphrase-file``, ``SEAWALL_PASSPHRASE`` or
``SEAWALL_PASSPHRASE_FILE`` (:mod:`seawall.passphrases`, the service's rule too) and never
from argv (it would show in ``ps`` and shell history).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import click

from seawall.cli.output import CommandGroup, emit, jsonable
from seawall.errors import IntegrityError, InvalidInput, NotFound
from seawall.passphrases import DESTINATION, NEW, REPOSITORY, configured, read_passphrase
from seawall.repo import FileSource, Repository, VolumeImage, init_sharing, sync
from seawall.storage import StorageBackend, open_storage
from seawall.storage.wrappers import RateLimited, Retrying, TokenBucket, parse_windows
from seawall.units import format_bytes, parse_rate, parse_size

F = TypeVar("F", bound=Callable[..., Any])

PASSPHRASE_ENV = REPOSITORY.variable
DST_PASSPHRASE_ENV = DESTINATION.variable
NEW_PASSPHRASE_ENV = NEW.variable


# --------------------------------------------------------------------------------------
# Plumbing shared by the commands
# --------------------------------------------------------------------------------------


def _options(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep or not k:
            raise InvalidInput(f"storage option {p!r} is not KEY=VALUE", field="--option")
        out[k] = v
    return out


def _storage(url: str, options: Mapping[str, str]) -> StorageBackend:
    is_local = "://" not in url or url.startswith("file://")
    if is_local:
        # Directly, not through the entry-point registry: scanning the installed
        # distributions' metadata costs ~0.15 s on every command.
        from seawall.storage.local import open_local

        return open_local(url, options)
    return Retrying(open_storage(url, options))


def _open(url: str, passphrase: str, options: Mapping[str, str]) -> Repository:
    return Repository.open(_storage(url, options), passphrase)


def _open_url(url: str, passphrase_file: str | None, options: tuple[str, ...]) -> Repository:
    """Open ``url`` the way every single-repository command does (``_common`` options)."""
    return _open(url, read_passphrase(REPOSITORY, path=passphrase_file), _options(options))


@contextlib.contextmanager
def _progress(label: str, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr when a human is watching; nothing otherwise."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _common(fn: F) -> F:
    fn = click.option(
        "--passphrase-file",
        type=click.Path(dir_okay=False),
        help=f"File holding the passphrase (default: ${PASSPHRASE_ENV}, else the file "
        f"${REPOSITORY.file_variable} names; mode 600).",
    )(fn)
    fn = click.option(
        "-o",
        "--option",
        "options",
        multiple=True,
        metavar="KEY=VALUE",
        help="Storage option, e.g. endpoint=http://127.0.0.1:9000 (repeatable).",
    )(fn)
    return fn


def _new_passphrase(fn: F) -> F:
    """The options of the commands that make a key slot for a new passphrase."""
    fn = click.option("--kdf", type=click.Choice(["default", "fast"]), default="default")(fn)
    fn = click.option(
        "--new-passphrase-file",
        type=click.Path(dir_okay=False),
        help=f"File with the new passphrase (default: ${NEW_PASSPHRASE_ENV}, else "
        f"${NEW.file_variable}).",
    )(fn)
    return fn


def _json_flag(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(fn)


# --------------------------------------------------------------------------------------
# seawall repo
# --------------------------------------------------------------------------------------


@click.group("repo", cls=CommandGroup)
def repo_group() -> None:
    """Create, check, maintain and replicate repositories."""


@repo_group.command("init")
@click.argument("url")
@click.option(
    "--chunk-size", default=None, metavar="SIZE", help="Volume chunk size, e.g. 1MiB or 4096."
)
@click.option(
    "--kdf",
    type=click.Choice(["default", "fast"]),
    default="default",
    help="argon2id cost; 'fast' is for tests and demos only.",
)
@click.option(
    "--key-from",
    "key_from",
    default=None,
    metavar="URL",
    help="Share the master key of this repository (so `repo sync` can copy).",
)
@_common
@_json_flag
def repo_init(
    url: str,
    chunk_size: str | None,
    kdf: str,
    key_from: str | None,
    passphrase_file: str | None,
    options: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create an empty repository at URL."""
    pw = read_passphrase(REPOSITORY, path=passphrase_file)
    opts = _options(options)
    source = _open(key_from, pw, opts) if key_from else None
    chunk = parse_size(chunk_size, field="--chunk-size") if chunk_size else None
    repo = Repository.init(_storage(url, opts), pw, chunk_size=chunk, kdf=kdf, key_from=source)
    emit(
        as_json,
        {"id": repo.id, "url": url, "chunk_size": repo.chunk_size},
        f"created repository {repo.id} at {url}",
    )


@repo_group.command("check")
@click.argument("url")
@click.option("--read-data", is_flag=True, help="Download and authenticate every byte.")
@_common
@_json_flag
def repo_check(
    url: str, read_data: bool, passphrase_file: str | None, options: tuple[str, ...], as_json: bool
) -> None:
    """Check the repository's structure (and with --read-data, all data)."""
    repo = _open_url(url, passphrase_file, options)
    with _progress("checking", not as_json) as progress:
        report = repo.check(read_data=read_data, progress=progress)
    repo.close()

    def human() -> None:  # the findings on stdout: they are the result, not a failure
        for w in report.warnings:
            click.echo(f"warning: {w}", err=True)
        for e in report.errors:
            click.echo(f"error: {e}")
        if report.damaged:
            click.echo("damaged: " + ", ".join(report.damaged))
        click.echo("no errors found" if report.ok else f"{len(report.errors)} error(s) found")

    emit(as_json, report, human)
    if not report.ok:
        sys.exit(IntegrityError.exit_code)


@repo_group.command("stats")
@click.argument("url")
@_common
@_json_flag
def repo_stats(
    url: str, passphrase_file: str | None, options: tuple[str, ...], as_json: bool
) -> None:
    """Show sizes, counts and the deduplication ratio."""
    repo = _open_url(url, passphrase_file, options)
    s = repo.stats()
    repo.close()
    lines = [
        f"repository  {s['repository_id']}",
        f"packs       {s['packs']} ({format_bytes(s['pack_bytes'])})",
        "manifests   " + ", ".join(f"{k}={v}" for k, v in sorted(s["manifests"].items())),
        f"logical     {format_bytes(s['logical_bytes'])}",
        f"dedup ratio {s['dedup_ratio']}",
    ]
    emit(as_json, s, "\n".join(lines))


@repo_group.command("forget")
@click.argument("url")
@click.option("--kind", default="checkpoint", show_default=True, help="Manifest kind.")
@click.option(
    "--group-by",
    "group_by",
    multiple=True,
    help="Label to group by (default: name for volumes, workload otherwise).",
)
@click.option("--keep-last", type=int, default=0)
@click.option("--keep-hourly", type=int, default=0)
@click.option("--keep-daily", type=int, default=0)
@click.option("--keep-weekly", type=int, default=0)
@click.option("--keep-monthly", type=int, default=0)
@click.option("--dry-run", is_flag=True)
@_common
@_json_flag
def repo_forget(
    url: str,
    kind: str,
    group_by: tuple[str, ...],
    keep_last: int,
    keep_hourly: int,
    keep_daily: int,
    keep_weekly: int,
    keep_monthly: int,
    dry_run: bool,
    passphrase_file: str | None,
    options: tuple[str, ...],
    as_json: bool,
) -> None:
    """Remove manifests the retention rules do not keep (data goes at the next prune)."""
    repo = _open_url(url, passphrase_file, options)
    groups = list(group_by) or (["name"] if kind == "volume" else ["workload"])
    removed = repo.forget(
        kind,
        groups,
        keep_last=keep_last,
        keep_hourly=keep_hourly,
        keep_daily=keep_daily,
        keep_weekly=keep_weekly,
        keep_monthly=keep_monthly,
        dry_run=dry_run,
    )
    repo.close()
    verb = "would remove" if dry_run else "removed"
    emit(
        as_json,
        {"removed": removed, "dry_run": dry_run},
        "\n".join([*(f"{verb} {m}" for m in removed), f"{verb} {len(removed)} manifest(s)"]),
    )


@repo_group.command("prune")
@click.argument("url")
@_common
@_json_flag
def repo_prune(
    url: str, passphrase_file: str | None, options: tuple[str, ...], as_json: bool
) -> None:
    """Delete data no manifest references (takes the exclusive lock)."""
    repo = _open_url(url, passphrase_file, options)
    result = repo.prune()
    repo.close()
    emit(
        as_json,
        result,
        f"deleted {result['packs_deleted']} pack(s), repacked "
        f"{result['packs_repacked']}, freed {format_bytes(result['bytes_freed'])}",
    )


def _sync_cmd(
    src_url: str,
    dst_url: str,
    *,
    src_pw: str,
    dst_pw: str,
    options: Mapping[str, str],
    dst_options: Mapping[str, str],
    as_json: bool,
    verb: str,
    limit_rate: str | None = None,
    limit_windows: str | None = None,
    manifests: tuple[str, ...] = (),
) -> None:
    """Copy what ``dst_url`` lacks from ``src_url`` (``sync``, ``export``, ``import``)."""
    src = _open(src_url, src_pw, options)
    dst_storage = _storage(dst_url, dst_options)
    rate = parse_rate(limit_rate, field="--limit-rate") if limit_rate else 0
    if limit_windows:
        windows = parse_windows(limit_windows, field="--limit-windows")
        dst_storage = RateLimited(dst_storage, TokenBucket(rate, windows))
        rate = 0
    try:
        dst_storage.stat("config")
    except NotFound:
        dst = init_sharing(src, dst_storage)
    else:
        dst = Repository.open(dst_storage, dst_pw)
    with _progress(verb, not as_json) as progress:
        stats = sync(src, dst, manifests=manifests or None, rate_limit=rate, progress=progress)
    src.close()
    dst.close()
    emit(
        as_json,
        stats,
        f"{verb}: {stats.manifests_sent} manifest(s), {stats.objects_sent} "
        f"object(s), {format_bytes(stats.bytes_sent)} sent; {stats.skipped} already there",
    )


@repo_group.command("sync")
@click.argument("src")
@click.argument("dst")
@click.option("--limit-rate", default=None, metavar="RATE", help="e.g. 50MiB/s or 50M.")
@click.option(
    "--limit-windows",
    default=None,
    metavar="SPEC",
    help='Rates by time of day, e.g. "08:00-18:00=10MiB,18:00-08:00=0" (0 = none).',
)
@click.option("--manifest", "manifests", multiple=True, help="Only these (and their refs).")
@click.option(
    "--dst-passphrase-file",
    type=click.Path(dir_okay=False),
    help=f"Passphrase of DST (default: ${DST_PASSPHRASE_ENV}, else the source's).",
)
@click.option("--dst-option", "dst_options", multiple=True, metavar="KEY=VALUE")
@_common
@_json_flag
def repo_sync(
    src: str,
    dst: str,
    limit_rate: str | None,
    limit_windows: str | None,
    manifests: tuple[str, ...],
    dst_passphrase_file: str | None,
    dst_options: tuple[str, ...],
    passphrase_file: str | None,
    options: tuple[str, ...],
    as_json: bool,
) -> None:
    """Copy what DST lacks from SRC (DST is created sharing SRC's key if absent)."""
    pw = read_passphrase(REPOSITORY, path=passphrase_file)
    dst_pw = (
        read_passphrase(DESTINATION, path=dst_passphrase_file)
        if dst_passphrase_file or configured(DESTINATION)
        else pw
    )
    _sync_cmd(
        src,
        dst,
        src_pw=pw,
        dst_pw=dst_pw,
        options=_options(options),
        dst_options=_options(dst_options),
        limit_rate=limit_rate,
        limit_windows=limit_windows,
        manifests=manifests,
        as_json=as_json,
        verb="sync",
    )


def _media_cmd(
    src_url: str,
    dst_url: str,
    passphrase_file: str | None,
    *,
    src_options: tuple[str, ...] = (),
    dst_options: tuple[str, ...] = (),
    as_json: bool,
    verb: str,
) -> None:
    """``export`` and ``import``: a copy to or from a directory, so one passphrase opens
    both sides (the copy shares the repository's keys) and only the non-directory side
    takes ``--option``."""
    pw = read_passphrase(REPOSITORY, path=passphrase_file)
    _sync_cmd(
        src_url,
        dst_url,
        src_pw=pw,
        dst_pw=pw,
        options=_options(src_options),
        dst_options=_options(dst_options),
        as_json=as_json,
        verb=verb,
    )


@repo_group.command("export")
@click.argument("url")
@click.argument("directory", type=click.Path(file_okay=False))
@_common
@_json_flag
def repo_export(
    url: str, directory: str, passphrase_file: str | None, options: tuple[str, ...], as_json: bool
) -> None:
    """Copy the repository to DIRECTORY (physical media for seeding a remote site)."""
    _media_cmd(url, directory, passphrase_file, src_options=options, as_json=as_json, verb="export")


@repo_group.command("import")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.argument("url")
@_common
@_json_flag
def repo_import(
    directory: str, url: str, passphrase_file: str | None, options: tuple[str, ...], as_json: bool
) -> None:
    """Copy an exported DIRECTORY into the repository at URL (created if absent)."""
    _media_cmd(directory, url, passphrase_file, dst_options=options, as_json=as_json, verb="import")


@repo_group.group("key")
def key_group() -> None:
    """Manage key slots (passphrases) without rewriting any data."""


def _open_for_new_key(
    url: str, new_passphrase_file: str | None, passphrase_file: str | None, options: tuple[str, ...]
) -> tuple[Repository, str]:
    """The repository and the new passphrase for ``key add`` and ``key passwd``, read in
    that order (a wrong current passphrase is reported before a missing new one)."""
    repo = _open_url(url, passphrase_file, options)
    return repo, read_passphrase(NEW, path=new_passphrase_file)


@key_group.command("list")
@click.argument("url")
@_common
@_json_flag
def key_list(
    url: str, passphrase_file: str | None, options: tuple[str, ...], as_json: bool
) -> None:
    """List key slots."""
    repo = _open_url(url, passphrase_file, options)
    slots = repo.list_keys()
    text = "\n".join(
        f"{'*' if s.id == repo.slot_id else ' '} {s.id}  {s.created_at}  {s.hostname}  kdf={s.kdf}"
        for s in slots
    )
    emit(as_json, [{**asdict(s), "current": s.id == repo.slot_id} for s in slots], text)


@key_group.command("add")
@click.argument("url")
@_new_passphrase
@_common
@_json_flag
def key_add(
    url: str,
    new_passphrase_file: str | None,
    kdf: str,
    passphrase_file: str | None,
    options: tuple[str, ...],
    as_json: bool,
) -> None:
    """Add a key slot for another passphrase."""
    repo, new = _open_for_new_key(url, new_passphrase_file, passphrase_file, options)
    slot = repo.add_key(new, kdf=kdf)
    emit(as_json, {"id": slot}, f"added key slot {slot}")


@key_group.command("remove")
@click.argument("url")
@click.argument("slot")
@_common
@_json_flag
def key_remove(
    url: str, slot: str, passphrase_file: str | None, options: tuple[str, ...], as_json: bool
) -> None:
    """Remove a key slot (never the last one)."""
    repo = _open_url(url, passphrase_file, options)
    repo.remove_key(slot)
    emit(as_json, {"removed": slot}, f"removed key slot {slot}")


@key_group.command("passwd")
@click.argument("url")
@_new_passphrase
@_common
@_json_flag
def key_passwd(
    url: str,
    new_passphrase_file: str | None,
    kdf: str,
    passphrase_file: str | None,
    options: tuple[str, ...],
    as_json: bool,
) -> None:
    """Change the passphrase of the slot this passphrase opens."""
    repo, new = _open_for_new_key(url, new_passphrase_file, passphrase_file, options)
    slot = repo.change_passphrase(new, kdf=kdf)
    emit(as_json, {"id": slot}, f"passphrase changed (new key slot {slot})")


# --------------------------------------------------------------------------------------
# seawall volume
# --------------------------------------------------------------------------------------


@click.group("volume", cls=CommandGroup)
def volume_group() -> None:
    """Store and restore volume images."""


def _load_extents(path: str) -> list[tuple[int, int]]:
    try:
        raw = json.loads(Path(path).read_text())
        out = [(int(o), int(n)) for o, n in raw]
    except (OSError, ValueError, TypeError) as exc:
        raise InvalidInput(
            f"{path}: expected a JSON list of [offset, length] pairs ({exc})",
            field="--changed-extents",
        ) from None
    return out


def _image_dict(v: VolumeImage) -> dict[str, Any]:
    return dict(jsonable(v))


@volume_group.command("put")
@click.argument("url")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--base", default=None, help="Previous volume image id (for --changed-extents).")
@click.option(
    "--changed-extents",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="JSON list of [offset, length] pairs changed since --base.",
)
@_common
@_json_flag
def volume_put(
    url: str,
    name: str,
    file: str,
    base: str | None,
    changed_extents: str | None,
    passphrase_file: str | None,
    options: tuple[str, ...],
    as_json: bool,
) -> None:
    """Store FILE as a new image of volume NAME; prints the new image id."""
    repo = _open_url(url, passphrase_file, options)
    extents = _load_extents(changed_extents) if changed_extents else None
    if base is not None:
        base = _resolve(repo, None, base).id
    with FileSource(file) as src, _progress(f"put {name}", not as_json) as progress:
        img = repo.write_volume(name, src, base=base, extents=extents, progress=progress)
    repo.close()
    emit(as_json, _image_dict(img), img.id)


def _open_direct(path: Path) -> int | None:
    """A second descriptor with ``O_DIRECT``, or ``None`` where that is not supported."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return None
    try:
        return os.open(path, os.O_WRONLY | flag)
    except OSError:
        return None


def _resolve(repo: Repository, name: str | None, ident: str | None) -> VolumeImage:
    """``NAME`` (latest image), ``NAME@ID`` or ``@ID``; ids may be unique prefixes."""
    images = repo.list_volumes(name)
    if ident:
        found = [v for v in images if v.id.startswith(ident)]
        if len(found) > 1:
            raise InvalidInput(f"volume image id {ident!r} is ambiguous")
    else:
        found = images[-1:]
    if not found:
        what = f"{name or ''}@{ident}" if ident else str(name)
        raise NotFound(f"no volume image {what} (see `seawall volume list`)")
    return found[0]


@volume_group.command("get")
@click.argument("url")
@click.argument("ref", metavar="NAME[@ID]")
@click.argument("out", type=click.Path(dir_okay=False))
@_common
@_json_flag
def volume_get(
    url: str,
    ref: str,
    out: str,
    passphrase_file: str | None,
    options: tuple[str, ...],
    as_json: bool,
) -> None:
    """Restore a volume image into OUT (sparse; written only if every chunk verifies)."""
    repo = _open_url(url, passphrase_file, options)
    name, _, ident = ref.partition("@")
    img = _resolve(repo, name or None, ident or None)
    target = Path(out)
    tmp = target.with_name(f".{target.name}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, img.size)  # holes stay holes: a sparse file
        # Whole aligned chunks bypass the page cache (a restored disk is not read back
        # here, and filling the cache costs as much CPU as the decryption).
        dfd = _open_direct(tmp)
        try:
            with _progress(f"get {img.name}", not as_json) as progress:
                done = repo.restore_volume(img.id, fd, progress=progress, direct_fd=dfd)
        finally:
            if dfd is not None:
                os.close(dfd)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, target)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    finally:
        repo.close()
    emit(
        as_json,
        {**_image_dict(img), "out": str(target), "bytes_written": done},
        f"restored {img.name}@{img.id[:12]} to {target}",
    )


@volume_group.command("list")
@click.argument("url")
@click.option("--name", default=None, help="Only images of this volume.")
@_common
@_json_flag
def volume_list(
    url: str, name: str | None, passphrase_file: str | None, options: tuple[str, ...], as_json: bool
) -> None:
    """List volume images, oldest first."""
    repo = _open_url(url, passphrase_file, options)
    images = repo.list_volumes(name)
    repo.close()
    text = "\n".join(
        f"{v.id[:16]}  {v.created_at:%Y-%m-%d %H:%M:%S}  {v.name:20}  {format_bytes(v.size):>10}  "
        f"new {format_bytes(v.bytes_new)}"
        for v in images
    )
    emit(as_json, [_image_dict(v) for v in images], text)
