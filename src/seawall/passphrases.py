"""Where a repository passphrase comes from: one rule for every command.

Sources, first found wins: a file given on the command line (``--passphrase-file``),
the variable itself (``SEAWALL_PASSPHRASE``), a file named by the environment
(``SEAWALL_PASSPHRASE_FILE``), then ``<home>/passphrase`` where a command has a home.
The CLI's ``repo`` commands and the service read through :func:`read_passphrase`, so
``seawall repo check`` takes the passphrase that ``seawall protect`` takes.

A passphrase file is a key: like ssh with a private key, seawall refuses one that group
or others may read or write, and says how to fix it. Each way of not having a usable
passphrase has its own message (none configured, the file missing, unreadable, loose,
empty); all are :class:`~seawall.errors.KeyMissing` (exit 10), since the repository key
cannot be opened without one. A wrong passphrase is found only when a key slot is tried
(:class:`~seawall.errors.WrongPassphrase`, exit 9), which the service does at preflight.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from seawall.errors import KeyMissing


@dataclass(frozen=True)
class Source:
    """The names one passphrase goes by: the repository's own, a replication
    destination's (``SEAWALL_DST_PASSPHRASE``), a new one for ``repo key add``."""

    what: str = "passphrase"
    variable: str = "SEAWALL_PASSPHRASE"
    option: str = "--passphrase-file"

    @property
    def file_variable(self) -> str:
        return f"{self.variable}_FILE"


REPOSITORY = Source("repository passphrase")
DESTINATION = Source("destination passphrase", "SEAWALL_DST_PASSPHRASE", "--dst-passphrase-file")
NEW = Source("new passphrase", "SEAWALL_NEW_PASSPHRASE", "--new-passphrase-file")


def configured(source: Source = REPOSITORY, env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment names this passphrase at all (variable or file)."""
    env = os.environ if env is None else env
    return bool(env.get(source.variable) or env.get(source.file_variable))


def read_passphrase(
    source: Source = REPOSITORY,
    *,
    path: str | Path | None = None,
    home: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """The passphrase from the first source that has one (see the module docstring)."""
    env = os.environ if env is None else env
    if path:
        return read_file(Path(path), source)
    value = env.get(source.variable)
    if value:
        return value
    named = env.get(source.file_variable)
    if named:
        return read_file(Path(named), source)
    if home is not None and (home / "passphrase").exists():
        return read_file(home / "passphrase", source)
    where = f"set {source.variable} or {source.file_variable}, or use {source.option}"
    if home is not None:
        where += f", or write it to {home / 'passphrase'} (mode 600)"
    raise KeyMissing(f"no {source.what}: {where}")


def read_file(path: Path, source: Source = REPOSITORY) -> str:
    """A passphrase file's text without its trailing newline, refused when loose."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyMissing(f"{source.what} file {path} does not exist") from None
    except OSError as exc:
        raise KeyMissing(f"cannot read {source.what} file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise KeyMissing(f"{source.what} file {path} is not a regular file")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyMissing(
            f"{source.what} file {path} is open to group or others "
            f"(mode {stat.S_IMODE(mode):03o}); refused, as ssh refuses a loose private key: "
            f"chmod 600 {path}"
        )
    try:
        with path.open("rb") as f:
            raw = f.read(64 * 1024 + 1)
    except OSError as exc:
        raise KeyMissing(f"cannot read {source.what} file {path}: {exc.strerror}") from None
    if len(raw) > 64 * 1024:
        raise KeyMissing(f"{source.what} file {path} is over 64 KiB: not a passphrase")
    try:
        text = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise KeyMissing(f"{source.what} file {path} is not UTF-8 text") from None
    if not text:
        raise KeyMissing(f"{source.what} file {path} is empty")
    return text
