"""The process's handles: its home, the state database, the passphrase, and one driver
and one repository per site, opened on first use and shared by every thread.

:class:`Handles` is also the :class:`~seawall.orchestrate.runtime.Runtime` the steps of
this process reach sites and the journal through: the service installs it once.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from pathlib import Path

from seawall import passphrases
from seawall.clouds import CloudDriver, open_site
from seawall.db import StateStore
from seawall.errors import InvalidInput
from seawall.model import DEFAULT_PROJECT, Site
from seawall.repo import Repository
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


class Handles:
    """Live objects per site, cached; safe to share between threads."""

    def __init__(self, home: Path, db: StateStore) -> None:
        self.home = home
        self._db = db
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
                self._repos[site] = Repository.open(open_storage(s.repository), self.passphrase())
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
