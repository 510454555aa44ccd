"""The REST API: tenant isolation, problem+json, pagination, runs that do not block."""

from __future__ import annotations

import time
from typing import Any

import pytest

pytestmark = pytest.mark.slow

FINAL = {"succeeded", "partially_failed", "reverted", "failed", "cancelled"}


def wait_run(api: Any, who: str, run_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = api.get(who, f"/v1/runs/{run_id}").json()
        if body["state"] in FINAL:
            return body  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


def test_auth_is_required_and_errors_are_problems(api: Any) -> None:
    r = api.client.get("/v1/workloads")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 401 and r.json()["title"] == "Unauthorized"
    r = api.client.get("/v1/workloads", headers={"Authorization": "Bearer sw_nope"})
    assert r.status_code == 401
    r = api.get("alpha", "/v1/workloads/nothing")
    assert r.status_code == 404 and r.json()["title"] == "NotFound"
    r = api.get("alpha", "/v1/workloads?limit=0")
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem")
    assert api.client.get("/v1/openapi.json").json()["info"]["title"] == "seawall"


def test_tenant_isolation(api: Any) -> None:
    # protect both workloads (as their owners) so there is something to hide
    runs = {
        "alpha": api.post("alpha", "/v1/workloads/shop/runs", {"operation": "protect"}),
        "beta": api.post("beta", "/v1/workloads/ledger/runs", {"operation": "protect"}),
    }
    for who, r in runs.items():
        assert r.status_code == 202, r.text
        assert wait_run(api, who, r.json()["id"])["state"] == "succeeded"
    shop_run, ledger_run = runs["alpha"].json()["id"], runs["beta"].json()["id"]

    def names(who: str, url: str, key: str = "name") -> set[str]:
        r = api.get(who, url)
        assert r.status_code == 200, r.text
        return {i[key] for i in r.json()["items"]}

    assert names("alpha", "/v1/workloads") == {"shop"}
    assert names("beta", "/v1/workloads") == {"ledger"}
    assert names("admin", "/v1/workloads") == {"shop", "ledger"}
    assert {c["workload"] for c in api.get("beta", "/v1/checkpoints").json()["items"]} == {"ledger"}
    assert names("beta", "/v1/runs", "id") == {ledger_run}
    assert names("admin", "/v1/runs", "id") == {shop_run, ledger_run}
    # B can neither read, change nor recover A's workload: 404 as if it did not exist
    shop_cp = api.get("alpha", "/v1/workloads/shop/checkpoints").json()["items"][0]["id"]
    ledger_cp = api.get("beta", "/v1/workloads/ledger/checkpoints").json()["items"][0]["id"]
    # the owner may diff its checkpoints (one with itself: no drift)
    r = api.get("alpha", f"/v1/checkpoints/{shop_cp}/diff/{shop_cp}")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "workload": "shop",
        "older": shop_cp,
        "newer": shop_cp,
        "added": [],
        "removed": [],
        "changed": [],
    }
    # two checkpoints of different workloads are not comparable, even for the admin
    r = api.get("admin", f"/v1/checkpoints/{ledger_cp}/diff/{shop_cp}")
    assert r.status_code == 422 and "same workload" in r.json()["detail"], r.text
    for url in (
        "/v1/workloads/shop",
        "/v1/workloads/shop/checkpoints",
        "/v1/workloads/shop/plans",
        f"/v1/checkpoints/{shop_cp}",
        f"/v1/checkpoints/{shop_cp}/diff/{shop_cp}",
        f"/v1/checkpoints/{ledger_cp}/diff/{shop_cp}",  # one of its own is not enough
        f"/v1/runs/{shop_run}",
        "/v1/runs?workload=shop",
        "/v1/events?workload=shop",
        "/v1/drills?workload=shop",
    ):
        r = api.get("beta", url)
        assert r.status_code == 404, (url, r.status_code)
    for op in ("drill", "failover", "protect"):
        assert api.post("beta", "/v1/workloads/shop/runs", {"operation": op}).status_code == 404
    assert api.post("beta", "/v1/drills", {"workload": "shop"}).status_code == 404
    assert api.post("beta", f"/v1/runs/{shop_run}/cancel").status_code == 404
    r = api.client.put(
        "/v1/workloads/shop/plans/b", json={"boot_groups": []}, headers=api.h("beta")
    )
    assert r.status_code == 404
    # a workload cannot be created into another project, nor a policy without admin
    body = {"name": "sneaky", "site": "a", "selector": "members:db", "policy": "bronze"}
    assert api.post("beta", "/v1/workloads", {**body, "project": "default"}).status_code == 403
    assert api.post("beta", "/v1/policies", {"name": "p1", "rpo_seconds": 60}).status_code == 403
    # events and usage are per project too
    assert all(e["workload"] != "shop" for e in api.get("beta", "/v1/events").json()["items"])
    assert set(api.get("beta", "/v1/usage").json()["projects"]) == {"beta"}
    assert set(api.get("admin", "/v1/usage").json()["projects"]) == {"default", "beta"}
    # reports: RPO per workload, own only
    assert [r["workload"] for r in api.get("alpha", "/v1/reports").json()] == ["shop"]


def test_pagination_and_idempotent_runs(api: Any) -> None:
    page1 = api.get("admin", "/v1/policies?limit=2").json()
    assert len(page1["items"]) == 2 and page1["next_marker"] == page1["items"][1]["name"]
    page2 = api.get("admin", f"/v1/policies?limit=2&marker={page1['next_marker']}").json()
    assert page2["items"][0]["name"] not in {p["name"] for p in page1["items"]}
    assert api.get("admin", "/v1/policies?marker=nope").status_code == 404

    t0 = time.monotonic()
    first = api.post("alpha", "/v1/workloads/shop/runs", {"operation": "protect"},
                     **{"Idempotency-Key": "k-1"})  # fmt: skip
    answered = time.monotonic() - t0
    assert (
        first.status_code == 202 and first.headers["location"] == f"/v1/runs/{first.json()['id']}"
    )
    again = api.post("alpha", "/v1/workloads/shop/runs", {"operation": "protect"},
                     **{"Idempotency-Key": "k-1"})  # fmt: skip
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    done = wait_run(api, "alpha", first.json()["id"])
    assert done["state"] == "succeeded" and done["progress"] == 1.0 and done["steps"]
    # the request returned before the run finished (it only preflighted)
    assert answered < done["result"]["duration_seconds"] + 1
    assert len([r for r in api.get("alpha", "/v1/runs").json()["items"]]) == 1


def test_drill_through_the_api_reports_rto(api: Any) -> None:
    r = api.post("alpha", "/v1/drills", {"workload": "shop"})
    assert r.status_code == 409  # preflight: no checkpoint at b yet, nothing created
    assert r.json()["problems"] and api.get("alpha", "/v1/runs").json()["items"] == []
    p = api.post("alpha", "/v1/workloads/shop/runs", {"operation": "protect"}).json()
    assert wait_run(api, "alpha", p["id"])["state"] == "succeeded"
    d = api.post("alpha", "/v1/drills", {"workload": "shop"})
    assert d.status_code == 202
    done = wait_run(api, "alpha", d.json()["id"], 180)
    assert done["state"] == "succeeded", done
    report = api.get("alpha", "/v1/drills").json()["items"][0]
    assert report["verified"] is True and report["rto_seconds"] > 0 and report["residue"] == 0
    usage = api.get("alpha", "/v1/usage").json()["projects"]["default"]
    assert usage["compute_hours"] > 0 and usage["bytes_replicated"] > 0
    metrics = api.client.get("/metrics", headers=api.h("admin")).text
    assert (
        'seawall_workload_achieved_rpo_seconds{policy="gold",project="default",workload="shop"}'
        in metrics
    )
    assert 'seawall_run_duration_seconds_count{kind="drill"} 1.0' in metrics
    assert api.client.get("/metrics", headers=api.h("alpha")).status_code == 403
