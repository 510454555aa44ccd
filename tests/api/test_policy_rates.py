"""The API reads a policy's bandwidth with the CLI's grammar (seawall.units): the
pydantic model lets ``bandwidth`` through to the model's codec, the one validator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from seawall.api.app import create_app
from seawall.api.auth import Authenticator, LocalTokens
from seawall.service import Service

Admin = tuple[TestClient, dict[str, str]]  #: a client and an admin's headers


@pytest.fixture
def admin(seawall_env: dict[str, str], tmp_path: Path) -> Iterator[Admin]:
    svc = Service(tmp_path / "home")
    tokens = LocalTokens(svc.home)
    headers = {"Authorization": f"Bearer {tokens.issue('admin', admin=True)}"}
    with TestClient(create_app(svc, Authenticator(tokens))) as client:
        yield client, headers
    svc.close()


def test_policy_bandwidth_as_text(admin: Admin) -> None:
    client, headers = admin
    body = {
        "name": "p",
        "bandwidth": {
            "bytes_per_second": "50M",
            "windows": [{"start_hour": 8, "end_hour": 18, "bytes_per_second": "1MiB/s"}],
        },
    }
    r = client.post("/v1/policies", json=body, headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["bandwidth"]["bytes_per_second"] == 50_000_000
    assert r.json()["bandwidth"]["windows"][0]["bytes_per_second"] == 1 << 20
    body = {"name": "q", "bandwidth": {"bytes_per_second": 10 << 20}}  # integers as before
    r = client.post("/v1/policies", json=body, headers=headers)
    assert r.status_code == 201 and r.json()["bandwidth"]["bytes_per_second"] == 10 << 20


def test_policy_bandwidth_malformed(admin: Admin) -> None:
    client, headers = admin
    body = {"name": "p", "bandwidth": {"bytes_per_second": "fast"}}
    r = client.post("/v1/policies", json=body, headers=headers)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["title"] == "InvalidInput"
    assert problem["field"] == "policy.bandwidth.bytes_per_second"
    assert "'fast' is not a rate like 50MiB/s" in problem["detail"]
