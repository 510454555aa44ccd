"""Fidelity: does a recovered resource hold what the recovery asked for, and what changed
in a workload between two checkpoints. Pure, like the model: the caller reads the cloud.

Byte-for-byte verification proves a recovery's volumes; this proves everything around
them. :func:`compare` takes the *expected* resource, which is what the recovery asked the
cloud for (the checkpoint's attributes with the plan's mappings and a drill's isolation
already applied, the drill's name prefix, the user's tags), and the *actual* one read back
from the target. So a difference the plan explains is no difference at all, and any
difference left is unexplained: a firewall rule widened, a property lost, a name changed.

What is compared, and how:

- every attribute the expected side states, except :data:`RUNTIME_ATTRS` (the cloud's
  state, not the user's); an attribute the expected side does not state is the cloud's
  to fill in (its defaults, the addresses DHCP allocated when the plan said ``dhcp``);
- mappings compare key by key (``metadata.role``), so a difference names the key;
- lists compare in order, except those whose order the cloud does not keep
  (:data:`UNORDERED`): a security group's rules compare as a set, one difference per
  missing or extra rule, its remote group translated to the recovered copy;
- refs compare through ``ids``, the run's source -> target id mapping: a port's
  security groups must be the recovered copies, not any group; only a server's ports
  keep their order (its NICs come up in that order);
- the name, and the tags except seawall's own ``seawall:*`` bookkeeping.

:func:`drift` is the same comparison between two checkpoints of one workload (same
source ids, every attribute of either side), plus the resources added and removed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from seawall.model import Resource, ResourceGraph, ResourceKind, ResourceRef

K = ResourceKind

#: attributes that describe a resource's runtime, never what a user set
RUNTIME_ATTRS = frozenset({"status", "access_address", "created_at", "updated_at"})

#: per kind, list attributes whose order the cloud does not keep (compared as sets).
#: A subnet's ``dns_nameservers`` are not here: Neutron keeps their order, and resolvers
#: ask them in that order.
UNORDERED: Mapping[ResourceKind, frozenset[str]] = {
    K.SECURITY_GROUP: frozenset({"rules"}),
    K.SUBNET: frozenset({"allocation_pools", "host_routes"}),
    K.PORT: frozenset({"fixed_ips", "allowed_address_pairs"}),
    K.ROUTER: frozenset({"routes"}),
    K.SERVER_GROUP: frozenset({"policies"}),
    K.IMAGE: frozenset({"tags"}),
}

#: ref roles whose order is meaningful (every other role compares as a set)
ORDERED_REFS = frozenset({(K.SERVER, "ports")})

#: a security-group rule's remote naming its own group (as ``seawall.clouds.schema``)
_SELF_GROUP = "self"


@dataclass(frozen=True)
class Difference:
    """One attribute of one resource that is not what it should be.

    ``resource`` is ``<kind> <label>`` (``port web-1``), ``attribute`` a path into it
    (``fixed_ips``, ``metadata.role``, ``rules[ingress IPv4 tcp 5432 from group 1f3c]``,
    ``refs.security_groups``, ``name``, ``tags.app``); ``None`` on a side means absent.
    """

    resource: str
    attribute: str
    expected: Any
    actual: Any

    def __str__(self) -> str:
        return (
            f"{self.resource}.{self.attribute}: expected {_show(self.expected)}, "
            f"got {_show(self.actual)}"
        )


@dataclass(frozen=True)
class Drift:
    """What changed in a workload from an older checkpoint to a newer one."""

    added: tuple[str, ...] = ()  #: resources only the newer one has (``<kind> <label>``)
    removed: tuple[str, ...] = ()  #: resources only the older one has
    changed: tuple[Difference, ...] = ()  #: attribute-level changes of the others

    @property
    def empty(self) -> bool:
        return not self.added and not self.removed and not self.changed

    def report(self) -> dict[str, Any]:
        """As JSON, each change with its ``before`` and ``after`` (the older and newer
        values): the one shape the CLI, the API and the dashboard show."""
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": [
                {
                    "resource": d.resource,
                    "attribute": d.attribute,
                    "before": d.expected,
                    "after": d.actual,
                }
                for d in self.changed
            ],
        }


def describe(r: Resource, label: str = "") -> str:
    """How a difference names a resource: ``<kind> <label>`` (its name by default, its id
    when it has none)."""
    return f"{r.kind.value} {label or r.name or r.id}"


#: the security group Neutron gives every project; a recovery reuses the target's
DEFAULT_SECURITY_GROUP = "default"


def compare(
    expected: Resource,
    actual: Resource,
    *,
    ids: Mapping[ResourceRef, str] | None = None,
    label: str = "",
) -> list[Difference]:
    """Every way ``actual`` differs from ``expected`` (see the module docstring).

    ``ids`` maps the expected side's refs (source resources) to the ids of their copies
    on the actual side; without it refs compare as they are (two captures of one site).
    """
    return _compare(expected, actual, ids, describe(expected, label), every_attr=False)


def drift(older: ResourceGraph, newer: ResourceGraph) -> Drift:
    """Resources added and removed, and every attribute changed, going from ``older`` to
    ``newer`` (two checkpoints of the same workload); runtime state is not drift."""
    old = {r.ref: r for r in older.resources}
    new = {r.ref: r for r in newer.resources}
    names = {**_labels(older), **_labels(newer)}
    changed = [
        d
        for ref in sorted(old.keys() & new.keys())
        for d in _compare(old[ref], new[ref], None, names[ref], every_attr=True)
    ]
    return Drift(
        added=tuple(names[ref] for ref in sorted(new.keys() - old.keys())),
        removed=tuple(names[ref] for ref in sorted(old.keys() - new.keys())),
        changed=tuple(changed),
    )


# -- the comparison -----------------------------------------------------------------------


def _compare(
    expected: Resource,
    actual: Resource,
    ids: Mapping[ResourceRef, str] | None,
    name: str,
    *,
    every_attr: bool,
) -> list[Difference]:
    out: list[Difference] = []

    def differ(attribute: str, want: Any, got: Any) -> None:
        out.append(Difference(name, attribute, want, got))

    if expected.name != actual.name:
        differ("name", expected.name, actual.name)
    keys = set(expected.attrs) | (set(actual.attrs) if every_attr else set())
    for key in sorted(keys - RUNTIME_ATTRS):
        want = expected.attrs.get(key)
        got = actual.attrs.get(key)
        if expected.kind is K.SECURITY_GROUP and key == "rules":
            # the project's default group is the target project's own: a recovery adds
            # the source's rules to it and never removes the target's (explained extras)
            extras = expected.name != DEFAULT_SECURITY_GROUP
            _compare_rules(want or [], got or [], ids, differ, extras=extras)
        else:
            _compare_value(key, want, got, key in UNORDERED.get(expected.kind, ()), differ)
    for role in sorted(set(expected.refs) | set(actual.refs)):
        want_ids = [_target(ref, ids) for ref in expected.refs.get(role, ())]
        got_ids = [ref.id for ref in actual.refs.get(role, ())]
        if (expected.kind, role) not in ORDERED_REFS:
            want_ids, got_ids = sorted(want_ids), sorted(got_ids)
        if want_ids != got_ids:
            differ(f"refs.{role}", want_ids, got_ids)
    want_tags, got_tags = _user_tags(expected.tags), _user_tags(actual.tags)
    for key in sorted(want_tags.keys() | got_tags.keys()):
        if want_tags.get(key) != got_tags.get(key):
            differ(f"tags.{key}", want_tags.get(key), got_tags.get(key))
    return out


def _compare_value(path: str, want: Any, got: Any, unordered: bool, differ: Any) -> None:
    """Mappings key by key (a path per key), lists as lists or as sets, the rest by ==."""
    want, got = _plain(want), _plain(got)
    if isinstance(want, dict) and isinstance(got, dict):
        for key in sorted(want.keys() | got.keys(), key=str):
            _compare_value(f"{path}.{key}", want.get(key), got.get(key), False, differ)
        return
    if unordered and isinstance(want, list) and isinstance(got, list):
        want, got = sorted(want, key=_canonical), sorted(got, key=_canonical)
    if want != got:
        differ(path, want, got)


def _compare_rules(
    want: Sequence[Mapping[str, Any]],
    got: Sequence[Mapping[str, Any]],
    ids: Mapping[ResourceRef, str] | None,
    differ: Any,
    *,
    extras: bool = True,
) -> None:
    """Rules as sets, the expected side's remote groups (source groups) translated to
    their recovered copies; one difference per missing and (``extras``) per extra rule."""

    def translated(rule: Mapping[str, Any]) -> dict[str, Any]:
        out = _plain(rule)
        remote = out.get("remote_group")
        if remote and remote != _SELF_GROUP:
            out["remote_group"] = _target(ResourceRef(K.SECURITY_GROUP, str(remote)), ids)
        return dict(out)

    expected = {_canonical(r): r for r in map(translated, want)}
    actual = {_canonical(r): _plain(r) for r in got}
    for key in sorted(expected.keys() - actual.keys()):
        differ(f"rules[{_rule_label(expected[key])}]", expected[key], None)
    for key in sorted(actual.keys() - expected.keys() if extras else ()):
        differ(f"rules[{_rule_label(actual[key])}]", None, actual[key])


def _rule_label(rule: Mapping[str, Any]) -> str:
    """``ingress IPv4 tcp 5432 from group 1f3c...`` (what a reviewer reads a rule as)."""
    lo, hi = rule.get("port_range_min"), rule.get("port_range_max")
    ports = "" if lo is None else (f"{lo}" if lo == hi else f"{lo}-{hi}")
    if rule.get("remote_group"):
        source = f"from group {rule['remote_group']}"
    elif rule.get("remote_ip_prefix"):
        source = f"from {rule['remote_ip_prefix']}"
    else:
        source = "from any"
    parts = (rule.get("direction"), rule.get("ethertype"), rule.get("protocol") or "any", ports)
    return " ".join(str(p) for p in (*parts, source) if p)


def _target(ref: ResourceRef, ids: Mapping[ResourceRef, str] | None) -> str:
    """The id a ref must have on the actual side (``?<id>`` when the run has no copy)."""
    if ids is None:
        return ref.id
    return ids.get(ref, f"?{ref.id}")


def _user_tags(tags: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if not k.startswith("seawall:")}


def _plain(value: Any) -> Any:
    """JSON's shapes (lists, dicts with string keys), so a tuple equals its list."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _canonical(value: Any) -> str:
    return json.dumps(_plain(value), sort_keys=True, default=str)


def _show(value: Any) -> str:
    return "(absent)" if value is None else json.dumps(value, sort_keys=True, default=str)


def _labels(graph: ResourceGraph) -> dict[ResourceRef, str]:
    """``<kind> <name>``, or ``<kind> <name>~<id>`` when the name is not unique (or empty)."""
    count: dict[tuple[ResourceKind, str], int] = {}
    for r in graph.resources:
        count[(r.kind, r.name)] = count.get((r.kind, r.name), 0) + 1
    unique = {r.ref: bool(r.name) and count[(r.kind, r.name)] == 1 for r in graph.resources}
    return {
        r.ref: describe(r, r.name if unique[r.ref] else f"{r.name}~{r.id}") for r in graph.resources
    }
