"""The process's handles: its home, the state database, the passphrase, and one driver
and one repository per site, opened on first use and shared by every thread.

:class:`Handles` is also the :class:`~seawall.orchestrate.runtime.Runtime` the steps of
this process reach sites and the journal through: the service installs it once.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from seawall import passphrases
from seawall.clouds import CloudDriver, open_site
from seawall.db import StateStore
from seawall.errors import InvalidInput
from seawall.model import DEFAULT_PROJECT, Site
from seawall.repo import Repository
from seawall.repo.keyfile import make_slot, parse_slot, unwrap_slot
from seawall.storage import open_storage


def default_home() -> Path:
    return Path(os.environ.get("SEAWALL_HOME") or Path.home() / ".seawall")


def new_id(prefix: str) -> str:
    """A sortable, unique id: ``<prefix>-<UTC time>-<6 hex digits>``."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return f"{prefix}-{stamp}-{secrets.token_hex(3)}"


def database_urls(home: Path, db_url: str | None) -> tuple[str, str]:
    """(state database, TaskFlow engine database): one server database holds both;
    SQLite keeps the engine's tables in a file of their own beside ``state.db``."""
    url = db_url or os.environ.get("SEAWALL_DB_URL") or f"sqlite:///{home / 'state.db'}"
    engine_url = url if not url.startswith("sqlite") else f"sqlite:///{home / 'engine.db'}"
    return url, engine_url


def read_passphrase(home: Path) -> str:
    """The repository passphrase by :mod:`seawall.passphrases`' rule, ``<home>/passphrase``
    last."""
    return passphrases.read_passphrase(home=home)


class SiteCredentials:
    """A site's repository credentials (S3 access keys), encrypted at rest in
    ``<home>/credentials/<site>.key``, mode 0600.

    They are kept out of the state database on purpose: the database is shared between
    servers, backed up and read by operators, and a site's record is printed. Each file
    is a key slot of the repository format (:mod:`seawall.repo.keyfile`: argon2id from
    the repository passphrase, AES-256-GCM), so it opens only with the passphrase that
    already guards the repositories, and a copied file is useless without it.
    """

    def __init__(self, home: Path, passphrase: Callable[[], str]) -> None:
        self.dir = home / "credentials"
        self._passphrase = passphrase

    def _path(self, site: str) -> Path:
        return self.dir / f"{site}.key"

    def save(self, site: str, credentials: Mapping[str, str]) -> None:
        """Keep ``credentials`` for ``site`` (none: forget them)."""
        if not credentials:
            self.remove(site)
            return
        kdf = os.environ.get("SEAWALL_KDF", "default")
        plain = json.dumps(dict(credentials), sort_keys=True).encode()
        _, sealed = make_slot(plain, self._passphrase(), kdf)
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self._path(site).with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(sealed)
        os.replace(tmp, self._path(site))

    def load(self, site: str) -> dict[str, str]:
        """The credentials kept for ``site``; none if it has none."""
        try:
            sealed = self._path(site).read_bytes()
        except FileNotFoundError:
            return {}
        plain = unwrap_slot(parse_slot(sealed, str(self._path(site))), self._passphrase())
        if plain is None:
            raise InvalidInput(
                f"{self._path(site)}: the passphrase does not open site {site}'s credentials; "
                f"give them again with `seawall site credentials {site}`",
                field="passphrase",
            )
        loaded: dict[str, str] = json.loads(plain)
        return loaded

    def remove(self, site: str) -> None:
        self._path(site).unlink(missing_ok=True)


class Handles:
    """Live objects per site, cached; safe to share between threads."""

    def __init__(self, home: Path, db: StateStore) -> None:
        self.home = home
        self._db = db
        self.credentials = SiteCredentials(home, self.passphrase)
        self._lock = threading.RLock()
        self._drivers: dict[str, CloudDriver] = {}
        self._repos: dict[str, Repository] = {}

    @property
    def db(self) -> StateStore:
        return self._db

    def site(self, name: str) -> Site:
        return self._db.get_site(name)

    def driver(self, site: str, project: str = DEFAULT_PROJECT) -> CloudDriver:
        """The site's driver as ``project`` sees it (``CloudDriver.for_project``): a
        workload's discovery, fencing and recovery act only inside its own project."""
        with self._lock:
            if site not in self._drivers:
                self._drivers[site] = open_site(self.site(site))
            if project == DEFAULT_PROJECT:
                return self._drivers[site]
            key = f"{site}\0{project}"
            if key not in self._drivers:
                self._drivers[key] = self._drivers[site].for_project(project)
            return self._drivers[key]

    def repository(self, site: str) -> Repository:
        with self._lock:
            if site not in self._repos:
                s = self.site(site)
                if not s.repository:
                    raise InvalidInput(f"site {site} has no repository", field="site.repository")
                storage = open_storage(s.repository, self.credentials.load(site))
                self._repos[site] = Repository.open(storage, self.passphrase())
            return self._repos[site]

    def forget(self, site: str) -> None:
        """Drop cached driver/repository objects (after a site was rebuilt or removed)."""
        with self._lock:
            for key in [k for k in self._drivers if k == site or k.startswith(f"{site}\0")]:
                self._drivers.pop(key)
            repo = self._repos.pop(site, None)
            if repo is not None:
                repo.close()

    def passphrase(self) -> str:
        return read_passphrase(self.home)

    def close(self) -> None:
        with self._lock:
            for repo in self._repos.values():
                repo.close()
            self._repos.clear()
