"""The pure fidelity comparison: a recovered copy against what the recovery asked for,
and the drift between two checkpoints of one workload."""

from __future__ import annotations

import dataclasses
from typing import Any

from seawall.fidelity import Difference, compare, drift
from seawall.model import Resource, ResourceGraph, ResourceKind, ResourceRef

K = ResourceKind


def ref(kind: ResourceKind, id_: str) -> ResourceRef:
    return ResourceRef(kind, id_)


#: the run's source -> target ids (what the step gets from the create steps' symbols)
IDS = {
    ref(K.NETWORK, "net-src"): "net-tgt",
    ref(K.SUBNET, "sub-src"): "sub-tgt",
    ref(K.SECURITY_GROUP, "app-src"): "app-tgt",
    ref(K.SECURITY_GROUP, "db-src"): "db-tgt",
    ref(K.PORT, "p1-src"): "p1-tgt",
    ref(K.PORT, "p2-src"): "p2-tgt",
    ref(K.FLAVOR, "fl-src"): "fl-tgt",
    ref(K.VOLUME, "v1-src"): "v1-tgt",
    ref(K.VOLUME, "v2-src"): "v2-tgt",
}


def port(**changes: Any) -> Resource:
    """A port as the recovery asked for it: source refs, the spec's attrs and tags."""
    base: dict[str, Any] = {
        "kind": K.PORT,
        "id": "p1-src",
        "name": "web-1",
        "attrs": {"fixed_ips": ["10.0.0.5", "10.0.0.6"], "mac_address": "fa:16:3e:00:00:01"},
        "refs": {
            "network": (ref(K.NETWORK, "net-src"),),
            "security_groups": (ref(K.SECURITY_GROUP, "app-src"), ref(K.SECURITY_GROUP, "db-src")),
        },
        "tags": {"app": "shop", "seawall:run": "run-1"},
    }
    base.update(changes)
    return Resource(**base)


def copy_of(expected: Resource, **changes: Any) -> Resource:
    """What the target would return for a faithful copy: target ids, its own bookkeeping
    tags, runtime state, and whatever ``changes`` says."""
    base: dict[str, Any] = {
        "kind": expected.kind,
        "id": IDS.get(expected.ref, "copy"),
        "name": expected.name,
        "attrs": {**expected.attrs, "status": "ACTIVE"},
        "refs": {
            role: tuple(ref(r.kind, IDS[r]) for r in refs) for role, refs in expected.refs.items()
        },
        "tags": {
            **{k: v for k, v in expected.tags.items() if not k.startswith("seawall:")},
            "seawall:key": "run-1/port/p1-src",
        },
    }
    base.update(changes)
    return Resource(**base)


def where(diffs: list[Difference]) -> list[str]:
    return [f"{d.resource}.{d.attribute}" for d in diffs]


def test_a_faithful_copy_has_no_difference() -> None:
    want = port()
    assert compare(want, copy_of(want), ids=IDS) == []


def test_runtime_state_and_seawalls_own_tags_are_not_differences() -> None:
    want = port()
    got = copy_of(
        want,
        attrs={**want.attrs, "status": "DOWN", "updated_at": "later"},
        tags={"app": "shop", "seawall:run": "another", "seawall:workload": "shop"},
    )
    assert compare(want, got, ids=IDS) == []


def test_what_the_expected_side_does_not_state_is_the_clouds_to_choose() -> None:
    """A DHCP plan drops the fixed IPs and MAC from the spec: the allocated ones are fine."""
    want = port(attrs={})
    assert compare(want, copy_of(port()), ids=IDS) == []


def test_each_changed_attribute_is_named_with_both_values() -> None:
    want = port()
    got = copy_of(want, name="web-one", attrs={**want.attrs, "mac_address": "fa:16:3e:ff:ff:ff"})
    diffs = compare(want, got, ids=IDS)
    assert diffs == [
        Difference("port web-1", "name", "web-1", "web-one"),
        Difference("port web-1", "mac_address", "fa:16:3e:00:00:01", "fa:16:3e:ff:ff:ff"),
    ]
    assert str(diffs[1]) == (
        'port web-1.mac_address: expected "fa:16:3e:00:00:01", got "fa:16:3e:ff:ff:ff"'
    )


def test_an_attribute_lost_is_reported_absent() -> None:
    want = port(attrs={**port().attrs, "description": "front door"})
    got = copy_of(port())
    (diff,) = compare(want, got, ids=IDS)
    assert (diff.attribute, diff.expected, diff.actual) == ("description", "front door", None)
    assert str(diff).endswith("got (absent)")


def test_a_label_names_the_resource_as_the_plans_steps_do() -> None:
    want = port(name="")
    got = copy_of(want, attrs={"mac_address": "x", "fixed_ips": want.attrs["fixed_ips"]})
    assert where(compare(want, got, ids=IDS, label="~p1-src")) == ["port ~p1-src.mac_address"]
    assert where(compare(want, got, ids=IDS)) == ["port p1-src.mac_address"]


def test_refs_must_point_at_the_recovered_copies() -> None:
    """A port on the right groups' copies is faithful; on the source's ids (or any other
    group of the target) it is not."""
    want = port()
    wrong = copy_of(
        want, refs={**copy_of(want).refs, "security_groups": (ref(K.SECURITY_GROUP, "app-src"),)}
    )
    (diff,) = compare(want, wrong, ids=IDS)
    assert diff.attribute == "refs.security_groups"
    assert diff.expected == ["app-tgt", "db-tgt"] and diff.actual == ["app-src"]


def test_refs_compare_as_sets_except_a_servers_ports() -> None:
    server = Resource(
        K.SERVER,
        "s-src",
        "web",
        {"metadata": {}},
        {
            "flavor": (ref(K.FLAVOR, "fl-src"),),
            "ports": (ref(K.PORT, "p1-src"), ref(K.PORT, "p2-src")),
            "volumes": (ref(K.VOLUME, "v1-src"), ref(K.VOLUME, "v2-src")),
        },
    )
    got = copy_of(server)
    swapped_volumes = {**got.refs, "volumes": tuple(reversed(got.refs["volumes"]))}
    assert compare(server, copy_of(server, refs=swapped_volumes), ids=IDS) == []
    swapped_ports = {**got.refs, "ports": tuple(reversed(got.refs["ports"]))}
    assert where(compare(server, copy_of(server, refs=swapped_ports), ids=IDS)) == [
        "server web.refs.ports"  # NICs come up in port order
    ]


def test_user_tags_compare_key_by_key() -> None:
    want = port()
    got = copy_of(want, tags={"app": "other", "extra": "1"})
    assert compare(want, got, ids=IDS) == [
        Difference("port web-1", "tags.app", "shop", "other"),
        Difference("port web-1", "tags.extra", None, "1"),
    ]


def test_mappings_compare_key_by_key_and_tuples_equal_lists() -> None:
    want = Resource(K.SERVER, "s", "db", {"metadata": {"role": "db", "tier": "1"}, "cmd": ("a",)})
    got = Resource(K.SERVER, "t", "db", {"metadata": {"role": "cache"}, "cmd": ["a"]})
    assert compare(want, got) == [
        Difference("server db", "metadata.role", "db", "cache"),
        Difference("server db", "metadata.tier", "1", None),
    ]


def test_lists_keep_their_order_unless_the_cloud_does_not() -> None:
    """A subnet's DNS servers are asked in order; its host routes are a set."""
    routes = [{"destination": "10.1.0.0/16", "nexthop": "10.0.0.1"}, {"destination": "0/0"}]
    want = Resource(
        K.SUBNET, "sub-src", "s", {"dns_nameservers": ["1.1.1.1", "9.9.9.9"], "host_routes": routes}
    )
    got = Resource(
        K.SUBNET,
        "sub-tgt",
        "s",
        {"dns_nameservers": ["9.9.9.9", "1.1.1.1"], "host_routes": list(reversed(routes))},
    )
    assert where(compare(want, got)) == ["subnet s.dns_nameservers"]


def rule(**fields: Any) -> dict[str, Any]:
    base = {
        "direction": "ingress",
        "ethertype": "IPv4",
        "protocol": "tcp",
        "port_range_min": 5432,
        "port_range_max": 5432,
        "remote_ip_prefix": None,
    }
    return {**base, **fields}


def group(id_: str, rules: list[dict[str, Any]], remotes: tuple[str, ...] = ()) -> Resource:
    refs = {"remote_groups": tuple(ref(K.SECURITY_GROUP, r) for r in remotes)} if remotes else {}
    return Resource(K.SECURITY_GROUP, id_, "db", {"rules": rules}, refs)


def test_rules_compare_as_a_set_with_remote_groups_translated_to_the_copies() -> None:
    asked = group(
        "db-src",
        [rule(remote_group="app-src"), rule(port_range_min=22, port_range_max=22), rule()],
        ("app-src",),
    )
    recovered = group(
        "db-tgt",
        [rule(), rule(remote_group="app-tgt"), rule(port_range_min=22, port_range_max=22)],
        ("app-tgt",),
    )
    assert compare(asked, recovered, ids=IDS) == []


def test_a_widened_rule_is_one_rule_missing_and_one_too_many() -> None:
    """ "tcp 5432 from group app" coming back as "tcp 5432 from any source"."""
    asked = group("db-src", [rule(remote_group="app-src")], ("app-src",))
    widened = group("db-tgt", [rule()])
    diffs = compare(asked, widened, ids=IDS)
    assert where(diffs) == [
        "security_group db.rules[ingress IPv4 tcp 5432 from group app-tgt]",
        "security_group db.rules[ingress IPv4 tcp 5432 from any]",
        "security_group db.refs.remote_groups",
    ]
    missing, extra, _ = diffs
    assert missing.expected == rule(remote_group="app-tgt") and missing.actual is None
    assert extra.expected is None and extra.actual == rule()


def test_a_rule_naming_its_own_group_stays_self() -> None:
    asked = group("db-src", [rule(remote_group="self")])
    assert compare(asked, group("db-tgt", [rule(remote_group="self")]), ids=IDS) == []


def test_a_ref_the_run_has_no_copy_of_is_marked() -> None:
    want = port(refs={"network": (ref(K.NETWORK, "gone"),)})
    got = copy_of(port(), refs={"network": (ref(K.NETWORK, "net-tgt"),)})
    (diff,) = compare(want, got, ids=IDS)
    assert diff.expected == ["?gone"] and diff.actual == ["net-tgt"]


# -- drift between checkpoints ------------------------------------------------------------


def test_drift_names_added_removed_and_changed_resources_but_not_runtime_state() -> None:
    web = Resource(K.SERVER, "s1", "web", {"status": "ACTIVE", "metadata": {"v": "1"}})
    db = Resource(K.SERVER, "s2", "db", {"status": "ACTIVE"})
    sg = group("g1", [rule()])
    older = ResourceGraph((web, db, sg))
    newer = ResourceGraph(
        (
            Resource(K.SERVER, "s1", "web", {"status": "SHUTOFF", "metadata": {"v": "2"}}),
            group("g1", [rule(), rule(port_range_min=22, port_range_max=22)]),
            Resource(K.SERVER, "s3", "cache", {"status": "ACTIVE", "flavor_note": "x"}),
        )
    )
    d = drift(older, newer)
    assert d.added == ("server cache",) and d.removed == ("server db",)
    assert where(list(d.changed)) == [
        "security_group db.rules[ingress IPv4 tcp 22 from any]",
        "server web.metadata.v",
    ]
    assert not d.empty and drift(older, older).empty


def test_drift_sees_an_attribute_either_side_has() -> None:
    older = ResourceGraph((Resource(K.NETWORK, "n", "net", {"mtu": 1500}),))
    newer = ResourceGraph((Resource(K.NETWORK, "n", "net", {"mtu": 1500, "description": "x"}),))
    assert drift(older, newer).changed == (Difference("network net", "description", None, "x"),)
    assert drift(newer, older).changed == (Difference("network net", "description", "x", None),)


def test_drift_labels_resources_that_share_a_name_by_id() -> None:
    a = Resource(K.PORT, "p1", "", {"mac_address": "1"})
    b = Resource(K.PORT, "p2", "", {"mac_address": "2"})
    d = drift(ResourceGraph((a, b)), ResourceGraph((a, Resource(K.PORT, "p2", "", {}))))
    assert where(list(d.changed)) == ["port ~p2.mac_address"]


def test_the_targets_default_group_may_keep_rules_of_its_own() -> None:
    """The project's ``default`` group is reused: the source's rules must all be there,
    the target's own extra rules are explained (never removed), not differences."""
    rule: dict[str, Any] = {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp"}
    rule.update(port_range_min=22, port_range_max=22, remote_ip_prefix="10.0.0.0/8")
    extra = {**rule, "port_range_min": 8443, "port_range_max": 8443}
    want = Resource(ResourceKind.SECURITY_GROUP, "sg-a", "default", {"rules": [rule]})
    got = Resource(ResourceKind.SECURITY_GROUP, "sg-b", "default", {"rules": [rule, extra]})
    assert compare(want, got) == []
    assert compare(want, Resource(ResourceKind.SECURITY_GROUP, "sg-b", "default", {"rules": []}))
    other = Resource(ResourceKind.SECURITY_GROUP, "sg-a", "app", {"rules": [rule]})
    assert [d.attribute for d in compare(other, dataclasses.replace(got, name="app"))] == [
        "rules[ingress IPv4 tcp 8443 from 10.0.0.0/8]"
    ]
