"""Sites, policies, workloads, plans and the checkpoint cache, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses

import pytest

from seawall import model
from seawall.db import StateStore
from seawall.errors import Conflict, NotFound
from seawall.model import Policy, RecoveryPlan, Site

from .conftest import checkpoint, workload

# ---- sites, policies, workloads, plans -----------------------------------------------


def test_sites(store: StateStore) -> None:
    b = Site("b", "openstack", {"cloud": "east"}, repository="s3://bucket/b")
    store.add_site(b)
    store.add_site(Site("a", "sim", {"path": "/tmp/a"}))
    assert store.get_site("b") == b
    assert [s.name for s in store.list_sites()] == ["a", "b"]
    with pytest.raises(Conflict, match="site 'b' already exists"):
        store.add_site(Site("b", "sim"))
    store.remove_site("b")
    with pytest.raises(NotFound, match=r"site 'b' not found; `seawall site list`"):
        store.get_site("b")
    with pytest.raises(NotFound):
        store.remove_site("b")


def test_policies(store: StateStore) -> None:
    gold = model.PRESETS["gold"]
    store.add_policy(gold)
    store.add_policy(Policy("cheap", rpo_seconds=86400))
    assert store.get_policy("gold") == gold
    assert [p.name for p in store.list_policies()] == ["cheap", "gold"]
    with pytest.raises(Conflict):
        store.add_policy(gold)
    store.remove_policy("cheap")
    with pytest.raises(NotFound, match="policy 'cheap'"):
        store.get_policy("cheap")


def test_workloads(store: StateStore) -> None:
    store.add_workload(workload("app"))
    store.add_workload(workload("crm", project="sales"))
    assert store.get_workload("app") == workload("app")
    assert [w.name for w in store.list_workloads()] == ["app", "crm"]
    assert [w.name for w in store.list_workloads(project="sales")] == ["crm"]
    with pytest.raises(Conflict):
        store.add_workload(workload("app"))
    moved = dataclasses.replace(workload("crm"), project="ops")
    store.update_workload(moved)
    assert store.get_workload("crm") == moved
    assert store.list_workloads(project="sales") == []
    with pytest.raises(NotFound, match="workload 'nope'"):
        store.update_workload(workload("nope"))
    store.remove_workload("crm")
    with pytest.raises(NotFound, match="`seawall workload list`"):
        store.get_workload("crm")


def test_plans_are_one_per_workload_and_target(store: StateStore) -> None:
    store.add_workload(workload("app"))
    plan = RecoveryPlan("app", "b", boot_groups=(model.BootGroup("db", ("db",)),))
    store.set_plan(plan)
    store.set_plan(RecoveryPlan("app", "c"))
    assert store.get_plan("app", "b") == plan
    bigger = dataclasses.replace(plan, health_checks=(model.HealthCheck("db"),))
    store.set_plan(bigger)  # upsert
    assert store.get_plan("app", "b") == bigger
    assert [(p.workload, p.target) for p in store.list_plans()] == [("app", "b"), ("app", "c")]
    assert store.list_plans("other") == []
    with pytest.raises(NotFound, match="no recovery plan for workload 'app' to site 'x'"):
        store.get_plan("app", "x")
    store.remove_workload("app")  # plans go with their workload
    assert store.list_plans() == []


# ---- checkpoint cache -----------------------------------------------------------------


def test_checkpoints(store: StateStore) -> None:
    c1, c2, c3 = (
        checkpoint("c1", created_at=1.0),
        checkpoint("c2", created_at=2.0),
        checkpoint("c3", workload="crm", created_at=3.0),
    )
    store.put_checkpoint(c1, sites=["a"])
    store.put_checkpoint(c2, sites=["a"])
    store.put_checkpoint(c3, sites=["b"])
    assert store.get_checkpoint("c1") == c1
    assert [c.id for c in store.list_checkpoints()] == ["c3", "c2", "c1"]
    assert [c.id for c in store.list_checkpoints(workload="app")] == ["c2", "c1"]
    assert [c.id for c in store.list_checkpoints(site="b")] == ["c3"]
    # putting again is idempotent and merges the sites holding a copy
    store.put_checkpoint(c1, sites=["b", "a"])
    store.put_checkpoint(c1, sites=["b"])
    assert store.checkpoint_sites("c1") == ["a", "b"]
    assert [c.id for c in store.list_checkpoints(workload="app", site="b")] == ["c1"]
    assert len(store.list_checkpoints()) == 3
    store.remove_checkpoint("c1")
    with pytest.raises(NotFound, match=r"checkpoint 'c1' not found; `seawall checkpoint list`"):
        store.get_checkpoint("c1")
    with pytest.raises(NotFound):
        store.checkpoint_sites("c1")
    with pytest.raises(NotFound):
        store.remove_checkpoint("c1")
