"""Who is calling: local API tokens (embedded mode) and Keystone tokens.

A caller is a :class:`Principal`: the project its token is scoped to and the token's
roles (Keystone's role names; what each allows is :mod:`seawall.service.rbac`).
Visibility is decided by project on every call (``Principal.sees``): a workload, its
checkpoints, plans, runs, events and usage are visible to callers of its project and to
admins only; everyone else gets 404, as if it did not exist.

- **Local tokens** live in ``$SEAWALL_HOME/api-tokens.json`` as SHA-256 digests (the
  token itself is shown once, when issued by ``seawall serve --issue-token PROJECT
  --role ROLE``), file mode 0600, each with its roles. The file is re-read when it
  changes, so issuing needs no restart. An entry written before tokens had roles keeps
  its powers: ``admin: true`` means the ``admin`` role, anything else ``member``.
- **Keystone tokens** (``X-Auth-Token``) are validated against the configured Keystone
  with ``GET /v3/auth/tokens`` (the token validating itself, which Keystone's default
  policy allows to its subject), cached until expiry or for 60 s, whichever is sooner.
  The token's project id and name both match a workload's ``project``; its roles are
  the token's (with the roles Keystone implies); the ``admin`` role sees everything.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from seawall.errors import SeawallError, SiteUnavailable
from seawall.service import access
from seawall.service.access import Forbidden as Forbidden

TOKEN_FILE = "api-tokens.json"


class Unauthorized(SeawallError):
    """No valid token: send ``Authorization: Bearer <token>`` or ``X-Auth-Token``."""

    http_status = 401


#: What a token without recorded roles may do: what every token could before roles.
LEGACY_ROLES = frozenset({"member"})


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``admin`` and ``roles`` agree after construction: a
    Principal made with ``admin=True`` holds the ``admin`` role, and one whose roles
    hold ``admin`` is an admin (code that asks ``.admin`` keeps working)."""

    project: str
    admin: bool = False
    user: str = ""
    project_id: str = ""
    via: str = "local"  #: local or keystone
    roles: frozenset[str] = LEGACY_ROLES

    def __post_init__(self) -> None:
        roles = frozenset(self.roles) | ({"admin"} if self.admin else set())
        object.__setattr__(self, "roles", roles)
        object.__setattr__(self, "admin", "admin" in roles)

    def sees(self, project: str) -> bool:
        return access.sees(self, project)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class LocalTokens:
    """The token file under ``$SEAWALL_HOME`` (see the module docstring)."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / TOKEN_FILE
        self._lock = threading.Lock()
        self._mtime = -1.0
        self._tokens: dict[str, dict[str, Any]] = {}

    def issue(
        self,
        project: str,
        *,
        roles: Iterable[str] = LEGACY_ROLES,
        admin: bool = False,
        name: str = "",
    ) -> str:
        """A new token for ``project`` holding ``roles`` (and ``admin`` with ``admin``)."""
        held = sorted(set(roles) | ({"admin"} if admin else set()))
        if not held:
            raise SeawallError("a token needs at least one role: pass --role reader (or more)")
        token = "sw_" + secrets.token_urlsafe(32)
        with self._lock:
            data = self._read()
            data[_digest(token)] = {
                "project": project,
                "roles": held,
                "name": name or project,
                "created_at": time.time(),
            }
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh, indent=1)
            tmp.replace(self.path)
            self._mtime = -1.0
        return token

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise SeawallError(f"cannot read the API token file {self.path}: {exc}") from None
        return dict(data) if isinstance(data, dict) else {}

    def lookup(self, token: str) -> Principal | None:
        with self._lock:
            try:
                mtime = self.path.stat().st_mtime
            except FileNotFoundError:
                return None
            if mtime != self._mtime:
                self._tokens, self._mtime = self._read(), mtime
            digest = _digest(token)
            for known, entry in self._tokens.items():
                if hmac.compare_digest(known, digest):
                    return Principal(
                        project=str(entry["project"]),
                        user=str(entry.get("name", "")),
                        roles=entry_roles(entry),
                    )
        return None


def entry_roles(entry: dict[str, Any]) -> frozenset[str]:
    """A token file entry's roles; an entry from before roles keeps its old powers."""
    if "roles" in entry:
        return frozenset(str(r) for r in entry["roles"])
    return frozenset({"admin"}) if entry.get("admin") else LEGACY_ROLES


class KeystoneTokens:
    """Validates Keystone tokens against ``url`` (the identity endpoint, with or without /v3)."""

    def __init__(self, url: str, *, timeout: float = 10.0, cache_seconds: float = 60.0) -> None:
        base = url.rstrip("/")
        self.url = base if base.endswith("/v3") else base + "/v3"
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def lookup(self, token: str) -> Principal | None:
        key = _digest(token)
        now = time.time()
        with self._lock:
            hit = self._cache.get(key)
        if hit and hit[0] > now:
            return hit[1]
        try:
            resp = httpx.get(
                f"{self.url}/auth/tokens",
                headers={"X-Auth-Token": token, "X-Subject-Token": token},
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            raise SiteUnavailable(f"Keystone at {self.url} cannot be reached: {exc}") from None
        principal: Principal | None = None
        until = now + self.cache_seconds
        if resp.status_code == 200:
            body = resp.json().get("token", {})
            project = body.get("project") or {}
            roles = {r.get("name", "") for r in body.get("roles", [])}
            principal = Principal(
                project=str(project.get("name", "")),
                project_id=str(project.get("id", "")),
                user=str((body.get("user") or {}).get("name", "")),
                via="keystone",
                roles=frozenset(roles - {""}),
            )
            expires = body.get("expires_at")
            if expires:
                with_tz = dt.datetime.fromisoformat(expires.replace("Z", "+00:00"))
                until = min(until, with_tz.timestamp())
            if not principal.project and not principal.admin:
                principal = None  # unscoped tokens see nothing
        elif resp.status_code not in (401, 403, 404):
            raise SiteUnavailable(f"Keystone at {self.url} answered {resp.status_code}")
        with self._lock:
            self._cache[key] = (until, principal)
        return principal


class Authenticator:
    """Local tokens first, then Keystone when one is configured."""

    def __init__(self, local: LocalTokens, keystone: KeystoneTokens | None = None) -> None:
        self.local = local
        self.keystone = keystone

    def principal(self, token: str | None) -> Principal:
        if not token:
            raise Unauthorized("no token: send Authorization: Bearer <token> or X-Auth-Token")
        found = self.local.lookup(token)
        if found is None and self.keystone is not None and not token.startswith("sw_"):
            found = self.keystone.lookup(token)
        if found is None:
            raise Unauthorized("the token is not valid (expired, revoked or unknown)")
        return found
