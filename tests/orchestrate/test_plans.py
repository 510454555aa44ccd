"""The pure planners: deterministic, golden, drill isolation, boot order, preflight.

Golden plans (stage by stage: step name, task, requires, provides) for protect, failover,
drill and migrate of one fixed graph live in ``tests/data/plans/``. After an intended
plan change, regenerate them with ``SEAWALL_UPDATE_GOLDEN=1 pytest tests/orchestrate``
and review the diff like code.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck as HypothesisHealthCheck
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.model import (
    BootGroup,
    CheckKind,
    Checkpoint,
    Consistency,
    HealthCheck,
    IpPolicy,
    Mappings,
    Policy,
    QuiesceHook,
    RecoveryPlan,
    Resource,
    ResourceGraph,
    ResourceKind,
    ResourceRef,
    Retention,
    RunKind,
    Script,
    Selector,
    VolumeImageRef,
    Workload,
    dump,
)
from seawall.orchestrate.plans import (
    FlowPlan,
    RecoverMode,
    default_recovery_plan,
    id_symbol,
    labels,
    plan_from_dict,
    plan_migrate,
    plan_protect,
    plan_recover,
    recovery_problems,
)

K = ResourceKind
GOLDEN = Path(__file__).parent.parent / "data" / "plans"
RUN = "run-20240101T000000-abcdef"
T0 = 1_700_000_000.0


# --------------------------------------------------------------------------------------
# A fixed workload: db + web on two networks behind a router, with a floating IP
# --------------------------------------------------------------------------------------


def ref(kind: ResourceKind, id_: str) -> ResourceRef:
    return ResourceRef(kind, id_)


def R(
    kind: ResourceKind,
    name: str,
    attrs: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    **refs: tuple[ResourceRef, ...],
) -> Resource:
    return Resource(kind, f"{kind.value}-{name}", name, attrs or {}, refs, tags or {})


def fixed_graph(*, with_cache: bool = False) -> ResourceGraph:
    net = {n: ref(K.NETWORK, f"network-{n}") for n in ("front", "back")}
    sub = {n: ref(K.SUBNET, f"subnet-{n}-subnet") for n in ("front", "back")}
    sg = {n: ref(K.SECURITY_GROUP, f"security_group-{n}-sg") for n in ("web", "db")}
    image = ref(K.IMAGE, "image-os")
    flavor = ref(K.FLAVOR, "flavor-m1.small")
    key = ref(K.KEYPAIR, "keypair-key")
    app = {"app": "shop", "seawall:key": "x"}

    def port(name: str, network: str, group: str, ip: str) -> Resource:
        return R(
            K.PORT,
            name,
            {"fixed_ips": [ip], "mac_address": "fa:16:3e:00:00:01", "status": "ACTIVE"},
            network=(net[network],),
            subnet=(sub[network],),
            security_groups=(sg[group],),
        )

    def server(name: str, ports: list[str], volumes: list[str]) -> Resource:
        return R(
            K.SERVER,
            name,
            {"hostname": name, "status": "ACTIVE", "access_address": "127.0.0.9"},
            app,
            flavor=(flavor,),
            image=(image,),
            keypair=(key,),
            ports=tuple(ref(K.PORT, f"port-{p}") for p in ports),
            volumes=tuple(ref(K.VOLUME, f"volume-{v}") for v in volumes),
        )

    resources = [
        R(K.NETWORK, "front", {"external": False, "isolated": False}),
        R(K.NETWORK, "back", {"external": False, "isolated": False}),
        R(K.SUBNET, "front-subnet", {"cidr": "10.0.1.0/24"}, network=(net["front"],)),
        R(K.SUBNET, "back-subnet", {"cidr": "10.0.2.0/24"}, network=(net["back"],)),
        R(K.ROUTER, "router", {"external_gateway": True}, subnets=(sub["front"], sub["back"])),
        R(K.SECURITY_GROUP, "web-sg", {"rules": []}),
        R(K.SECURITY_GROUP, "db-sg", {"rules": []}),
        R(K.IMAGE, "os", {"size": 4096}),
        R(K.FLAVOR, "m1.small", {"vcpus": 1}),
        R(K.KEYPAIR, "key"),
        port("db-port", "back", "db", "10.0.2.10"),
        port("web-port", "front", "web", "10.0.1.10"),
        port("web-port-back", "back", "web", "10.0.2.11"),
        R(K.VOLUME, "db-boot", {"size": 1 << 20, "volume_type": "ssd"}, image=(image,)),
        R(K.VOLUME, "db-data", {"size": 4 << 20, "availability_zone": "az1"}),
        R(K.VOLUME, "web-boot", {"size": 1 << 20}, image=(image,)),
        server("db", ["db-port"], ["db-boot", "db-data"]),
        server("web", ["web-port", "web-port-back"], ["web-boot"]),
        R(
            K.FLOATING_IP,
            "web-fip",
            {"address": "203.0.113.5"},
            port=(ref(K.PORT, "port-web-port"),),
        ),
    ]
    if with_cache:
        resources += [
            port("cache-port", "back", "db", "10.0.2.20"),
            R(K.VOLUME, "cache-boot", {"size": 1 << 20}, image=(image,)),
            server("cache", ["cache-port"], ["cache-boot"]),
        ]
    return ResourceGraph(tuple(resources))


WORKLOAD = Workload("shop", "a", Selector.parse("tag:app=shop"), "gold", ("b",))
POLICY = Policy(
    "app",
    rpo_seconds=900,
    retention=Retention(last=3, daily=7),
    consistency=Consistency.APPLICATION,
    quiesce=(QuiesceHook(agent="guest-agent", servers=("db",)),),
    data_path="cbt",
    targets=("b", "c"),
)
PLAN = RecoveryPlan(
    workload="shop",
    target="b",
    mappings=Mappings(
        network={"back": "prod-back"},
        flavor={"m1.small": "m2.small"},
        availability_zone={"az1": "az9"},
        volume_type={"ssd": "fast"},
    ),
    boot_groups=(BootGroup("data", ("db",)), BootGroup("web", ("web",))),
    health_checks=(
        HealthCheck("db", CheckKind.TCP, port=5432),
        HealthCheck("web", CheckKind.HTTP, port=80, path="/health", expect="ok"),
        HealthCheck("web", CheckKind.STATUS),
    ),
    scripts=(
        Script("after:data", ("migrate-db", "--check")),
        Script("final", ("smoke-test",)),
    ),
)


def checkpoint(graph: ResourceGraph | None = None, cid: str = "cp-1") -> Checkpoint:
    graph = graph or fixed_graph()
    return Checkpoint(
        id=cid,
        workload="shop",
        site="a",
        created_at=T0,
        graph=graph,
        volumes=tuple(
            VolumeImageRef(v.id, f"img-{v.id}", int(v.attrs["size"]), f"snap-{v.id}")
            for v in graph.of_kind(K.VOLUME)
        ),
        images={i.id: f"stream-{i.id}" for i in graph.of_kind(K.IMAGE)},
    )


def protect(previous: Checkpoint | None = None, graph: ResourceGraph | None = None) -> FlowPlan:
    return plan_protect(
        run_id=RUN,
        workload=WORKLOAD,
        policy=POLICY,
        graph=graph or fixed_graph(),
        checkpoint_id="cp-2",
        created_at=T0 + 60,
        previous=previous,
    )


def recover(mode: RecoverMode, plan: RecoveryPlan = PLAN, cp: Checkpoint | None = None) -> FlowPlan:
    kind = {
        RecoverMode.FAILOVER: RunKind.FAILOVER,
        RecoverMode.DRILL: RunKind.DRILL,
        RecoverMode.MIGRATE: RunKind.MIGRATE,
    }[mode]
    return plan_recover(
        run_id=RUN,
        kind=kind,
        mode=mode,
        checkpoint=cp or checkpoint(),
        plan=plan,
        repository_site="b",
    )


def migrate(kind: RunKind = RunKind.MIGRATE) -> FlowPlan:
    return plan_migrate(
        run_id=RUN,
        kind=kind,
        workload=WORKLOAD,
        policy=POLICY,
        graph=fixed_graph(),
        checkpoint_id="cp-final",
        created_at=T0 + 120,
        previous=checkpoint(),
        plan=PLAN,
    )


def shape(plan: FlowPlan) -> dict[str, Any]:
    return {
        "kind": plan.kind.value,
        "title": plan.title,
        "stages": [
            {
                "name": st_.name,
                "parallel": st_.parallel,
                "steps": [
                    {
                        "name": s.name,
                        "task": s.task,
                        "requires": list(s.requires),
                        "provides": s.provides,
                    }
                    for s in st_.steps
                ],
            }
            for st_ in plan.stages
        ],
    }


PLANS = {
    "protect-full": lambda: protect(),
    "protect-incremental": lambda: protect(previous=checkpoint()),
    "failover": lambda: recover(RecoverMode.FAILOVER),
    "drill": lambda: recover(RecoverMode.DRILL),
    "migrate": lambda: migrate(),
}


# --------------------------------------------------------------------------------------
# Golden plans
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PLANS))
def test_golden_plan(name: str) -> None:
    got = shape(PLANS[name]())
    path = GOLDEN / f"{name}.json"
    if os.environ.get("SEAWALL_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(got, indent=1) + "\n")
    assert path.exists(), f"missing {path}; run with SEAWALL_UPDATE_GOLDEN=1"
    want = json.loads(path.read_text())
    for i, (g, w) in enumerate(zip(got["stages"], want["stages"], strict=False)):
        assert g == w, f"stage {i} ({w['name']}) differs from {path.name}"
    assert got == want


def test_golden_stage_names() -> None:
    """The golden files, read as a reviewer would: the stages of each operation."""
    stages = {n: [s["name"] for s in shape(f())["stages"]] for n, f in PLANS.items()}
    assert stages["protect-full"] == [
        "prepare",
        "quiesce",
        "snapshot",
        "thaw",
        "upload",
        "commit",
        "replicate",
        "tidy",
    ]
    recovery = [
        "preflight",
        "network:network",
        "network:subnet",
        "network:router",
        "network:security_group",
        "compute:keypair",
        "compute:flavor",
        "images",
        "volumes",
        "ports",
        "boot:data",
        "healthy:data",
        "boot:web",
        "healthy:web",
    ]
    # the fidelity check comes once everything is up, before a drill's clean-up; a
    # failover or migration then releases the marks kept where the user reads them
    assert stages["failover"] == [*recovery, "floating-ips", "verify", "fidelity", "release"]
    assert stages["drill"] == [*recovery, "verify", "fidelity", "cleanup"]
    assert stages["migrate"] == [
        "fence",
        *(f"final-{s}" for s in stages["protect-full"] if s not in ("quiesce", "thaw", "tidy")),
        *recovery,
        "floating-ips",
        "verify",
        "fidelity",
        "release",
        "final-tidy",  # irreversible, so only once the recovery has succeeded
    ]


# --------------------------------------------------------------------------------------
# Purity and determinism
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PLANS))
def test_planners_are_deterministic_and_serialisable(name: str) -> None:
    a, b = PLANS[name](), PLANS[name]()
    assert a == b and a.to_dict() == b.to_dict()
    text = json.dumps(a.to_dict(), sort_keys=True)  # JSON-able: a conductor can rebuild it
    assert plan_from_dict(json.loads(text)) == a


def test_planners_do_not_touch_their_inputs() -> None:
    graph, cp, plan = fixed_graph(), checkpoint(), PLAN
    before = copy.deepcopy((dump(graph), dump(cp), dump(plan), dump(POLICY), dump(WORKLOAD)))
    protect(previous=cp, graph=graph)
    for mode in RecoverMode:
        recover(mode, plan, cp)
    migrate()
    assert (dump(graph), dump(cp), dump(plan), dump(POLICY), dump(WORKLOAD)) == before


def test_resource_order_inside_the_graph_does_not_change_the_plan() -> None:
    cp = checkpoint()
    shuffled = checkpoint(ResourceGraph(tuple(reversed(cp.graph.resources))))
    assert recover(RecoverMode.FAILOVER, cp=cp) == recover(RecoverMode.FAILOVER, cp=shuffled)


# --------------------------------------------------------------------------------------
# Protect
# --------------------------------------------------------------------------------------


def steps_by_name(plan: FlowPlan) -> dict[str, Any]:
    return {s.name: s for s in plan.steps()}


def test_protect_full_and_incremental() -> None:
    full = steps_by_name(protect())
    assert full["upload-volume:db-data"].args.base_image == ""
    assert full["upload-volume:db-data"].args.base_snapshot == ""
    incr = steps_by_name(protect(previous=checkpoint()))
    args = incr["upload-volume:db-data"].args
    assert args.base_image == "img-volume-db-data"
    assert args.base_snapshot == "snap-volume-db-data"
    commit = incr["commit-checkpoint:cp-2"].args.checkpoint
    assert commit["parent"] == "cp-1" and commit["diff"] == {"added": [], "removed": []}


def test_protect_full_data_path_never_uses_a_change_base() -> None:
    policy = Policy("full", data_path="full")
    plan = plan_protect(
        run_id=RUN,
        workload=WORKLOAD,
        policy=policy,
        graph=fixed_graph(),
        checkpoint_id="cp-2",
        created_at=T0,
        previous=checkpoint(),
    )
    for s in plan.steps():
        if s.task == "UploadVolume":
            assert s.args.base_image and s.args.base_snapshot == ""


def test_protect_records_a_server_that_joined_since_the_previous_checkpoint() -> None:
    plan = protect(previous=checkpoint(), graph=fixed_graph(with_cache=True))
    steps = steps_by_name(plan)
    diff = steps["commit-checkpoint:cp-2"].args.checkpoint["diff"]
    assert {"kind": "server", "id": "server-cache"} in diff["added"]
    assert {"kind": "volume", "id": "volume-cache-boot"} in diff["added"]
    assert diff["removed"] == []
    # the new volume is read in full, the old ones incrementally
    assert steps["upload-volume:cache-boot"].args.base_image == ""
    assert steps["upload-volume:db-boot"].args.base_image == "img-volume-db-boot"


def test_protect_quiesces_only_what_the_hooks_name() -> None:
    names = protect().step_names()
    assert "freeze-server:db" in names and "thaw-server:db" in names
    assert "freeze-server:web" not in names
    crash = plan_protect(
        run_id=RUN,
        workload=WORKLOAD,
        policy=Policy("crash"),
        graph=fixed_graph(),
        checkpoint_id="cp-2",
        created_at=T0,
        previous=None,
    )
    assert not [n for n in crash.step_names() if n.startswith(("freeze", "thaw"))]
    steps = steps_by_name(protect())
    assert "frozen:server-db" in steps["commit-checkpoint:cp-2"].requires


def test_protect_replicates_to_each_target_once() -> None:
    w = Workload("shop", "a", Selector.parse("project"), "app", ("b", "a2"))
    policy = Policy("p", targets=("c", "b", "a"))
    plan = plan_protect(
        run_id=RUN,
        workload=w,
        policy=policy,
        graph=fixed_graph(),
        checkpoint_id="cp",
        created_at=T0,
        previous=None,
    )
    reps = [s.args.target for s in plan.steps() if s.task == "ReplicateCheckpoint"]
    assert reps == ["b", "a2", "c"]  # never its own site, each once
    retention = next(s for s in plan.steps() if s.task == "ApplyRetention")
    assert list(retention.args.sites) == ["a", "b", "a2", "c"]


# --------------------------------------------------------------------------------------
# Recovery: failover, drill, migrate
# --------------------------------------------------------------------------------------


def test_a_drill_uses_the_targets_volume_types_by_their_own_names() -> None:
    """A volume type is the operator's, per cloud: renamed, it would be a new type."""
    vtype = R(K.VOLUME_TYPE, "__DEFAULT__", {"extra_specs": {}})
    graph = ResourceGraph((*fixed_graph().resources, vtype))
    names = {
        s.args.kind: s.args.name
        for s in recover(RecoverMode.DRILL, cp=checkpoint(graph)).steps()
        if s.task == "CreateResource" and s.args.kind in ("volume_type", "keypair")
    }
    assert names == {"volume_type": "__DEFAULT__", "keypair": "drill-abcdef-key"}


def test_drill_isolates_its_networks_and_drops_floating_ips() -> None:
    plan = recover(RecoverMode.DRILL)
    creates = [s for s in plan.steps() if s.task == "CreateResource"]
    assert creates
    prefix = "drill-abcdef-"
    for s in creates:
        if s.args.kind not in ("project", "volume_type"):
            assert s.args.name.startswith(prefix), s.name
        assert set(s.args.tags) == {"seawall:run", "seawall:workload"}  # no app=shop
        assert s.args.kind != "floating_ip"
        if s.args.kind == "network":
            assert s.args.attrs["isolated"] is True and s.args.attrs["external"] is False
        if s.args.kind == "router":
            assert s.args.attrs["external_gateway"] is False
    # a network mapping onto production is never used by a drill: it gets its own copy
    assert not [s for s in plan.steps() if s.task == "MapResource" and "network" in s.name]
    assert "create-network:back" in plan.step_names()
    assert "map-flavor:m1.small" in plan.step_names()  # read-only mappings still apply
    # checks and verification are recorded (not raised), then everything is removed
    for s in plan.steps():
        if s.task in ("CheckHealth", "VerifyVolume", "RunScript"):
            assert s.args.record is True, s.name
        if s.task == "VerifyVolume":
            assert s.args.keep_base is False
    last = plan.stages[-1]
    assert last.name == "cleanup" and [s.task for s in last.steps] == ["CleanupDrill"]
    cleanup = last.steps[0]
    assert set(cleanup.requires) >= {id_symbol(s.ref) for s in fixed_graph().of_kind(K.SERVER)}


def test_failover_maps_keeps_tags_and_adds_floating_ips_last() -> None:
    plan = recover(RecoverMode.FAILOVER)
    steps = steps_by_name(plan)
    mapped = dump(steps["map-network:back"].args)
    assert mapped == {"site": "b", "kind": "network", "name": "prod-back"}
    assert steps["map-flavor:m1.small"].provides == "id:flavor/flavor-m1.small"
    web = steps["create-server:web"]
    assert web.args.name == "web" and web.args.tags["app"] == "shop"
    assert "seawall:key" not in web.args.tags  # bookkeeping of the source is dropped
    assert web.args.tags["seawall:run"] == RUN
    assert "status" not in web.args.attrs and "access_address" not in web.args.attrs
    vol = steps["create-volume:db-data"].args.attrs
    assert vol["availability_zone"] == "az9"
    assert steps["create-volume:db-boot"].args.attrs["volume_type"] == "fast"
    port = steps["create-port:db-port"].args.attrs
    assert port["fixed_ips"] == ["10.0.2.10"]
    stages = [st.name for st in plan.stages]
    assert stages[-4:] == ["floating-ips", "verify", "fidelity", "release"]
    names = [s.name for s in plan.stages[-4].steps]
    assert names == ["create-floating_ip:web-fip"]
    for s in plan.steps():
        if s.task in ("CheckHealth", "VerifyVolume", "RunScript"):
            assert s.args.record is False, s.name
        if s.task == "VerifyVolume":
            assert s.args.keep_base is True


def test_recovered_volumes_are_created_blank_and_filled_from_the_checkpoint() -> None:
    """Never from their image: a hole in the checkpoint must read as zeros."""
    for mode in RecoverMode:
        steps = steps_by_name(recover(mode))
        create = steps["create-volume:db-boot"]
        assert "image" not in create.args.refs and create.requires == ()
        assert steps["restore-volume:db-boot"].requires == ("id:volume/volume-db-boot",)
        assert create.args.attrs["size"] == 1 << 20


@pytest.mark.parametrize("mode", list(RecoverMode))
def test_the_fidelity_check_expects_exactly_what_each_create_step_asks_for(
    mode: RecoverMode,
) -> None:
    """Mappings, a drill's isolation and name prefix are in the expectation already, so
    only what the plan cannot explain can differ; mapped copies are not checked, but
    their ids are what refs to them compare through."""
    flow = recover(mode)
    (fidelity,) = [st for st in flow.stages if st.name == "fidelity"]
    (check,) = fidelity.steps
    assert check.task == "VerifyFidelity" and check.args.site == "b"
    creates = [s for s in flow.steps() if s.task == "CreateResource"]
    # a project is never created (the target's scoped project), so there is none to check
    creates = [s for s in creates if s.args.kind != "project"]
    expected = {e.resource.ref: e for e in check.args.expected}
    assert len(expected) == len(creates) == len(check.args.expected)
    for s in creates:
        e = expected[ResourceRef(ResourceKind(s.args.kind), s.args.source_id)]
        assert s.name == f"create-{s.args.kind}:{e.label}"
        assert e.resource.name == s.args.name and e.resource.tags == s.args.tags
        if s.args.kind == "floating_ip":  # the target allocates it unless it is preserved
            assert "address" in s.args.attrs and "address" not in e.resource.attrs
            assert e.resource.attrs == {k: v for k, v in s.args.attrs.items() if k != "address"}
        else:
            assert e.resource.attrs == s.args.attrs
        assert {role: tuple(map(id_symbol, refs)) for role, refs in e.resource.refs.items()} == (
            s.args.refs
        )
    provided = {s.provides for s in flow.steps() if s.task in ("CreateResource", "MapResource")}
    assert set(check.requires) == provided
    stages = [st.name for st in flow.stages]
    assert stages.index("fidelity") > stages.index("verify")
    if mode is RecoverMode.DRILL:
        assert stages[-1] == "cleanup"
        assert all(e.resource.kind is not K.FLOATING_IP for e in check.args.expected)
        network = next(e for e in check.args.expected if e.resource.kind is K.NETWORK)
        assert network.resource.name.startswith("drill-")
        assert network.resource.attrs["isolated"] is True


def test_the_fidelity_check_skips_the_project_and_keeps_a_preserved_address() -> None:
    """A project is never created (the copy lives in the target's scoped project); a
    floating IP's address is expected only when the capture asks to preserve it."""
    graph = fixed_graph()
    fip = next(r for r in graph.resources if r.kind is K.FLOATING_IP)
    kept = Resource(
        K.FLOATING_IP, fip.id, fip.name, {**fip.attrs, "preserve_address": True}, fip.refs
    )
    project = R(K.PROJECT, "shop-project", {"description": "the shop"})
    others = tuple(r for r in graph.resources if r.ref != fip.ref)
    flow = recover(RecoverMode.FAILOVER, cp=checkpoint(ResourceGraph((project, *others, kept))))
    (check,) = next(st for st in flow.stages if st.name == "fidelity").steps
    by_ref = {e.resource.ref: e.resource for e in check.args.expected}
    assert project.ref not in by_ref
    assert by_ref[fip.ref].attrs["address"] == "203.0.113.5"


def test_dhcp_ip_policy_drops_fixed_addresses() -> None:
    plan = RecoveryPlan("shop", "b", Mappings(ip_policy=IpPolicy.DHCP))
    steps = steps_by_name(recover(RecoverMode.FAILOVER, plan))
    attrs = steps["create-port:db-port"].args.attrs
    assert "fixed_ips" not in attrs and "mac_address" not in attrs


def test_boot_groups_are_ordered_and_checked_before_the_next() -> None:
    plan = RecoveryPlan(
        "shop",
        "b",
        boot_groups=(BootGroup("first", ("web",)),),
        health_checks=(HealthCheck("web"), HealthCheck("db", CheckKind.TCP, port=1)),
        scripts=(Script("after:first", ("x",)), Script("final", ("y",))),
    )
    flow = recover(RecoverMode.FAILOVER, plan)
    stages = [s.name for s in flow.stages]
    assert stages.index("boot:first") < stages.index("healthy:first") < stages.index("boot:rest")
    assert stages.index("boot:rest") < stages.index("healthy:rest")
    by_stage = {s.name: [x.name for x in s.steps] for s in flow.stages}
    assert by_stage["boot:first"] == ["create-server:web"]
    assert by_stage["boot:rest"] == ["create-server:db"]  # not in any group: boots last
    assert by_stage["healthy:first"] == [
        "wait-server:web",
        "check-health:web:status",
        "run-script:0",
    ]
    assert by_stage["healthy:rest"] == ["wait-server:db", "check-health:db:tcp:1"]
    assert by_stage["verify"][-1] == "run-script:1"
    assert not next(s for s in flow.stages if s.name == "healthy:first").parallel


def test_default_recovery_plan() -> None:
    plan = default_recovery_plan(WORKLOAD, "b", fixed_graph())
    assert plan.boot_groups == (BootGroup("all", ("db", "web")),)
    assert plan.health_checks == (HealthCheck("db"), HealthCheck("web"))
    assert (
        recovery_problems(
            checkpoint=checkpoint(),
            plan=plan,
            target_names={},
            quotas={},
            mode=RecoverMode.FAILOVER,
        )
        == []
    )


def test_migrate_fences_then_takes_a_final_checkpoint_then_recovers() -> None:
    plan = migrate()
    first = plan.stages[0]
    assert first.name == "fence" and first.parallel
    assert [s.name for s in first.steps] == ["fence-server:db", "fence-server:web"]
    steps = steps_by_name(plan)
    assert not [n for n in steps if "freeze" in n or "thaw" in n]  # powered off already
    assert [s.args.target for s in plan.steps() if s.task == "ReplicateCheckpoint"] == ["b"]
    assert steps["check-site:b"].requires == ("final-checkpoint",)
    assert steps["restore-volume:db-data"].args.checkpoint_id == "cp-final"
    assert steps["final-upload-volume:db-data"].args.base_image == "img-volume-db-data"
    assert plan.title.startswith("migrate shop to b")
    assert migrate(RunKind.FAILBACK).kind is RunKind.FAILBACK


def test_duplicate_and_empty_names_get_distinct_steps() -> None:
    graph = ResourceGraph(
        (
            Resource(K.NETWORK, "n1", "net"),
            Resource(K.NETWORK, "n2", "net"),
            Resource(K.NETWORK, "n3", ""),
            Resource(K.SUBNET, "s1", "net", refs={"network": (ref(K.NETWORK, "n1"),)}),
        )
    )
    assert labels(graph) == {
        ref(K.NETWORK, "n1"): "net~n1",
        ref(K.NETWORK, "n2"): "net~n2",
        ref(K.NETWORK, "n3"): "~n3",
        ref(K.SUBNET, "s1"): "net",
    }
    names = recover(RecoverMode.FAILOVER, RecoveryPlan("w", "b"), checkpoint(graph)).step_names()
    assert len(names) == len(set(names))
    assert "create-network:net~n1" in names and "create-subnet:net" in names


# --------------------------------------------------------------------------------------
# Preflight problems
# --------------------------------------------------------------------------------------


def test_recovery_problems_lists_everything_at_once() -> None:
    plan = RecoveryPlan(
        "shop",
        "b",
        mappings=Mappings(
            network={"back": "prod-back", "dmz": "prod-dmz"},
            flavor={"m1.small": "m9.huge"},
            image={"os": "golden-os"},
        ),
        boot_groups=(BootGroup("data", ("db", "ghost")), BootGroup("data", ("web",))),
        health_checks=(HealthCheck("phantom"),),
        scripts=(Script("after:nowhere", ("x",)), Script("final", ())),
    )
    target_names = {"network": frozenset({"prod-back"}), "image": frozenset({"golden-os"})}
    quotas = {"servers": 1, "volumes": 10, "volume_bytes": 1 << 20, "ports": -1}
    problems = recovery_problems(
        checkpoint=checkpoint(),
        plan=plan,
        target_names=target_names,
        quotas=quotas,
        mode=RecoverMode.FAILOVER,
    )
    expected = [
        "mapping flavor 'm1.small' -> 'm9.huge': no flavor named 'm9.huge' at site b",
        "mapping network 'dmz': the checkpoint has no network of that name",
        "boot group names server 'ghost', not in the checkpoint",
        "boot group 'data' is declared more than once",
        "health check names server 'phantom', not in the checkpoint",
        "script 0 (x): stage 'after:nowhere' is neither 'final' nor 'after:<boot group>'",
        "script 1: the command is empty",
        "quota at b: needs 2 servers, only 1 left",
        "quota at b: needs 6291456 volume_bytes, only 1048576 left",
    ]
    for want in expected:
        assert any(p.startswith(want) for p in problems), (want, problems)
    assert len(problems) == len(expected), problems
    # what is satisfied is not reported
    assert not [p for p in problems if "'back'" in p or "'os'" in p or "volumes," in p]


def test_recovery_problems_drill_needs_no_production_network_nor_floating_ip() -> None:
    plan = RecoveryPlan("shop", "b", Mappings(network={"back": "prod-back"}))
    args: dict[str, Any] = {
        "checkpoint": checkpoint(),
        "plan": plan,
        "target_names": {},
        "quotas": {"floating_ips": 0, "networks": 2},
    }
    failover = recovery_problems(**args, mode=RecoverMode.FAILOVER)
    assert any("no network named 'prod-back'" in p for p in failover)
    assert any("needs 1 floating_ips, only 0 left" in p for p in failover)
    drill = recovery_problems(**args, mode=RecoverMode.DRILL)
    assert drill == []  # the drill creates both networks itself (2 left) and no FIP


# --------------------------------------------------------------------------------------
# Properties over random graphs and plans
# --------------------------------------------------------------------------------------


@st.composite
def workloads(draw: st.DrawFn) -> tuple[Checkpoint, RecoveryPlan, Checkpoint | None]:
    """A random but well-formed workload graph (what a driver can discover), a random
    recovery plan over it, and maybe a previous checkpoint of part of it."""
    names = st.sampled_from(["a", "b", "c", ""])
    counter = iter(range(10_000))
    resources: list[Resource] = []

    def make(kind: ResourceKind, **refs: tuple[ResourceRef, ...]) -> ResourceRef:
        r = Resource(kind, f"{kind.value[:3]}{next(counter)}", draw(names), {"size": 4096}, refs)
        resources.append(r)
        return r.ref

    def some(pool: list[ResourceRef], lo: int = 0, hi: int = 2) -> tuple[ResourceRef, ...]:
        if not pool:
            return ()
        return tuple(draw(st.lists(st.sampled_from(pool), min_size=lo, max_size=hi, unique=True)))

    nets = [make(K.NETWORK) for _ in range(draw(st.integers(1, 3)))]
    subs = [
        make(K.SUBNET, network=(draw(st.sampled_from(nets)),))
        for _ in range(draw(st.integers(0, 3)))
    ]
    for _ in range(draw(st.integers(0, 2))):
        make(K.ROUTER, subnets=some(subs, 0, 3))
    sgs = [make(K.SECURITY_GROUP) for _ in range(draw(st.integers(0, 2)))]
    images = [make(K.IMAGE) for _ in range(draw(st.integers(0, 2)))]
    vtypes = [make(K.VOLUME_TYPE) for _ in range(draw(st.integers(0, 1)))]
    flavors = [make(K.FLAVOR) for _ in range(draw(st.integers(1, 2)))]
    keys = [make(K.KEYPAIR) for _ in range(draw(st.integers(0, 1)))]
    groups = [make(K.SERVER_GROUP) for _ in range(draw(st.integers(0, 1)))]
    ports: list[ResourceRef] = []
    vols: list[ResourceRef] = []
    servers: list[ResourceRef] = []
    for _ in range(draw(st.integers(0, 4))):
        my_ports = []
        for _ in range(draw(st.integers(0, 2))):
            p = make(
                K.PORT,
                network=(draw(st.sampled_from(nets)),),
                subnet=some(subs, 0, 1),
                security_groups=some(sgs),
            )
            my_ports.append(p)
        my_vols = [
            make(K.VOLUME, image=some(images, 0, 1), volume_type=some(vtypes, 0, 1))
            for _ in range(draw(st.integers(0, 2)))
        ]
        ports += my_ports
        vols += my_vols
        servers.append(
            make(
                K.SERVER,
                flavor=(draw(st.sampled_from(flavors)),),
                image=some(images, 0, 1),
                keypair=some(keys, 0, 1),
                server_group=some(groups, 0, 1),
                ports=tuple(my_ports),
                volumes=tuple(my_vols),
            )
        )
    for _ in range(draw(st.integers(0, 2))):
        make(K.FLOATING_IP, port=some(ports, 0, 1))
    graph = ResourceGraph(tuple(draw(st.permutations(resources))))
    cp = checkpoint(graph, "cp-r")
    server_names = sorted({r.name for r in graph.of_kind(K.SERVER)})
    group_count = draw(st.integers(0, 3))
    boot_groups = tuple(
        BootGroup(f"g{i}", tuple(draw(st.lists(st.sampled_from(server_names), max_size=2))))
        if server_names
        else BootGroup(f"g{i}", ())
        for i in range(group_count)
    )
    checks = tuple(
        HealthCheck(n, draw(st.sampled_from(list(CheckKind))), port=draw(st.integers(0, 2)))
        for n in (draw(st.lists(st.sampled_from(server_names), max_size=4)) if server_names else [])
    )
    stages = ["final", *(f"after:{g.name}" for g in boot_groups)]
    scripts = tuple(
        Script(draw(st.sampled_from(stages)), ("true",)) for _ in range(draw(st.integers(0, 2)))
    )
    net_names = sorted({r.name for r in graph.of_kind(K.NETWORK)})
    mapping = {n: f"prod-{n}" for n in draw(st.lists(st.sampled_from(net_names), max_size=1))}
    plan = RecoveryPlan("shop", "b", Mappings(network=mapping), boot_groups, checks, scripts)
    previous = None
    if draw(st.booleans()):
        kept = draw(st.sets(st.sampled_from(range(len(graph.resources)))))
        previous = checkpoint(
            ResourceGraph(tuple(graph.resources[i] for i in sorted(kept))), "cp-prev"
        )
    return cp, plan, previous


def assert_well_formed(plan: FlowPlan) -> None:
    """Every step's inputs are provided before it runs; names and symbols are unique."""
    names = plan.step_names()
    assert len(names) == len(set(names)), "duplicate step names"
    provided: set[str] = set()
    stage_names = [s.name for s in plan.stages]
    assert len(stage_names) == len(set(stage_names)), "duplicate stage names"
    for stage in plan.stages:
        assert stage.steps, f"empty stage {stage.name}"
        inside: set[str] = set()
        for step in stage.steps:
            for need in step.requires:
                ok = need in provided or (not stage.parallel and need in inside)
                assert ok, f"{step.name} requires {need}, not provided before it"
            if step.provides:
                assert step.provides not in provided | inside, f"{step.provides} twice"
                inside.add(step.provides)
        provided |= inside


@settings(max_examples=150, deadline=None, suppress_health_check=[HypothesisHealthCheck.too_slow])
@given(workloads(), st.sampled_from(list(RecoverMode)))
def test_random_recovery_plans_are_well_formed(
    data: tuple[Checkpoint, RecoveryPlan, Checkpoint | None], mode: RecoverMode
) -> None:
    cp, plan, previous = data
    if mode is RecoverMode.MIGRATE:
        w = Workload("shop", "a", Selector.parse("project"), "p", ("b",))
        flow = plan_migrate(
            run_id=RUN,
            kind=RunKind.MIGRATE,
            workload=w,
            policy=POLICY,
            graph=cp.graph,
            checkpoint_id="cp-f",
            created_at=T0,
            previous=previous,
            plan=plan,
        )
    else:
        flow = recover(mode, plan, cp)
    assert_well_formed(flow)
    by_kind = {k: 0 for k in ResourceKind}
    for s in flow.steps():
        if s.task in ("CreateResource", "MapResource"):
            by_kind[ResourceKind(s.args.kind)] += 1
    for k in ResourceKind:
        want = len(cp.graph.of_kind(k))
        if k is K.FLOATING_IP and mode is RecoverMode.DRILL:
            want = 0
        assert by_kind[k] == want, k  # every resource exactly once
    servers = [s for s in flow.steps() if s.task == "CreateResource" and s.args.kind == "server"]
    order = [plan.group_of(cp.graph.get(ref(K.SERVER, s.args.source_id)).name) for s in servers]
    assert order == sorted(order)  # boot groups in order
    if mode is RecoverMode.DRILL:
        assert flow.stages[-1].name == "cleanup"


@settings(max_examples=100, deadline=None, suppress_health_check=[HypothesisHealthCheck.too_slow])
@given(workloads())
def test_random_protect_plans_are_well_formed(
    data: tuple[Checkpoint, RecoveryPlan, Checkpoint | None],
) -> None:
    cp, _plan, previous = data
    flow = protect(previous=previous, graph=cp.graph)
    assert_well_formed(flow)
    uploads = [s for s in flow.steps() if s.task == "UploadVolume"]
    assert len(uploads) == len(cp.graph.of_kind(K.VOLUME))
    commit = next(s for s in flow.steps() if s.task == "CommitCheckpoint")
    diff = commit.args.checkpoint["diff"]
    if previous is not None:
        assert diff == dump(previous.graph.diff(cp.graph))
    for u in uploads:
        has_base = previous is not None and previous.graph.find(ref(K.VOLUME, u.args.volume_id))
        assert bool(u.args.base_image) == bool(has_base)


@pytest.mark.parametrize("name", sorted(PLANS))
def test_plans_compile_on_taskflow(name: str) -> None:
    """TaskFlow itself agrees that every requirement is satisfied (nothing runs)."""
    from taskflow import engines

    from seawall.orchestrate.engine import build_flow

    flow = build_flow(PLANS[name]().to_dict())
    engine = engines.load(flow, engine="serial")
    engine.compile()
    engine.prepare()
    engine.validate()


def test_groups_that_name_each_other_are_created_then_linked() -> None:
    """app and db name each other as their rules' remote groups: no dependency cycle;
    both are created without the rules naming the other group (never "from any
    source"), then a link stage adds those rules once both copies exist, before ports."""
    rule = {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp"}
    app_id, db_id = "security_group-app", "security_group-db"
    own = {**rule, "port_range_min": 22, "port_range_max": 22, "remote_group": "self"}
    app = R(K.SECURITY_GROUP, "app",
            {"rules": [own, {**rule, "port_range_min": 9000, "remote_group": db_id}]},
            remote_groups=(ref(K.SECURITY_GROUP, db_id),))  # fmt: skip
    db = R(K.SECURITY_GROUP, "db", {"rules": [{**rule, "port_range_min": 5432,
           "remote_group": app_id}]}, remote_groups=(ref(K.SECURITY_GROUP, app_id),))  # fmt: skip
    net = R(K.NETWORK, "n")
    sub = R(K.SUBNET, "s", {"cidr": "10.0.0.0/24"}, network=(net.ref,))
    port = R(K.PORT, "p", {}, network=(net.ref,), subnet=(sub.ref,),
             security_groups=(app.ref, db.ref))  # fmt: skip
    server = R(K.SERVER, "vm", {}, ports=(port.ref,))
    graph = ResourceGraph((app, db, net, sub, port, server))
    plan = recover(RecoverMode.FAILOVER, cp=checkpoint(graph))
    stages = [s.name for s in plan.stages]
    assert stages.index("network:security_group") < stages.index("network:security_group-links")
    assert stages.index("network:security_group-links") < stages.index("ports")
    steps = steps_by_name(plan)
    created = steps["create-security_group:app"]
    assert [r["remote_group"] for r in created.args.attrs["rules"]] == ["self"]
    assert "remote_groups" not in created.args.refs
    linked = steps["link-security_group:app"]
    assert len(linked.args.attrs["rules"]) == 2
    assert linked.args.refs["remote_groups"] == (f"id:security_group/{db_id}",)
    assert set(linked.requires) == {f"id:security_group/{app_id}", f"id:security_group/{db_id}"}
    assert steps["create-security_group:db"].args.attrs["rules"] == []
    # the fidelity check expects what the link asked for: every rule of the group
    (check,) = [s for s in plan.steps() if s.task == "VerifyFidelity"]
    (app_expected,) = [e.resource for e in check.args.expected if e.resource.id == app_id]
    assert len(app_expected.attrs["rules"]) == 2
