"""The tenant boundary at the cloud, through the API (issue 12, point 1 and the
checkpoint half of point 2): whatever selector or id project ``beta`` sends, it selects,
protects, fences and recovers nothing of project ``default``'s (``shop``)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from seawall.api.auth import LocalTokens
from seawall.model import ResourceKind
from seawall.service.rbac import OPERATOR

pytestmark = pytest.mark.slow

FINAL = {"succeeded", "partially_failed", "reverted", "failed", "cancelled"}


def wait_run(api: Any, who: str, run_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = api.get(who, f"/v1/runs/{run_id}").json()
        if body["state"] in FINAL:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


def shop_servers_running(api: Any) -> dict[str, str]:
    d = api.shop.driver("a")
    return {r.name: r.attrs["status"] for r in d.list_resources(ResourceKind.SERVER)}


def test_a_selector_naming_another_projects_servers_selects_nothing(api: Any) -> None:
    before = shop_servers_running(api)
    assert set(before) >= {"db", "app", "web"} and set(before.values()) == {"ACTIVE"}
    body = {"site": "a", "policy": "bronze", "targets": ["b"]}
    for name, selector in (("grab", "tag:app=shop"), ("nowhere", "tag:app=none")):
        r = api.post("beta", "/v1/workloads", {**body, "name": name, "selector": selector})
        assert r.status_code == 201, r.text
    answers = []
    for name in ("grab", "nowhere"):
        r = api.post("beta", f"/v1/workloads/{name}/runs", {"operation": "protect"})
        run = wait_run(api, "beta", r.json()["id"]) if r.status_code == 202 else r.json()
        answers.append((r.status_code, run.get("state"), run.get("error", run.get("detail"))))
    grab, nowhere = answers
    assert grab[0] in (202, 409, 422) and grab[1] != "succeeded", grab
    assert grab == (nowhere[0], nowhere[1], nowhere[2].replace("nowhere", "grab")), answers
    assert api.get("beta", "/v1/workloads/grab/checkpoints").json()["items"] == []
    # "project" selects every server of the caller's project: beta's own db, not shop's
    r = api.post("beta", "/v1/workloads", {**body, "name": "all-of-beta", "selector": "project"})
    assert r.status_code == 201, r.text
    run = api.post("beta", "/v1/workloads/all-of-beta/runs", {"operation": "protect"})
    assert run.status_code == 202, run.text
    assert wait_run(api, "beta", run.json()["id"])["state"] == "succeeded"
    cps = api.get("beta", "/v1/workloads/all-of-beta/checkpoints").json()["items"]
    cp = api.shop.svc.get_checkpoint(cps[0]["id"])
    shop_ids = {r.id for r in api.shop.driver("a").list_resources()}
    assert shop_ids.isdisjoint(r.id for r in cp.graph.resources)
    assert {r.name for r in cp.graph.of_kind(ResourceKind.SERVER)} == {"db"}
    # and a failover of it (by beta's DR operator) powers off beta's db only: shop's
    # servers keep running
    api.tokens["beta-operator"] = LocalTokens(api.shop.svc.home).issue("beta", roles=[OPERATOR])
    run = api.post("beta-operator", "/v1/workloads/all-of-beta/runs", {"operation": "failover"})
    assert run.status_code == 202, run.text
    assert wait_run(api, "beta", run.json()["id"])["state"] == "succeeded"
    assert shop_servers_running(api) == before


def test_a_recovery_from_another_projects_checkpoint_is_refused_as_a_missing_one(
    api: Any,
) -> None:
    r = api.post("alpha", "/v1/workloads/shop/runs", {"operation": "protect"})
    assert wait_run(api, "alpha", r.json()["id"])["state"] == "succeeded"
    shop_cp = api.get("alpha", "/v1/workloads/shop/checkpoints").json()["items"][0]["id"]
    r = api.post("beta", "/v1/workloads/ledger/runs", {"operation": "protect"})
    assert wait_run(api, "beta", r.json()["id"])["state"] == "succeeded"

    def drill(checkpoint_id: str) -> Any:
        body = {"operation": "drill", "checkpoint_id": checkpoint_id}
        return api.post("beta", "/v1/workloads/ledger/runs", body)

    theirs, missing = drill(shop_cp), drill("cp-20260101T000000-abcdef")
    assert theirs.status_code == missing.status_code
    assert theirs.status_code in (409, 422), theirs.text
    answer = theirs.text
    assert answer == missing.text.replace("cp-20260101T000000-abcdef", shop_cp)
    assert "shop" not in answer.replace(shop_cp, "")  # nothing of whose checkpoint it is
    runs = api.get("beta", "/v1/runs?workload=ledger").json()["items"]
    assert all(run["kind"] != "drill" for run in runs)  # no run was started from it
