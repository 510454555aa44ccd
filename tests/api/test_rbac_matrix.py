"""The RBAC acceptance matrix: every route of the OpenAPI document x every role x the
caller's own project's object and another project's, through real HTTP.

The routes come from ``app.openapi()``, so a new route cannot skip the matrix: one that
declares no ``x-rbac-rules`` fails, and so does one this file has no request for. The
expected answer of each cell follows the documented defaults (``LEAST`` below, pinned
against ``seawall.service.rbac`` and so against ``docs/reference/rbac.md``):

- no token: 401; another project's object: 404 (as if it did not exist), for every
  role but admin;
- own project's object: allowed when the role is at least the rule's least role, else
  403 naming the role needed; ``admin`` is allowed everywhere.

"Allowed" is any answer but 401, 403, 404 and 5xx: the request passed authorisation and
the service answered (a run request reuses the run its Idempotency-Key started, so the
matrix starts no failover; a cancel of a finished run may answer 409).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from seawall.service import rbac

pytestmark = pytest.mark.slow

#: The documented default of each rule: the least role that may do it.
LEAST = {
    "seawall:site:list": "any",
    "seawall:site:get": "any",
    "seawall:policy:list": "any",
    "seawall:policy:get": "any",
    "seawall:policy:create": "admin",
    "seawall:workload:list": "reader",
    "seawall:workload:get": "reader",
    "seawall:workload:create": "member",
    "seawall:checkpoint:list": "reader",
    "seawall:checkpoint:get": "reader",
    "seawall:plan:list": "reader",
    "seawall:plan:update": "member",
    "seawall:run:create:protect": "member",
    "seawall:run:create:drill": "member",
    "seawall:run:create:failover": "dr-operator",
    "seawall:run:create:migrate": "dr-operator",
    "seawall:run:create:failback": "dr-operator",
    "seawall:run:create:reprotect": "dr-operator",
    "seawall:run:list": "reader",
    "seawall:run:get": "reader",
    "seawall:run:cancel": "dr-operator",
    "seawall:report:get": "reader",
    "seawall:usage:get": "reader",
    "seawall:events:list": "reader",
    "seawall:metrics:get": "admin",
    "seawall:audit:list": "admin",
}
RANK = {"reader": 0, "member": 1, "dr-operator": 2, "admin": 3}
CALLERS = (None, "reader", "member", "dr-operator", "admin")
FINAL = {"succeeded", "partially_failed", "reverted", "failed", "cancelled"}
KEY = "rbac-matrix"


@dataclass
class Obj:
    """One project's objects the requests name."""

    name: str
    project: str
    checkpoint: str
    run: str


#: A request: (url, JSON body) for a rule on one project's objects; None when the route
#: names no object of a project (a list of the caller's own), so "other" has no cell.
Request = Callable[[str, Obj, str], tuple[str, Any] | None]


def own_only(url: str) -> Request:
    return lambda rule, obj, tag: (url, None) if tag == "own" else None


def by_workload(url: str) -> Request:
    return lambda rule, obj, tag: (f"{url}?workload={obj.name}", None)


def start_run(rule: str, obj: Obj, tag: str) -> tuple[str, Any]:
    return f"/v1/workloads/{obj.name}/runs", {"operation": rule.rsplit(":", 1)[1]}


def create_workload(rule: str, obj: Obj, tag: str) -> tuple[str, Any]:
    stamp = f"{tag}-{time.monotonic_ns()}"
    body = {
        "name": f"rbac-{stamp}",
        "site": "a",
        "selector": "members:db",
        "policy": "bronze",
        "targets": ["b"],
        "project": obj.project,
    }
    return "/v1/workloads", body


REQUESTS: dict[tuple[str, str], Request] = {
    ("get", "/v1/health"): own_only("/v1/health"),
    ("get", "/v1/sites"): own_only("/v1/sites"),
    ("get", "/v1/sites/{name}"): own_only("/v1/sites/a"),
    ("get", "/v1/policies"): own_only("/v1/policies"),
    ("get", "/v1/policies/{name}"): own_only("/v1/policies/gold"),
    ("post", "/v1/policies"): lambda rule, obj, tag: (
        ("/v1/policies", {"name": f"rbac-{time.monotonic_ns()}"}) if tag == "own" else None
    ),
    ("get", "/v1/workloads"): own_only("/v1/workloads"),
    ("get", "/v1/audit"): own_only("/v1/audit"),
    ("post", "/v1/workloads"): create_workload,
    ("get", "/v1/workloads/{name}"): lambda r, o, t: (f"/v1/workloads/{o.name}", None),
    ("get", "/v1/workloads/{name}/checkpoints"): lambda r, o, t: (
        f"/v1/workloads/{o.name}/checkpoints",
        None,
    ),
    ("get", "/v1/checkpoints"): by_workload("/v1/checkpoints"),
    ("get", "/v1/checkpoints/{checkpoint_id}"): lambda r, o, t: (
        f"/v1/checkpoints/{o.checkpoint}",
        None,
    ),
    ("get", "/v1/checkpoints/{older}/diff/{newer}"): lambda r, o, t: (
        f"/v1/checkpoints/{o.checkpoint}/diff/{o.checkpoint}",
        None,
    ),
    ("get", "/v1/workloads/{name}/plans"): lambda r, o, t: (f"/v1/workloads/{o.name}/plans", None),
    ("put", "/v1/workloads/{name}/plans/{target}"): lambda r, o, t: (
        f"/v1/workloads/{o.name}/plans/b",
        {"boot_groups": [{"name": "data", "servers": ["db"]}]},
    ),
    ("post", "/v1/workloads/{name}/runs"): start_run,
    ("get", "/v1/runs"): by_workload("/v1/runs"),
    ("get", "/v1/runs/{run_id}"): lambda r, o, t: (f"/v1/runs/{o.run}", None),
    ("post", "/v1/runs/{run_id}/cancel"): lambda r, o, t: (f"/v1/runs/{o.run}/cancel", None),
    ("get", "/v1/drills"): by_workload("/v1/drills"),
    ("post", "/v1/drills"): lambda r, o, t: ("/v1/drills", {"workload": o.name}),
    ("get", "/v1/reports"): own_only("/v1/reports"),
    ("get", "/v1/usage"): own_only("/v1/usage"),
    ("get", "/v1/events"): by_workload("/v1/events"),
}


def expected(rule: str, caller: str | None, tag: str) -> str:
    """What the documented defaults say the cell answers: 401, 404, 403 or allowed."""
    if caller is None:
        return "401"
    least = LEAST[rule]
    if least == "any" or caller == "admin":
        return "allowed"
    if tag == "other":
        # creating in another project names no existing object: forbidden, not hidden
        return "403" if rule == "seawall:workload:create" else "404"
    return "allowed" if RANK[caller] >= RANK[least] else "403"


def outcome(status: int) -> str:
    if status in (401, 403, 404) or status >= 500:
        return str(status)
    return "allowed"


@pytest.fixture
def world(api: Any) -> dict[str, Obj]:
    """Both projects' workloads protected once (by the admin, with the matrix's
    Idempotency-Key, so that every run request of the matrix reuses those runs), and
    the role tokens of project ``default``."""
    svc = api.shop.svc
    from seawall.api.auth import LocalTokens

    tokens = LocalTokens(svc.home)
    for role in rbac.ROLES:
        api.tokens[role] = tokens.issue("default", roles=[role], name=f"{role} of default")
    out = {}
    for tag, (name, project) in {"own": ("shop", "default"), "other": ("ledger", "beta")}.items():
        r = api.post(
            "admin",
            f"/v1/workloads/{name}/runs",
            {"operation": "protect"},
            **{"Idempotency-Key": KEY},
        )
        assert r.status_code == 202, r.text
        run = r.json()["id"]
        deadline = time.monotonic() + 120
        while api.get("admin", f"/v1/runs/{run}").json()["state"] not in FINAL:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        svc_run = svc.get_run(run)
        assert svc_run.state.value == "succeeded", svc_run.error
        cps = api.get("admin", f"/v1/workloads/{name}/checkpoints").json()["items"]
        out[tag] = Obj(name=name, project=project, checkpoint=cps[0]["id"], run=run)
    return out


def test_the_documented_defaults_are_the_matrix(api: Any) -> None:
    """The defaults are the matrix's, and each rule documents exactly the routes that
    declare it (what docs/reference/rbac.md lists)."""
    assert rbac.LEAST_ROLE == LEAST
    declared: dict[str, set[str]] = {r.name: set() for r in rbac.ACTION_RULES}
    declared["seawall:metrics:get"].add("GET /metrics")  # not in the OpenAPI document
    for path, methods in api.client.app.openapi()["paths"].items():
        for method, op in methods.items():
            for rule in op.get("x-rbac-rules", []):
                declared[rule].add(f"{method.upper()} {path}")
    documented = {
        r.name: {f"{o['method']} {o['path']}" for o in r.operations} for r in rbac.ACTION_RULES
    }
    assert documented == declared


def test_every_route_and_role_follows_the_documented_defaults(
    api: Any, world: dict[str, Obj]
) -> None:
    client: TestClient = api.client
    cells: list[str] = []
    wrong: list[str] = []
    for path, methods in client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        for method, op in methods.items():
            where = f"{method.upper()} {path}"
            assert "x-rbac-rules" in op, f"{where} declares no RBAC rule: use needs(...)"
            assert (method, path) in REQUESTS, f"{where} has no request in the RBAC matrix"
            rules = op["x-rbac-rules"] or [None]
            for rule in rules:
                assert rule is None or rule in LEAST, f"{where}: unknown rule {rule}"
                for tag, obj in world.items():
                    for caller in CALLERS:
                        # built per caller: a created name is new for each of them
                        req = REQUESTS[(method, path)](rule or "", obj, tag)
                        if req is None:
                            continue
                        url, body = req
                        headers = {"Idempotency-Key": KEY}
                        if caller is not None:
                            headers["Authorization"] = f"Bearer {api.tokens[caller]}"
                        r = client.request(method, url, json=body, headers=headers)
                        want = "allowed" if rule is None else expected(rule, caller, tag)
                        got = outcome(r.status_code)
                        cells.append(where)
                        if got != want:
                            wrong.append(
                                f"{where} {url} as {caller} ({rule}, {tag}): "
                                f"{r.status_code} {r.text[:160]}, expected {want}"
                            )
                        elif got == "403":
                            assert "role" in r.json()["detail"], r.text
    assert not wrong, "\n".join(wrong)
    assert len(cells) > 200  # every route x role x project, not a few


def test_metrics_follow_their_rule(api: Any, world: dict[str, Obj]) -> None:
    """``/metrics`` is outside the OpenAPI document but has its rule (admin only)."""
    for caller in rbac.ROLES:
        r = api.get(caller, "/metrics")
        assert outcome(r.status_code) == expected("seawall:metrics:get", caller, "own"), r.text
