"""The audit trail through the API (issue 12, point 7): every call that is not a read is
recorded, refused ones included, with who, what, when and from where; admins read it at
``GET /v1/audit``; nothing secret is ever in it. Real parts: the ``api`` fixture's
FastAPI app over the shop world, its SQLite state database and a real JSON-lines file."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from seawall.api.app import create_app
from seawall.db.schema import audit_t


def audit(api: Any, **query: Any) -> list[dict[str, Any]]:
    """Every audit record matching ``query``, newest first (as the admin)."""
    r = api.client.get("/v1/audit", params=query, headers=api.h("admin"))
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def test_a_refused_call_from_another_project_is_audited_with_who_what_and_outcome(
    api: Any,
) -> None:
    r = api.client.post(
        "/v1/workloads/shop/runs",
        json={"operation": "failover"},
        headers=api.h("beta", **{"User-Agent": "attacker/1.0", "X-Request-Id": "req-b-1"}),
    )
    assert r.status_code == 404
    assert r.headers["x-request-id"] == "req-b-1"  # a client can quote it

    (rec,) = audit(api, action="start_run")
    assert rec["outcome"] == "denied" and rec["status"] == 404
    assert rec["method"] == "POST" and rec["route"] == "/v1/workloads/{name}/runs"
    assert rec["target"] == {"name": "shop"}
    assert rec["initiator"] == {
        "user": "beta",
        "project": "beta",
        "project_id": "",
        "roles": ["member"],
        "via": "local",
    }
    assert rec["client"] == "testclient" and rec["user_agent"] == "attacker/1.0"
    assert rec["request_id"] == "req-b-1"
    assert abs(rec["at"] - time.time()) < 60 and rec["time"].endswith("+00:00")


def test_calls_refused_before_any_route_are_audited_and_reads_are_not(api: Any) -> None:
    assert api.client.post("/v1/workloads/shop/runs", json={}).status_code == 401
    assert api.post("alpha", "/v1/workloads/shop/runs", {"operation": "explode"}).status_code == 422
    assert api.post("alpha", "/v1/no-such-thing").status_code == 404
    assert api.get("alpha", "/v1/workloads").status_code == 200  # a read: not audited

    nobody, invalid, unknown = reversed(audit(api, since=time.time() - 60))
    assert (nobody["status"], nobody["outcome"], nobody["initiator"]["user"]) == (401, "denied", "")
    assert nobody["request_id"].startswith("req-")  # made up when the client sent none
    assert (invalid["status"], invalid["outcome"], invalid["initiator"]["project"]) == (
        422,
        "failed",
        "default",
    )
    assert unknown["action"] == "unknown" and unknown["route"] == "/v1/no-such-thing"
    assert unknown["initiator"]["project"] == "default"  # the token is looked up again
    assert not audit(api, action="list_workloads")


def test_only_admins_read_the_audit_trail(api: Any) -> None:
    for who in ("alpha", "beta"):
        r = api.get(who, "/v1/audit")
        assert r.status_code == 403 and r.json()["title"] == "Forbidden"
    assert api.get("admin", "/v1/audit").status_code == 200
    assert not audit(api, outcome="denied")  # reading changes nothing: not recorded


def test_an_admin_filters_and_pages_the_audit_trail(api: Any) -> None:
    t0 = time.time()
    for who in ("alpha", "beta", "alpha"):
        api.post(who, "/v1/workloads/ledger/runs", {"operation": "explode"})
    api.post("beta", "/v1/policies", {"name": "platinum"})  # members may not: 403
    t1 = time.time()
    everything = audit(api, since=t0, until=t1)
    assert len(everything) == 4
    assert [r["id"] for r in everything] == sorted((r["id"] for r in everything), reverse=True)

    # alpha's token is named after its project, "default"
    assert {r["initiator"]["user"] for r in audit(api, user="default")} == {"default"}
    assert len(audit(api, user="default")) == 2
    assert len(audit(api, project="beta")) == 2
    assert [r["status"] for r in audit(api, outcome="denied")] == [403]
    assert [r["action"] for r in audit(api, action="create_policy")] == ["create_policy"]
    assert audit(api, until=t0) == []

    pages, marker = [], None
    while True:
        query: dict[str, Any] = {"limit": 1, "since": t0}
        if marker:
            query["marker"] = marker
        r = api.client.get("/v1/audit", params=query, headers=api.h("admin")).json()
        pages += [i["id"] for i in r["items"]]
        marker = r["next_marker"]
        if marker is None:
            break
    assert pages == [r["id"] for r in everything]


def test_nothing_secret_is_recorded_in_the_table_or_the_json_lines_file(
    api: Any, tmp_path: Path
) -> None:
    trail = tmp_path / "audit" / "seawall.jsonl"
    api.shop.svc.audit.file = trail
    passphrase = "correct-horse-battery-staple-9b1f"
    body = {"name": "x", "rpo": "1h", "passphrase": passphrase}
    headers = {"X-Auth-Token": api.tokens["admin"], "Cookie": f"seawall_token={api.tokens['beta']}"}
    r = api.client.post(f"/v1/policies?note={passphrase}", json=body, headers=headers)
    assert r.status_code in (201, 422), r.text
    form = api.client.get("/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf, form
    data = {"token": api.tokens["alpha"], "next": "/", "csrf": csrf.group(1)}
    r = api.client.post("/login", data=data)
    assert r.status_code in (200, 303)

    with sa.create_engine(api.shop.svc.db.url).connect() as conn:
        stored = json.dumps([dict(row._mapping) for row in conn.execute(sa.select(audit_t))])
    lines = trail.read_text().splitlines()
    assert len(lines) == 2 and [json.loads(line)["action"] for line in lines] == [
        "create_policy",
        "dashboard.login",
    ]
    assert trail.stat().st_mode & 0o777 == 0o600
    for text in (stored, trail.read_text()):
        for secret in (passphrase, *api.tokens.values()):
            assert secret not in text


def test_the_json_lines_file_uses_cadf_field_names(api: Any, tmp_path: Path) -> None:
    api.shop.svc.audit.file = tmp_path / "audit.jsonl"
    api.post("beta", "/v1/workloads/shop/runs", {"operation": "drill"})
    (line,) = (tmp_path / "audit.jsonl").read_text().splitlines()
    event = json.loads(line)
    assert event["typeURI"] == "http://schemas.dmtf.org/cloud/audit/1.0/event"
    assert event["action"] == "start_run" and event["outcome"] == "failure"
    assert event["reason"] == {"reasonType": "HTTP", "reasonCode": "404", "outcome": "denied"}
    assert event["initiator"]["project_name"] == "beta"
    assert event["initiator"]["credential"] == {"type": "local"}
    assert event["initiator"]["host"]["address"] == "testclient"
    assert event["target"]["id"] == "/v1/workloads/{name}/runs"
    assert event["target"]["name"] == "shop"
    assert event["eventTime"].endswith("+00:00")


def test_a_run_records_who_started_it(api: Any) -> None:
    r = api.post("alpha", "/v1/workloads/shop/runs", {"operation": "protect"})
    assert r.status_code == 202, r.text
    run = r.json()
    assert run["params"]["initiator"] == {
        "user": "default",
        "project": "default",
        "project_id": "",
        "roles": ["member"],
        "via": "local",
    }
    (call,) = audit(api, action="start_run")
    assert call["outcome"] == "allowed" and call["status"] == 202
    assert call["target"]["location"] == f"/v1/runs/{run['id']}"
    (start,) = audit(api, action="run.start")
    assert start["target"] == {"run_id": run["id"], "workload": "shop", "project": "default"}
    assert start["outcome"] == "pending" and start["route"] == "protect"
    assert start["initiator"] == run["params"]["initiator"]

    deadline = time.monotonic() + 120
    while not (end := audit(api, action="run.end")):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert end[0]["target"]["run_id"] == run["id"] and end[0]["target"]["state"] == "succeeded"
    assert end[0]["outcome"] == "allowed" and end[0]["initiator"]["user"] == "default"


def test_a_body_refused_as_too_large_is_audited(api: Any) -> None:
    """FastAPI's own body limit answers 413 outside the routes; the record still names
    the caller (its token looked up again) and the status."""
    app = create_app(api.shop.svc, api.client.app.state.auth, launcher=api.launcher)
    app.max_body_size = 1000
    with TestClient(app) as client:
        big = {"operation": "protect", "target": "x" * 5000}
        r = client.post("/v1/workloads/shop/runs", json=big, headers=api.h("alpha"))
    assert r.status_code == 413
    (rec,) = audit(api, action="start_run")
    assert (rec["status"], rec["outcome"]) == (413, "failed")
    assert rec["initiator"]["project"] == "default"
