"""The API in-process (FastAPI's TestClient) over the ``shop`` world of tests/conftest.py.

Two tenants: project ``default`` owns ``shop``; project ``beta`` owns ``ledger`` (its own
server ``db`` on site a, ``Shop.deploy_ledger``; bronze policy); plus an admin token.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from seawall.api.app import Launcher, create_app
from seawall.api.auth import Authenticator, LocalTokens
from seawall.model import Selector
from seawall.web import add_dashboard


@dataclass
class Api:
    client: TestClient
    shop: Any
    launcher: Launcher
    tokens: dict[str, str]

    def h(self, who: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}", **extra}

    def get(self, who: str, url: str, **kw: Any) -> Any:
        return self.client.get(url, headers=self.h(who), **kw)

    def post(self, who: str, url: str, body: Any = None, **headers: str) -> Any:
        return self.client.post(url, json=body, headers=self.h(who, **headers))


@pytest.fixture
def api(shop: Any) -> Iterator[Api]:
    svc = shop.svc
    shop.deploy_ledger("beta")
    svc.create_workload("ledger", "a", Selector.parse("members:db"), "bronze", ["b"], "beta")
    tokens = LocalTokens(svc.home)
    issued = {
        "alpha": tokens.issue("default"),
        "beta": tokens.issue("beta"),
        "admin": tokens.issue("admin", admin=True),
    }
    auth = Authenticator(tokens)
    launcher = Launcher(svc, 1)
    app = create_app(svc, auth, launcher=launcher)
    add_dashboard(app, svc, auth.principal, launcher.start)
    with TestClient(app) as client:
        yield Api(client, shop, launcher, issued)
    launcher.pool.shutdown(wait=True)
