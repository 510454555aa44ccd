"""The domain model: codec, validation messages, graphs, state machines, retention."""

from __future__ import annotations

import datetime as dt
import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.errors import InvalidInput, InvalidTransition
from seawall.model import (
    FINAL_RUN_STATES,
    PRESETS,
    RESTORE_RULES,
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    Bandwidth,
    BandwidthWindow,
    BootGroup,
    CheckKind,
    Checkpoint,
    Consistency,
    GraphDiff,
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
    Run,
    RunKind,
    RunState,
    Selector,
    SelectorKind,
    Site,
    Step,
    StepState,
    VolumeImageRef,
    Workload,
    dump,
    load,
    select_kept,
    summarize_steps,
    transition,
)

K = ResourceKind


def res(kind: ResourceKind, id_: str, **refs: tuple[str, ...] | str) -> Resource:
    """A resource whose refs are given as ``role=(kind/id, ...)`` strings."""

    def ref(text: str) -> ResourceRef:
        k, _, i = text.partition("/")
        return ResourceRef(ResourceKind(k), i)

    return Resource(
        kind,
        id_,
        f"{kind.value}-{id_}",
        refs={
            role: tuple(ref(t) for t in ((v,) if isinstance(v, str) else v))
            for role, v in refs.items()
        },
    )


def three_tier() -> ResourceGraph:
    return ResourceGraph(
        (
            res(K.SERVER, "web", ports=("port/pw",), volumes=("volume/vw",), flavor="flavor/f"),
            res(
                K.PORT,
                "pw",
                network="network/n",
                subnet="subnet/s",
                security_groups="security_group/g",
            ),
            res(K.VOLUME, "vw", image="image/i"),
            res(K.FLOATING_IP, "fip", port="port/pw"),
            res(K.ROUTER, "r", subnets=("subnet/s",)),
            res(K.SUBNET, "s", network="network/n"),
            res(K.NETWORK, "n"),
            res(K.SECURITY_GROUP, "g"),
            res(K.FLAVOR, "f"),
            res(K.IMAGE, "i"),
            res(K.KEYPAIR, "k"),
        )
    )


# --------------------------------------------------------------------------------------
# dump / load
# --------------------------------------------------------------------------------------


def sample_checkpoint() -> Checkpoint:
    graph = three_tier()
    return Checkpoint(
        id="cp-1",
        workload="shop",
        site="a",
        created_at=1700000000.5,
        graph=graph,
        volumes=(VolumeImageRef("vw", "img-1", 4096, "snap-1", 4096, 100),),
        consistency=Consistency.APPLICATION,
        images={"i": "stream-1"},
        parent="cp-0",
        diff=GraphDiff(added=(ResourceRef(K.SERVER, "web"),)),
        notes=("quiesce failed on db",),
    )


@pytest.mark.parametrize(
    ("cls", "obj"),
    [
        (Site, Site("site-a", "sim", {"path": "/x"}, "/repo")),
        (Policy, PRESETS["gold"]),
        (Policy, PRESETS["silver"]),
        (
            Workload,
            Workload("shop", "a", Selector(SelectorKind.TAG, tags={"app": "shop"}), "gold", ("b",)),
        ),
        (Checkpoint, sample_checkpoint()),
        (
            RecoveryPlan,
            RecoveryPlan(
                "shop",
                "b",
                Mappings(network={"front": "prod-front"}, ip_policy=IpPolicy.DHCP),
                (BootGroup("db", ("db",)), BootGroup("web", ("web",))),
                (HealthCheck("web", CheckKind.HTTP, 80, "/h", "ok"),),
            ),
        ),
        (Run, Run("r", RunKind.DRILL, "shop", RunState.RUNNING, 1.0, 0.0, {"a": [1]}, {"b": 2})),
        (Step, Step("r", "create-server:web", StepState.DONE, 1.0, "id=x", 1.0, 2.0)),
    ],
)
def test_dump_load_round_trip(cls: type, obj: object) -> None:
    data = dump(obj)
    again = json.loads(json.dumps(data))  # really JSON-able
    assert load(cls, again) == obj
    assert dump(load(cls, again)) == data


def test_dump_sorts_sets_and_converts_enums() -> None:
    data = dump({"k": frozenset({"b", "a"}), "e": K.SERVER, "t": (1, 2)})
    assert data == {"k": ["a", "b"], "e": "server", "t": [1, 2]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "p", "rpo_seconds": "abc"}, "policy.rpo_seconds: expected an integer, got 'abc'"),
        ({"name": "p", "rpo_seconds": True}, "policy.rpo_seconds: expected an integer, got True"),
        ({"name": "p", "rpo_seconds": 10}, "policy.rpo_seconds: must be at least 60 seconds"),
        ({"name": "p", "rto_target_seconds": 0}, "policy.rto_target_seconds: must be positive"),
        ({"name": "p", "data_path": "rsync"}, "policy.data_path: 'rsync' is not one of"),
        ({"name": "p", "consistency": "perfect"}, "policy.consistency: 'perfect' is not one of"),
        ({"name": "p", "consistency": "application"}, "policy.quiesce: application consistency"),
        ({"name": "p", "retention": {"last": 0}}, "policy.retention.last: must keep at least"),
        ({"name": "p", "retention": {"daily": -1}}, "policy.retention.daily: must be >= 0"),
        ({"name": "p", "retention": {"dayly": 3}}, "policy.retention: unknown field(s) 'dayly'"),
        ({"name": "p", "retention": 7}, "policy.retention: expected a mapping, got 7"),
        ({"name": "p", "targets": "b"}, "policy.targets: expected a list, got 'b'"),
        ({"name": "p", "quiesce": [{"timeout_seconds": "x"}]}, "policy.quiesce[0].timeout_seconds"),
        ({"name": "P!"}, "policy.name: 'P!' is not a valid name"),
        ({"rpo_seconds": 60}, "policy.name: is required"),
        ({"name": "p", "rpo": 60}, "policy: unknown field(s) 'rpo'; allowed:"),
        (
            {"name": "p", "bandwidth": {"windows": [{"start_hour": 1}]}},
            "policy.bandwidth.windows[0].end_hour: is required",
        ),
    ],
)
def test_load_names_the_field_and_the_problem(data: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        load(Policy, data)
    assert str(exc.value).startswith(message), str(exc.value)
    assert exc.value.field and str(exc.value).startswith(exc.value.field + ": ")


@pytest.mark.parametrize(
    ("cls", "data", "path", "message"),
    [
        (Site, {"name": "a", "driver": ""}, None, "site.driver: is required"),
        (Site, {"name": "a", "driver": "sim", "params": []}, None, "site.params: expected a map"),
        (RecoveryPlan, {"workload": "w"}, "plan", "plan.target: is required"),
        (
            RecoveryPlan,
            {"workload": "w", "target": "b", "boot_groups": [{"name": "g", "servers": "db"}]},
            "plan",
            "plan.boot_groups[0].servers: expected a list",
        ),
        (
            RecoveryPlan,
            {"workload": "w", "target": "b", "health_checks": [{"server": "s", "kind": "ping"}]},
            "plan",
            "plan.health_checks[0].kind: 'ping' is not one of 'status', 'tcp', 'http'",
        ),
        (
            RecoveryPlan,
            {"workload": "w", "target": "b", "mappings": {"ip_policy": "static"}},
            "plan",
            "plan.mappings.ip_policy: 'static' is not one of",
        ),
        (
            RecoveryPlan,
            {"workload": "w", "target": "b", "mappings": {"network": {"a": 1}}},
            "plan",
            "plan.mappings.network.a: expected a string, got 1",
        ),
        (
            Workload,
            {"name": "w", "site": "a", "policy": "gold", "selector": {"kind": "members"}},
            None,
            "workload.selector: a members selector needs at least one server",
        ),
        (
            Workload,
            {
                "name": "w",
                "site": "a",
                "policy": "gold",
                "targets": ["a"],
                "selector": {"kind": "project"},
            },
            None,
            "workload.targets: a workload cannot target its own site",
        ),
    ],
)
def test_load_errors_for_other_files(
    cls: type, data: dict[str, object], path: str | None, message: str
) -> None:
    with pytest.raises(InvalidInput) as exc:
        load(cls, data, path)
    assert str(exc.value).startswith(message), str(exc.value)


def test_load_accepts_json_numbers_for_floats_and_optional_none() -> None:
    cp = load(Checkpoint, {**dump(sample_checkpoint()), "created_at": 17})
    assert cp.created_at == 17.0 and isinstance(cp.created_at, float)
    with pytest.raises(InvalidInput, match=r"checkpoint.created_at: expected a number"):
        load(Checkpoint, {**dump(sample_checkpoint()), "created_at": "yesterday"})


# --------------------------------------------------------------------------------------
# selectors and names
# --------------------------------------------------------------------------------------


def test_selector_parse() -> None:
    assert Selector.parse("project") == Selector(SelectorKind.PROJECT)
    assert Selector.parse("tag:app=shop,tier=web") == Selector(
        SelectorKind.TAG, tags={"app": "shop", "tier": "web"}
    )
    assert Selector.parse("tag:url=a=b").tags == {"url": "a=b"}
    assert Selector.parse("members:db,web,") == Selector(members=("db", "web"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tag:", "select: expected tag:key=value"),
        ("tag:app", "select: expected tag:key=value"),
        ("tag:app=shop,tier", "select: expected tag:key=value"),
        ("members:", "selector: a members selector needs at least one server"),
        ("project:x", "select: unknown selector 'project:x'"),
        ("everything", "select: unknown selector 'everything'"),
        ("", "select: unknown selector ''"),
    ],
)
def test_selector_parse_refuses(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        Selector.parse(text)
    assert str(exc.value).startswith(message)


def test_selector_matches() -> None:
    web = Resource(K.SERVER, "id-1", "web", tags={"app": "shop", "tier": "web"})
    assert Selector.parse("project").matches(web)
    assert Selector.parse("tag:app=shop").matches(web)
    assert not Selector.parse("tag:app=shop,tier=db").matches(web)
    assert Selector.parse("members:web").matches(web)
    assert Selector.parse("members:id-1").matches(web)
    assert not Selector.parse("members:db").matches(web)


@pytest.mark.parametrize("name", ["a", "site-a", "x.y_z-1", "0" * 63])
def test_valid_names(name: str) -> None:
    assert Site(name, "sim").name == name


@pytest.mark.parametrize("name", ["", "A", "-a", "a b", "a/b", "0" * 64, "ä"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidInput, match=r"^site\.name: .* is not a valid name"):
        Site(name, "sim")


# --------------------------------------------------------------------------------------
# graphs
# --------------------------------------------------------------------------------------


def test_restore_order_follows_rules_and_edges() -> None:
    graph = three_tier()
    order = [r.ref for r in graph.restore_order()]
    pos = {ref: i for i, ref in enumerate(order)}
    assert len(order) == len(graph.resources)
    for r in graph.resources:
        for d in r.depends_on:
            assert pos[d] < pos[r.ref], f"{r.ref} before its dependency {d}"
    kinds = {r.ref: r.kind for r in graph.resources}
    for rule in RESTORE_RULES:
        for ref, kind in kinds.items():
            if kind is rule.kind:
                for other, okind in kinds.items():
                    if okind in rule.after:
                        assert pos[other] < pos[ref], f"{rule.reason}: {other} before {ref}"
    assert order[-1] == ResourceRef(K.FLOATING_IP, "fip")


def test_restore_rules_are_complete_and_acyclic() -> None:
    assert {r.kind for r in RESTORE_RULES} == set(ResourceKind)
    assert all(r.reason for r in RESTORE_RULES)
    declared: list[ResourceKind] = []
    for rule in RESTORE_RULES:  # declared in an order where every 'after' comes first
        assert rule.after <= set(declared), rule
        declared.append(rule.kind)


def test_restore_order_honours_edges_within_a_kind() -> None:
    # a port on a router's subnet, ports that depend on each other...
    graph = ResourceGraph(
        (
            res(K.NETWORK, "b", parent="network/c"),
            res(K.NETWORK, "a", parent="network/b"),
            res(K.NETWORK, "c"),
        )
    )
    assert [r.id for r in graph.restore_order()] == ["c", "b", "a"]


def test_restore_order_unforeseen_edges() -> None:
    # an edge between kinds the rules do not relate: the rules still hold around it
    graph = ResourceGraph(
        (
            res(K.PORT, "p", security_groups="security_group/g"),
            res(K.SECURITY_GROUP, "g", remote="router/r"),
            res(K.SECURITY_GROUP, "g2"),
            res(K.ROUTER, "r"),
            res(K.PORT, "p2"),
        )
    )
    order = [r.id for r in graph.restore_order()]
    assert order.index("r") < order.index("g") < order.index("p")
    assert order.index("g") < order.index("p2")  # every port after every security group
    # an edge against the rules (an image made from a volume) wins over them
    graph = ResourceGraph((res(K.IMAGE, "i", source="volume/v"), res(K.VOLUME, "v")))
    assert [r.id for r in graph.restore_order()] == ["v", "i"]


def test_restore_order_detects_cycles() -> None:
    graph = ResourceGraph(
        (
            res(K.NETWORK, "a", peer="network/b"),
            res(K.NETWORK, "b", peer="network/c"),
            res(K.NETWORK, "c", peer="network/a"),
        )
    )
    with pytest.raises(InvalidInput, match=r"^graph: dependency cycle: network/a -> network/b"):
        graph.restore_order()
    with pytest.raises(InvalidInput, match="dependency cycle"):
        ResourceGraph((res(K.PORT, "p", me="port/p"),)).restore_order()


def test_security_groups_naming_each_other_are_linked_not_a_cycle() -> None:
    """``remote_groups`` (a LINK_ROLE) keeps a group's remote groups in the workload and
    among its dangling edges, but does not order creation: app <-> db is no cycle."""
    app = res(K.SECURITY_GROUP, "app", remote_groups="security_group/db")
    db = res(K.SECURITY_GROUP, "db", remote_groups="security_group/app")
    port = res(K.PORT, "p", security_groups="security_group/app")
    graph = ResourceGraph((port, app, db))
    order = [r.id for r in graph.restore_order()]
    assert order.index("app") < order.index("p") and order.index("db") < order.index("p")
    assert app.depends_on == () and app.refers_to == (ResourceRef(K.SECURITY_GROUP, "db"),)
    lonely = ResourceGraph((app,))
    assert lonely.dangling() == [(app.ref, ResourceRef(K.SECURITY_GROUP, "db"))]


def test_graph_refuses_duplicates_and_reports_dangling_edges() -> None:
    with pytest.raises(InvalidInput, match=r"graph.resources: duplicate resource network/n"):
        ResourceGraph((res(K.NETWORK, "n"), res(K.NETWORK, "n")))
    graph = ResourceGraph((res(K.SUBNET, "s", network="network/gone"),))
    assert graph.dangling() == [(ResourceRef(K.SUBNET, "s"), ResourceRef(K.NETWORK, "gone"))]
    assert [r.id for r in graph.restore_order()] == ["s"]  # an outside edge is no obstacle
    assert three_tier().dangling() == []


def test_graph_lookups() -> None:
    graph = three_tier()
    assert graph.get(ResourceRef(K.SERVER, "web")).name == "server-web"
    assert graph.find(ResourceRef(K.SERVER, "nope")) is None
    with pytest.raises(KeyError):
        graph.get(ResourceRef(K.SERVER, "nope"))
    assert [r.id for r in graph.of_kind(K.PORT)] == ["pw"]


def test_graph_diff() -> None:
    old = three_tier()
    extra = res(K.SERVER, "web2", ports=("port/pw2",))
    new = ResourceGraph(
        (
            *(r for r in old.resources if r.id != "k"),
            extra,
            res(K.PORT, "pw2", network="network/n"),
        )
    )
    diff = old.diff(new)
    assert diff.added == (ResourceRef(K.PORT, "pw2"), ResourceRef(K.SERVER, "web2"))
    assert diff.removed == (ResourceRef(K.KEYPAIR, "k"),)
    assert not diff.empty
    assert old.diff(old).empty and old.diff(old) == GraphDiff()
    assert new.diff(old) == GraphDiff(added=diff.removed, removed=diff.added)


@st.composite
def dags(draw: st.DrawFn) -> ResourceGraph:
    """Random acyclic graphs of any kinds, edges pointing only at earlier resources."""
    n = draw(st.integers(1, 25))
    kinds = draw(st.lists(st.sampled_from(list(ResourceKind)), min_size=n, max_size=n))
    resources = []
    for i, kind in enumerate(kinds):
        deps = draw(st.sets(st.integers(0, i - 1), max_size=4)) if i else set()
        resources.append(
            Resource(
                kind,
                f"r{i}",
                draw(st.sampled_from(["a", "b", "c"])),
                refs={"deps": tuple(ResourceRef(kinds[d], f"r{d}") for d in sorted(deps))}
                if deps
                else {},
            )
        )
    order = draw(st.permutations(resources))
    return ResourceGraph(tuple(order))


@settings(max_examples=200, deadline=None)
@given(dags())
def test_restore_order_puts_every_resource_after_its_dependencies(graph: ResourceGraph) -> None:
    order = graph.restore_order()
    assert sorted(r.ref for r in order) == sorted(graph.refs)
    pos = {r.ref: i for i, r in enumerate(order)}
    for r in graph.resources:
        for d in r.depends_on:
            assert pos[d] < pos[r.ref]


def _closure(kind: ResourceKind) -> set[ResourceKind]:
    rules = {r.kind: r.after for r in RESTORE_RULES}
    out: set[ResourceKind] = set()
    todo = list(rules[kind])
    while todo:
        x = todo.pop()
        if x not in out:
            out.add(x)
            todo.extend(rules[x])
    return out


def _acyclic(edges: dict[ResourceRef, set[ResourceRef]]) -> bool:
    state: dict[ResourceRef, int] = {}

    def visit(n: ResourceRef) -> bool:
        if state.get(n) == 1:
            return False
        if state.get(n) == 2:
            return True
        state[n] = 1
        ok = all(visit(d) for d in edges[n])
        state[n] = 2
        return ok

    return all(visit(n) for n in edges)


@settings(max_examples=300, deadline=None)
@given(dags())
def test_restore_order_follows_the_rules_unless_edges_forbid_it(graph: ResourceGraph) -> None:
    """Pairwise, a kind comes after every kind its rule (transitively) names, unless an
    edge the rules did not foresee makes that impossible; then the edges still hold."""
    must: dict[ResourceRef, set[ResourceRef]] = {
        a.ref: set(a.depends_on) | {b.ref for b in graph.resources if b.kind in _closure(a.kind)}
        for a in graph.resources
    }
    order = graph.restore_order()
    pos = {r.ref: i for i, r in enumerate(order)}
    if _acyclic(must):
        for a, deps in must.items():
            for b in deps:
                assert pos[b] < pos[a], f"{b} must come before {a}"


@settings(max_examples=100, deadline=None)
@given(dags())
def test_restore_order_is_deterministic(graph: ResourceGraph) -> None:
    shuffled = ResourceGraph(tuple(reversed(graph.resources)))
    assert [r.ref for r in graph.restore_order()] == [r.ref for r in shuffled.restore_order()]


# --------------------------------------------------------------------------------------
# state machines
# --------------------------------------------------------------------------------------


RUN_ALLOWED = {
    ("pending", "running"),
    ("pending", "cancelled"),
    ("running", "succeeded"),
    ("running", "partially_failed"),
    ("running", "reverting"),
    ("running", "failed"),
    ("running", "cancelling"),
    ("cancelling", "reverting"),
    ("cancelling", "cancelled"),
    ("cancelling", "failed"),
    ("reverting", "reverted"),
    ("reverting", "cancelled"),
    ("reverting", "failed"),
}


@pytest.mark.parametrize(("a", "b"), list(itertools.product(RunState, RunState)))
def test_run_transitions(a: RunState, b: RunState) -> None:
    if (a.value, b.value) in RUN_ALLOWED:
        assert transition(a, b, RUN_TRANSITIONS) is b
    else:
        with pytest.raises(InvalidTransition, match=f"cannot go from {a.value} to {b.value}"):
            transition(a, b, RUN_TRANSITIONS)


def test_final_run_states() -> None:
    assert {s.value for s in FINAL_RUN_STATES} == {
        "succeeded",
        "partially_failed",
        "reverted",
        "failed",
        "cancelled",
    }
    # every unfinished state can reach a final one
    for s in set(RunState) - FINAL_RUN_STATES:
        seen, todo = set(), [s]
        while todo:
            x = todo.pop()
            if x not in seen:
                seen.add(x)
                todo.extend(RUN_TRANSITIONS[x])
        assert seen & FINAL_RUN_STATES, s


STEP_ALLOWED = {
    ("pending", "running"),
    ("pending", "skipped"),
    ("pending", "reverted"),
    ("running", "done"),
    ("running", "failed"),
    ("running", "running"),
    ("running", "reverting"),
    ("done", "reverting"),
    ("done", "reverted"),
    ("done", "running"),  # re-run on resume after a kill between the work and the record
    ("failed", "running"),
    ("failed", "reverting"),
    ("failed", "reverted"),
    ("reverting", "reverted"),
    ("reverting", "failed"),
    ("reverting", "reverting"),
    ("reverted", "running"),
}


@pytest.mark.parametrize(("a", "b"), list(itertools.product(StepState, StepState)))
def test_step_transitions(a: StepState, b: StepState) -> None:
    if (a.value, b.value) in STEP_ALLOWED:
        assert transition(a, b, STEP_TRANSITIONS) is b
    else:
        with pytest.raises(InvalidTransition):
            transition(a, b, STEP_TRANSITIONS)


def test_summarize_steps() -> None:
    steps = [Step("r", "a", StepState.DONE), Step("r", "b", StepState.DONE), Step("r", "c")]
    assert summarize_steps(steps) == {"done": 2, "pending": 1}


# --------------------------------------------------------------------------------------
# policies, retention, bandwidth
# --------------------------------------------------------------------------------------


def test_presets_are_valid_policies() -> None:
    assert set(PRESETS) == {"gold", "silver", "bronze"}
    for name, p in PRESETS.items():
        assert p.name == name
        assert load(Policy, dump(p)) == p
        assert p.retention.last >= 1
    gold, silver, bronze = PRESETS["gold"], PRESETS["silver"], PRESETS["bronze"]
    assert gold.rpo_seconds < silver.rpo_seconds < bronze.rpo_seconds
    assert gold.consistency is Consistency.APPLICATION and gold.quiesce
    assert gold.quiesce[0] == QuiesceHook(agent="guest-agent")


def ts(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def test_select_kept_last_only() -> None:
    created = {f"c{i}": 1000.0 + i for i in range(5)}
    assert select_kept(created, Retention(last=2)) == {"c4", "c3"}
    assert select_kept({}, Retention(last=3)) == set()
    assert select_kept({"x": 5.0}, Retention(last=1)) == {"x"}


def test_select_kept_hourly_daily_buckets() -> None:
    created = {
        "mon-09:10": ts("2024-01-01T09:10"),
        "mon-09:50": ts("2024-01-01T09:50"),
        "mon-10:05": ts("2024-01-01T10:05"),
        "mon-10:40": ts("2024-01-01T10:40"),
        "tue-08:00": ts("2024-01-02T08:00"),
        "tue-23:59": ts("2024-01-02T23:59"),
    }
    # newest of each of the last 3 hours that hold a checkpoint
    assert select_kept(created, Retention(last=1, hourly=3)) == {
        "tue-23:59",
        "tue-08:00",
        "mon-10:40",
    }
    # newest of each day; the newest overall is always kept
    assert select_kept(created, Retention(last=1, daily=5)) == {"tue-23:59", "mon-10:40"}
    assert select_kept(created, Retention(last=2, daily=1)) == {"tue-23:59", "tue-08:00"}


def test_select_kept_weekly_uses_iso_weeks_and_monthly() -> None:
    created = {
        "sun": ts("2023-12-31T12:00"),  # ISO week 2023-W52
        "mon": ts("2024-01-01T12:00"),  # ISO week 2024-W01, month 2024-01
        "feb": ts("2024-02-15T12:00"),
        "feb-late": ts("2024-02-28T12:00"),
    }
    assert select_kept(created, Retention(weekly=10)) == {"sun", "mon", "feb", "feb-late"}
    assert select_kept(created, Retention(monthly=2)) == {"feb-late", "mon"}
    assert select_kept(created, Retention(monthly=12)) == {"feb-late", "mon", "sun"}


def test_select_kept_ties_are_deterministic() -> None:
    created = {"b": 10.0, "a": 10.0, "c": 10.0}
    assert select_kept(created, Retention(last=1)) == {"a"}


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.text("abcdef", min_size=1, max_size=4), st.floats(0, 4e9), max_size=30),
    st.builds(
        Retention,
        last=st.integers(1, 5),
        hourly=st.integers(0, 5),
        daily=st.integers(0, 5),
        weekly=st.integers(0, 5),
        monthly=st.integers(0, 5),
    ),
)
def test_select_kept_properties(created: dict[str, float], retention: Retention) -> None:
    kept = select_kept(created, retention)
    assert kept <= set(created)
    if created:
        newest = min(created.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        assert newest in kept
    bound = retention.last + retention.hourly + retention.daily
    assert len(kept) <= bound + retention.weekly + retention.monthly
    assert len(kept) >= min(len(created), retention.last)
    # more generous retention never keeps less
    more = Retention(retention.last + 1, retention.hourly + 1, retention.daily, 0, 0)
    assert select_kept(created, more) >= select_kept(
        created, Retention(retention.last, retention.hourly, retention.daily)
    )


def test_bandwidth_windows() -> None:
    bw = Bandwidth(
        bytes_per_second=100,
        windows=(BandwidthWindow(9, 17, 10), BandwidthWindow(22, 6, 1000)),
    )
    assert bw.rate_at(8) == 100
    assert bw.rate_at(9) == 10 and bw.rate_at(16) == 10
    assert bw.rate_at(17) == 100
    assert bw.rate_at(22) == 1000 and bw.rate_at(2) == 1000 and bw.rate_at(6) == 100
    assert Bandwidth().rate_at(12) == 0  # unlimited


def test_recovery_plan_group_of() -> None:
    plan = RecoveryPlan("w", "b", boot_groups=(BootGroup("a", ("db",)), BootGroup("b", ("x",))))
    assert plan.group_of("db") == 0 and plan.group_of("x") == 1 and plan.group_of("web") == 2


def test_checkpoint_volume_lookup() -> None:
    cp = sample_checkpoint()
    assert cp.volume("vw").image_id == "img-1"
    with pytest.raises(KeyError):
        cp.volume("nope")
