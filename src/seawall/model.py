"""The domain model of seawall: pure types, rules and state machines, no I/O.

Everything here is a frozen dataclass that converts to and from plain JSON-able dicts
(:func:`dump` / :func:`load`), so the same objects travel through the state database,
the repository's manifests, TaskFlow's persisted arguments and the API without a second
set of types. :func:`load` is also the validator for user files: it names the field
and the problem (``policy.rpo_seconds: expected an integer, got 'abc'``).
"""

from __future__ import annotations

import dataclasses
import enum
import heapq
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from seawall.errors import InvalidInput, InvalidTransition
from seawall.retention import select_kept as select_kept  # one algorithm, re-exported
from seawall.units import parse_rate

T = TypeVar("T")

# --------------------------------------------------------------------------------------
# Generic dict codec (pure): dataclasses <-> JSON-able dicts, with field-naming errors.
# --------------------------------------------------------------------------------------


def dump(obj: Any) -> Any:
    """Convert a model object (or a container of them) to JSON-able data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: dump(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Mapping):
        return {str(k): dump(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, frozenset, set)):
        items = [dump(v) for v in obj]
        return sorted(items) if isinstance(obj, (frozenset, set)) else items
    return obj


def load(cls: type[T], data: Any, path: str | None = None) -> T:
    """Build ``cls`` from JSON-able data, naming the first wrong field on failure."""
    return typing.cast(T, _load(cls, data, path or _snake(cls.__name__)))


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _load(tp: Any, data: Any, path: str) -> Any:
    """``data`` (parsed JSON/YAML) as a value of type ``tp``; InvalidInput names the field."""
    if tp is Any:
        return data
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _load_union(typing.get_args(tp), data, path)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _load_dataclass(tp, data, path)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _load_enum(tp, data, path)
    if origin in _CONTAINER_LOADERS:
        return _CONTAINER_LOADERS[origin](typing.get_args(tp), data, path)
    if tp in _SCALAR_CHECKS:
        ok, want = _SCALAR_CHECKS[tp]
        if not ok(data):
            raise InvalidInput(f"expected {want}, got {_show(data)}", field=path)
        return float(data) if tp is float else data
    return data


def _load_union(args: tuple[Any, ...], data: Any, path: str) -> Any:
    """The first member type that accepts ``data`` (None only where the union allows it)."""
    if data is None and type(None) in args:
        return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _load(arg, data, path)
        except InvalidInput as exc:
            errors.append(exc)
    raise errors[0] if errors else InvalidInput("unexpected null", field=path)


def _load_dataclass(tp: Any, data: Any, path: str) -> Any:
    """A dataclass from a mapping: unknown fields refused, missing required ones named."""
    if isinstance(data, tp):
        return data
    if not isinstance(data, Mapping):
        raise InvalidInput(f"expected a mapping, got {_show(data)}", field=path)
    hints = typing.get_type_hints(tp)
    known = {f.name for f in dataclasses.fields(tp)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidInput(
            f"unknown field(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(known))}",
            field=path,
        )
    kwargs = {}
    for f in dataclasses.fields(tp):
        if f.name in data:
            kwargs[f.name] = _load_field(f, hints[f.name], data[f.name], f"{path}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise InvalidInput("is required", field=f"{path}.{f.name}")
    try:
        return tp(**kwargs)
    except InvalidInput as exc:
        raise _rebase(exc, _snake(tp.__name__), path) from None
    except (TypeError, ValueError) as exc:
        raise InvalidInput(str(exc), field=path) from None


def _load_enum(tp: type[enum.Enum], data: Any, path: str) -> Any:
    try:
        return tp(data)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in tp)
        raise InvalidInput(f"{_show(data)} is not one of {allowed}", field=path) from None


def _load_tuple(args: tuple[Any, ...], data: Any, path: str) -> Any:
    if not isinstance(data, (list, tuple)):
        raise InvalidInput(f"expected a list, got {_show(data)}", field=path)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_load(args[0], v, f"{path}[{i}]") for i, v in enumerate(data))
    if len(args) != len(data):
        raise InvalidInput(f"expected {len(args)} items, got {len(data)}", field=path)
    return tuple(
        _load(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, data, strict=False))
    )


def _load_frozenset(args: tuple[Any, ...], data: Any, path: str) -> Any:
    if not isinstance(data, (list, tuple, set, frozenset)):
        raise InvalidInput(f"expected a list, got {_show(data)}", field=path)
    return frozenset(_load(args[0], v, f"{path}[]") for v in data)


def _load_mapping(args: tuple[Any, ...], data: Any, path: str) -> Any:
    if not isinstance(data, Mapping):
        raise InvalidInput(f"expected a mapping, got {_show(data)}", field=path)
    kt, vt = args if args else (Any, Any)
    return {_load(kt, k, path): _load(vt, v, f"{path}.{k}") for k, v in data.items()}


def _load_list(args: tuple[Any, ...], data: Any, path: str) -> Any:
    if not isinstance(data, (list, tuple)):
        raise InvalidInput(f"expected a list, got {_show(data)}", field=path)
    return [_load(args[0], v, f"{path}[{i}]") for i, v in enumerate(data)]


_CONTAINER_LOADERS: dict[Any, Callable[[tuple[Any, ...], Any, str], Any]] = {
    tuple: _load_tuple,
    frozenset: _load_frozenset,
    dict: _load_mapping,
    Mapping: _load_mapping,
    typing.Mapping: _load_mapping,
    list: _load_list,
}

#: scalar type -> (accepts?, what the error says was expected); bool is not a number here
_SCALAR_CHECKS: dict[Any, tuple[Callable[[Any], bool], str]] = {
    float: (lambda d: not isinstance(d, bool) and isinstance(d, (int, float)), "a number"),
    int: (lambda d: not isinstance(d, bool) and isinstance(d, int), "an integer"),
    str: (lambda d: isinstance(d, str), "a string"),
    bool: (lambda d: isinstance(d, bool), "true or false"),
}


def _load_field(f: dataclasses.Field[Any], tp: Any, data: Any, path: str) -> Any:
    """One field of a dataclass; text for a field with a ``from_text`` parser in its
    metadata (:data:`RATE`) goes through that parser, so files and the API accept
    ``50MiB/s`` where the field holds bytes per second."""
    parse = f.metadata.get("from_text")
    if parse is not None and isinstance(data, str):
        return parse(data, field=path)
    return _load(tp, data, path)


def _rebase(exc: InvalidInput, head: str, path: str) -> InvalidInput:
    """A nested object's own check names its field from its class (``retention.last``);
    inside a bigger document the field is named from the root (``policy.retention.last``)."""
    name = exc.field or ""
    if path == head or not (name == head or name.startswith(head + ".")):
        return exc
    message = str(exc)[len(name) + 2 :]
    return InvalidInput(message, field=path + name[len(head) :])


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


# --------------------------------------------------------------------------------------
# Sites
# --------------------------------------------------------------------------------------

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def check_name(value: str, what: str) -> str:
    """Names are used in paths, URLs and resource tags, so they are kept simple."""
    if not _NAME.match(value):
        raise InvalidInput(
            f"{value!r} is not a valid name (lower-case letters, digits, '.', '_', '-'; "
            "at most 63 characters, starting with a letter or digit)",
            field=what,
        )
    return value


#: The project of everything made without one: the CLI's workloads and the sim's
#: resources created by an unscoped driver. On an OpenStack site it is the project of the
#: site's own (operator) credentials; every other project needs credentials of its own
#: there (``CloudDriver.for_project``).
DEFAULT_PROJECT = "default"


@dataclass(frozen=True)
class Site:
    """One cloud endpoint: an OpenStack cloud (clouds.yaml entry) or an embedded sim site."""

    name: str
    driver: str
    #: driver parameters: for ``sim`` a ``path``; for ``openstack`` a ``cloud`` name
    params: Mapping[str, str] = field(default_factory=dict)
    #: the repository URL at this site that checkpoints are written to / replicated into
    repository: str = ""

    def __post_init__(self) -> None:
        check_name(self.name, "site.name")
        if not self.driver:
            raise InvalidInput("is required", field="site.driver")


# --------------------------------------------------------------------------------------
# Resources and the resource graph
# --------------------------------------------------------------------------------------


class ResourceKind(enum.StrEnum):
    """Every cloud object kind seawall captures and recreates."""

    PROJECT = "project"
    KEYPAIR = "keypair"
    FLAVOR = "flavor"
    IMAGE = "image"
    VOLUME_TYPE = "volume_type"
    NETWORK = "network"
    SUBNET = "subnet"
    ROUTER = "router"
    SECURITY_GROUP = "security_group"
    PORT = "port"
    VOLUME = "volume"
    SERVER_GROUP = "server_group"
    SERVER = "server"
    FLOATING_IP = "floating_ip"


K = ResourceKind


@dataclass(frozen=True, order=True)
class ResourceRef:
    """A pointer to one resource on one site (ids are only meaningful on their site)."""

    kind: ResourceKind
    id: str

    def __str__(self) -> str:
        return f"{self.kind.value}/{self.id}"


@dataclass(frozen=True)
class Resource:
    """One captured cloud object.

    ``attrs`` hold the driver-neutral description needed to recreate it (sizes, CIDRs,
    fixed IPs, rules...). ``refs`` name the other resources it points to, by role
    (``network``, ``ports``, ``volumes``...). Dependencies are derived from ``refs`` so a
    graph can never disagree with its resources.
    """

    kind: ResourceKind
    id: str
    name: str
    attrs: Mapping[str, Any] = field(default_factory=dict)
    refs: Mapping[str, tuple[ResourceRef, ...]] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> ResourceRef:
        return ResourceRef(self.kind, self.id)

    @property
    def refers_to(self) -> tuple[ResourceRef, ...]:
        """Everything this resource points to: what a workload must hold with it."""
        return tuple(sorted({r for refs in self.refs.values() for r in refs}))

    @property
    def depends_on(self) -> tuple[ResourceRef, ...]:
        """What must exist before this resource is created: its refs, except the
        :data:`LINK_ROLES`, which are set once everything of the stage exists."""
        links = LINK_ROLES.get(self.kind, frozenset())
        return tuple(
            sorted({r for role, refs in self.refs.items() if role not in links for r in refs})
        )


#: Ref roles that link resources after they exist instead of ordering their creation.
#: Security groups name each other as the remote group of their rules, and two groups may
#: name each other ("db: 5432 from app", "app: 9000 from db"), so a recovery creates every
#: group with its other rules first, then adds the rules naming other groups (a second
#: step per group). The remote groups still belong to the workload (``refers_to``).
LINK_ROLES: Mapping[ResourceKind, frozenset[str]] = {
    ResourceKind.SECURITY_GROUP: frozenset({"remote_groups"}),
}

#: a security-group rule's ``remote_group`` when the rule names its own group (other
#: remote groups are named by the source group's id, listed in ``remote_groups``)
SELF_GROUP = "self"


@dataclass(frozen=True)
class RestoreRule:
    """Declared restore order: ``kind`` is created only after every kind in ``after``."""

    kind: ResourceKind
    after: frozenset[ResourceKind]
    reason: str


#: The restore order of resource kinds, each rule with the reason it exists. Reverse
#: order is the delete order. Data, not code, so it can be read and reviewed (Velero).
RESTORE_RULES: tuple[RestoreRule, ...] = (
    RestoreRule(K.PROJECT, frozenset(), "every other resource is owned by a project"),
    RestoreRule(K.KEYPAIR, frozenset({K.PROJECT}), "servers are booted with the keypair"),
    RestoreRule(K.FLAVOR, frozenset({K.PROJECT}), "servers are booted with a flavor"),
    RestoreRule(K.IMAGE, frozenset({K.PROJECT}), "servers and bootable volumes start from images"),
    RestoreRule(K.VOLUME_TYPE, frozenset({K.PROJECT}), "volumes are created with a type"),
    RestoreRule(K.NETWORK, frozenset({K.PROJECT}), "subnets and ports live in a network"),
    RestoreRule(K.SUBNET, frozenset({K.NETWORK}), "a subnet belongs to a network"),
    RestoreRule(K.ROUTER, frozenset({K.SUBNET}), "router interfaces attach to subnets"),
    RestoreRule(K.SECURITY_GROUP, frozenset({K.PROJECT}), "ports carry security groups"),
    RestoreRule(
        K.PORT,
        frozenset({K.SUBNET, K.SECURITY_GROUP}),
        "a port takes a fixed IP from a subnet and the groups' rules",
    ),
    RestoreRule(
        K.VOLUME, frozenset({K.VOLUME_TYPE, K.IMAGE}), "volumes are typed and may be image-based"
    ),
    RestoreRule(K.SERVER_GROUP, frozenset({K.PROJECT}), "server placement follows the group"),
    RestoreRule(
        K.SERVER,
        frozenset({K.PORT, K.VOLUME, K.FLAVOR, K.KEYPAIR, K.SERVER_GROUP, K.IMAGE}),
        "a server boots with its ports and volumes attached",
    ),
    RestoreRule(
        K.FLOATING_IP,
        frozenset({K.SERVER, K.ROUTER}),
        "a floating IP needs a bound port and a route",
    ),
)

_RANK: dict[ResourceKind, int] = {}


def _closure(kind: ResourceKind) -> frozenset[ResourceKind]:
    """Every kind the rules put before ``kind``, directly or through other kinds."""
    rules = {r.kind: r.after for r in RESTORE_RULES}
    out: set[ResourceKind] = set()
    todo = list(rules.get(kind, ()))
    while todo:
        k = todo.pop()
        if k not in out:
            out.add(k)
            todo.extend(rules.get(k, ()))
    return frozenset(out)


def _rank(kind: ResourceKind) -> int:
    """Depth of a kind in the restore rules (longest chain of ``after``)."""
    if not _RANK:
        rules = {r.kind: r.after for r in RESTORE_RULES}

        def depth(k: ResourceKind) -> int:
            return 0 if not rules.get(k) else 1 + max(depth(a) for a in rules[k])

        _RANK.update({k: depth(k) for k in ResourceKind})
    return _RANK[kind]


@dataclass(frozen=True)
class GraphDiff:
    """What changed in a workload between two resolutions."""

    added: tuple[ResourceRef, ...] = ()
    removed: tuple[ResourceRef, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.added and not self.removed


@dataclass(frozen=True)
class ResourceGraph:
    """A workload's resources and their dependency edges (derived from ``refs``)."""

    resources: tuple[Resource, ...] = ()

    def __post_init__(self) -> None:
        seen: set[ResourceRef] = set()
        for r in self.resources:
            if r.ref in seen:
                raise InvalidInput(f"duplicate resource {r.ref}", field="graph.resources")
            seen.add(r.ref)

    def get(self, ref: ResourceRef) -> Resource:
        for r in self.resources:
            if r.ref == ref:
                return r
        raise KeyError(str(ref))

    def find(self, ref: ResourceRef) -> Resource | None:
        return next((r for r in self.resources if r.ref == ref), None)

    def of_kind(self, kind: ResourceKind) -> tuple[Resource, ...]:
        return tuple(r for r in self.resources if r.kind == kind)

    @property
    def refs(self) -> frozenset[ResourceRef]:
        return frozenset(r.ref for r in self.resources)

    def dangling(self) -> list[tuple[ResourceRef, ResourceRef]]:
        """Edges pointing outside the graph (a selector that missed a dependency)."""
        refs = self.refs
        return [(r.ref, d) for r in self.resources for d in r.refers_to if d not in refs]

    def restore_order(self) -> tuple[Resource, ...]:
        """Resources ordered so that each comes after everything it depends on.

        Kind rules give the coarse order (every port after every subnet and security
        group...); explicit edges order resources within it (a network a subnet points
        at, a port on a router's subnet...). A cycle in explicit edges is an input error;
        an edge the rules did not foresee wins over the rules.
        """
        by_ref = {r.ref: r for r in self.resources}
        state: dict[ResourceRef, int] = {}

        def visit(r: Resource, trail: tuple[ResourceRef, ...]) -> None:
            if state.get(r.ref) == 2:
                return
            if state.get(r.ref) == 1:
                cycle = " -> ".join(str(x) for x in (*trail, r.ref))
                raise InvalidInput(f"dependency cycle: {cycle}", field="graph")
            state[r.ref] = 1
            for d in r.depends_on:
                if d in by_ref:
                    visit(by_ref[d], (*trail, r.ref))
            state[r.ref] = 2

        for r in sorted(self.resources, key=lambda x: (_rank(x.kind), x.kind.value, x.id)):
            visit(r, ())
        # The rules are a constraint too: a resource waits for every resource of the kinds
        # its kind comes after. Only if an explicit edge contradicts the rules (a cycle of
        # rule and edge) do the edges alone decide, the rules then being a preference.
        return self._topological(by_ref, rules=True) or self._topological(by_ref, rules=False)

    def _topological(
        self, by_ref: Mapping[ResourceRef, Resource], *, rules: bool
    ) -> tuple[Resource, ...]:
        """Kahn's algorithm, always taking the ready resource of the lowest rank (then
        kind, name, id, so the order is deterministic); () if the constraints cycle."""
        waiting: dict[str, set[str]] = {}
        present = {r.kind for r in self.resources}
        for r in self.resources:
            waiting[str(r.ref)] = {str(d) for d in r.depends_on if d in by_ref}
            if rules:
                waiting[str(r.ref)] |= {f"~{k.value}" for k in _closure(r.kind) & present}
                waiting.setdefault(f"~{r.kind.value}", set()).add(str(r.ref))
        users: dict[str, list[str]] = {}
        for node, deps in waiting.items():
            for d in deps:
                users.setdefault(d, []).append(node)
        by_key = {str(r.ref): r for r in self.resources}

        def priority(node: str) -> tuple[int, str, str, str]:
            r = by_key.get(node)
            return (-1, node, "", "") if r is None else (_rank(r.kind), r.kind.value, r.name, r.id)

        ready = [(priority(n), n) for n, deps in waiting.items() if not deps]
        heapq.heapify(ready)
        order: list[Resource] = []
        done = 0
        while ready:
            _, node = heapq.heappop(ready)
            done += 1
            if node in by_key:
                order.append(by_key[node])
            for u in users.get(node, ()):
                waiting[u].discard(node)
                if not waiting[u]:
                    heapq.heappush(ready, (priority(u), u))
        return tuple(order) if done == len(waiting) else ()

    def diff(self, newer: ResourceGraph) -> GraphDiff:
        """Resources added and removed going from this graph to ``newer``."""
        old, new = self.refs, newer.refs
        return GraphDiff(added=tuple(sorted(new - old)), removed=tuple(sorted(old - new)))


# --------------------------------------------------------------------------------------
# Workloads and policies
# --------------------------------------------------------------------------------------


class SelectorKind(enum.StrEnum):
    MEMBERS = "members"  #: an explicit list of server names or ids
    TAG = "tag"  #: every server carrying all the given tags (key=value)
    PROJECT = "project"  #: every server of the site's project


@dataclass(frozen=True)
class Selector:
    """How a workload's servers are found; the rest of the graph follows their refs."""

    kind: SelectorKind = SelectorKind.MEMBERS
    members: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind is SelectorKind.MEMBERS and not self.members:
            raise InvalidInput("a members selector needs at least one server", field="selector")
        if self.kind is SelectorKind.TAG and not self.tags:
            raise InvalidInput("a tag selector needs at least one key=value", field="selector")

    @classmethod
    def parse(cls, text: str) -> Selector:
        """``tag:k=v,k2=v2``, ``project`` or ``members:a,b``."""
        head, _, rest = text.partition(":")
        if head == "project" and not rest:
            return cls(SelectorKind.PROJECT)
        if head == "tag":
            pairs = [p for p in rest.split(",") if p]
            bad = [p for p in pairs if "=" not in p]
            if bad or not pairs:
                raise InvalidInput(
                    f"expected tag:key=value[,key=value], got {text!r}", field="select"
                )
            return cls(SelectorKind.TAG, tags=dict(p.split("=", 1) for p in pairs))
        if head == "members":
            return cls(SelectorKind.MEMBERS, members=tuple(m for m in rest.split(",") if m))
        raise InvalidInput(
            f"unknown selector {text!r}; use tag:key=value, project or members:a,b", field="select"
        )

    def matches(self, server: Resource) -> bool:
        if self.kind is SelectorKind.PROJECT:
            return True
        if self.kind is SelectorKind.MEMBERS:
            return server.name in self.members or server.id in self.members
        return all(server.tags.get(k) == v for k, v in self.tags.items())


class Consistency(enum.StrEnum):
    CRASH = "crash"  #: volumes snapshotted as they are
    APPLICATION = "application"  #: quiesce hooks run around the snapshots


class QuiesceFailure(enum.StrEnum):
    """What a checkpoint does when a quiesce hook fails."""

    FAIL = "fail"  #: fail the run (nothing is recorded)
    DEGRADE = "degrade"  #: continue crash-consistent, mark the checkpoint and raise an event


@dataclass(frozen=True)
class QuiesceHook:
    """A pre/post pair run around the snapshots of the matching servers."""

    agent: str = "none"  #: registered quiesce agent: none, guest-agent, script
    servers: tuple[str, ...] = ()  #: server names; empty = every server of the workload
    freeze: tuple[str, ...] = ()  #: command for the script agent
    thaw: tuple[str, ...] = ()
    timeout_seconds: int = 60
    on_failure: QuiesceFailure = QuiesceFailure.DEGRADE


@dataclass(frozen=True)
class Retention:
    """How many checkpoints to keep per bucket; :func:`seawall.retention.select_kept`
    applies it (restic's ``forget --keep-*`` rules, the same as ``repo forget``)."""

    last: int = 1
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) < 0:
                raise InvalidInput("must be >= 0", field=f"retention.{f.name}")
        if self.last < 1:
            raise InvalidInput("must keep at least the newest checkpoint", field="retention.last")


#: Field metadata of a bytes-per-second field: besides an integer, :func:`load` takes text
#: in :mod:`seawall.units`' one grammar (``50MiB/s``, ``50M``), as the CLI does.
RATE: Mapping[str, Any] = {"from_text": parse_rate}


@dataclass(frozen=True)
class BandwidthWindow:
    """A daily window (UTC hours, ``start`` inclusive, ``end`` exclusive) with its own rate."""

    start_hour: int
    end_hour: int
    bytes_per_second: int = field(metadata=RATE)


@dataclass(frozen=True)
class Bandwidth:
    bytes_per_second: int = field(default=0, metadata=RATE)  #: 0 means unlimited
    windows: tuple[BandwidthWindow, ...] = ()

    def rate_at(self, hour: int) -> int:
        for w in self.windows:
            inside = (
                w.start_hour <= hour < w.end_hour
                if w.start_hour <= w.end_hour
                else hour >= w.start_hour or hour < w.end_hour
            )
            if inside:
                return w.bytes_per_second
        return self.bytes_per_second


@dataclass(frozen=True)
class Policy:
    """How a workload is protected: how often, how consistent, kept how long, sent where."""

    name: str
    rpo_seconds: int = 3600
    rto_target_seconds: int = 3600
    retention: Retention = field(default_factory=Retention)
    consistency: Consistency = Consistency.CRASH
    quiesce: tuple[QuiesceHook, ...] = ()
    data_path: str = "auto"  #: auto, cbt (changed-block tracking), full
    bandwidth: Bandwidth = field(default_factory=Bandwidth)
    targets: tuple[str, ...] = ()  #: sites whose repositories receive every checkpoint
    drill_schedule: str = ""  #: cron expression, empty for none
    schedule: str = ""  #: cron window; empty = driven by rpo_seconds

    def __post_init__(self) -> None:
        check_name(self.name, "policy.name")
        if self.rpo_seconds < 60:
            raise InvalidInput("must be at least 60 seconds", field="policy.rpo_seconds")
        if self.rto_target_seconds <= 0:
            raise InvalidInput("must be positive", field="policy.rto_target_seconds")
        if self.data_path not in ("auto", "cbt", "full"):
            raise InvalidInput(
                f"{self.data_path!r} is not one of auto, cbt, full", field="policy.data_path"
            )
        if self.consistency is Consistency.APPLICATION and not self.quiesce:
            raise InvalidInput(
                "application consistency needs at least one quiesce hook", field="policy.quiesce"
            )


#: Tiers an admin publishes; users pick one by name.
PRESETS: Mapping[str, Policy] = {
    "gold": Policy(
        "gold",
        rpo_seconds=900,
        rto_target_seconds=900,
        retention=Retention(last=4, hourly=24, daily=7, weekly=4, monthly=12),
        consistency=Consistency.APPLICATION,
        quiesce=(QuiesceHook(agent="guest-agent"),),
        data_path="cbt",
        drill_schedule="0 3 * * 0",
    ),
    "silver": Policy(
        "silver",
        rpo_seconds=3600 * 4,
        rto_target_seconds=3600 * 2,
        retention=Retention(last=2, daily=7, weekly=4),
        data_path="cbt",
        drill_schedule="0 3 1 * *",
    ),
    "bronze": Policy(
        "bronze",
        rpo_seconds=86400,
        rto_target_seconds=86400,
        retention=Retention(last=1, daily=7),
    ),
}


@dataclass(frozen=True)
class Workload:
    """The protected set of resources of one application on one site."""

    name: str
    site: str
    selector: Selector
    policy: str
    targets: tuple[str, ...] = ()
    project: str = DEFAULT_PROJECT

    def __post_init__(self) -> None:
        check_name(self.name, "workload.name")
        if self.site in self.targets:
            raise InvalidInput("a workload cannot target its own site", field="workload.targets")


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VolumeImageRef:
    """One volume of a checkpoint: the repository's volume image plus the change base."""

    volume_id: str
    image_id: str
    size: int
    snapshot_id: str = ""  #: the cloud snapshot kept as the next change-tracking base
    bytes_read: int = 0
    bytes_stored: int = 0


@dataclass(frozen=True)
class Checkpoint:
    """One immutable, consistent recovery point of a workload."""

    id: str
    workload: str
    site: str
    created_at: float
    graph: ResourceGraph
    volumes: tuple[VolumeImageRef, ...] = ()
    consistency: Consistency = Consistency.CRASH
    images: Mapping[str, str] = field(default_factory=dict)  #: image resource id -> stream id
    parent: str = ""  #: previous checkpoint of the same workload, if any
    diff: GraphDiff = field(default_factory=GraphDiff)
    notes: tuple[str, ...] = ()  #: e.g. "quiesce failed on db; crash-consistent"

    def volume(self, volume_id: str) -> VolumeImageRef:
        for v in self.volumes:
            if v.volume_id == volume_id:
                return v
        raise KeyError(volume_id)


# --------------------------------------------------------------------------------------
# Recovery plans
# --------------------------------------------------------------------------------------


class IpPolicy(enum.StrEnum):
    PRESERVE = "preserve"  #: same fixed IPs and MACs at the target
    DHCP = "dhcp"  #: let the target allocate


@dataclass(frozen=True)
class Mappings:
    """Source → target names for each mapped kind; unmapped names stay as they are."""

    network: Mapping[str, str] = field(default_factory=dict)
    subnet: Mapping[str, str] = field(default_factory=dict)
    flavor: Mapping[str, str] = field(default_factory=dict)
    image: Mapping[str, str] = field(default_factory=dict)
    availability_zone: Mapping[str, str] = field(default_factory=dict)
    volume_type: Mapping[str, str] = field(default_factory=dict)
    ip_policy: IpPolicy = IpPolicy.PRESERVE


@dataclass(frozen=True)
class BootGroup:
    """Servers started together; the next group starts when this one is healthy."""

    name: str
    servers: tuple[str, ...]


class CheckKind(enum.StrEnum):
    STATUS = "status"  #: the cloud reports the server active
    TCP = "tcp"  #: a TCP connect to the server's address succeeds
    HTTP = "http"  #: an HTTP GET answers 200 (and contains ``expect``)


@dataclass(frozen=True)
class HealthCheck:
    server: str
    kind: CheckKind = CheckKind.STATUS
    port: int = 0
    path: str = "/"
    expect: str = ""
    timeout_seconds: int = 30


@dataclass(frozen=True)
class Script:
    """A command run by seawall at a stage of recovery (after a boot group, at the end)."""

    stage: str  #: after:<boot group> or final
    command: tuple[str, ...]
    timeout_seconds: int = 60


@dataclass(frozen=True)
class RecoveryPlan:
    """Where and how a workload comes back."""

    workload: str
    target: str
    mappings: Mappings = field(default_factory=Mappings)
    boot_groups: tuple[BootGroup, ...] = ()
    health_checks: tuple[HealthCheck, ...] = ()
    scripts: tuple[Script, ...] = ()

    def group_of(self, server_name: str) -> int:
        """Index of the boot group of a server; servers not listed boot last."""
        for i, g in enumerate(self.boot_groups):
            if server_name in g.servers:
                return i
        return len(self.boot_groups)


# --------------------------------------------------------------------------------------
# Runs and steps: explicit state machines
# --------------------------------------------------------------------------------------


class RunKind(enum.StrEnum):
    PROTECT = "protect"
    FAILOVER = "failover"
    MIGRATE = "migrate"
    DRILL = "drill"
    REPROTECT = "reprotect"
    FAILBACK = "failback"


class RunState(enum.StrEnum):
    PENDING = "pending"  #: recorded, not started
    RUNNING = "running"  #: steps are executing (or will be resumed after a crash)
    SUCCEEDED = "succeeded"  #: every step done
    PARTIALLY_FAILED = (
        "partially_failed"  #: done, but some non-critical step failed (e.g. a drill check)
    )
    REVERTING = "reverting"  #: a step failed; undoing what the run created
    REVERTED = "reverted"  #: everything the run created was undone
    FAILED = "failed"  #: a step failed and could not be reverted; needs an operator
    CANCELLING = "cancelling"  #: cancel requested; stops at the next step boundary
    CANCELLED = "cancelled"  #: stopped by its user and reverted


RUN_TRANSITIONS: Mapping[RunState, frozenset[RunState]] = {
    RunState.PENDING: frozenset({RunState.RUNNING, RunState.CANCELLED}),
    RunState.RUNNING: frozenset(
        {
            RunState.SUCCEEDED,
            RunState.PARTIALLY_FAILED,
            RunState.REVERTING,
            RunState.FAILED,
            RunState.CANCELLING,
        }
    ),
    RunState.CANCELLING: frozenset({RunState.REVERTING, RunState.CANCELLED, RunState.FAILED}),
    RunState.REVERTING: frozenset({RunState.REVERTED, RunState.CANCELLED, RunState.FAILED}),
    RunState.SUCCEEDED: frozenset(),
    RunState.PARTIALLY_FAILED: frozenset(),
    RunState.REVERTED: frozenset(),
    RunState.FAILED: frozenset(),
    RunState.CANCELLED: frozenset(),
}

FINAL_RUN_STATES = frozenset(s for s, nxt in RUN_TRANSITIONS.items() if not nxt)


class StepState(enum.StrEnum):
    PENDING = "pending"  #: not started
    RUNNING = "running"  #: executing (re-run on resume: steps are idempotent)
    DONE = "done"  #: finished
    FAILED = "failed"  #: raised an error
    SKIPPED = "skipped"  #: not needed (e.g. nothing changed)
    REVERTING = "reverting"  #: undoing its effect
    REVERTED = "reverted"  #: its effect was undone


STEP_TRANSITIONS: Mapping[StepState, frozenset[StepState]] = {
    StepState.PENDING: frozenset({StepState.RUNNING, StepState.SKIPPED, StepState.REVERTED}),
    StepState.RUNNING: frozenset(
        {StepState.DONE, StepState.FAILED, StepState.RUNNING, StepState.REVERTING}
    ),
    # DONE -> RUNNING: the process died after the step's work but before the engine
    # recorded it; on resume the (idempotent) step runs again.
    StepState.DONE: frozenset({StepState.REVERTING, StepState.REVERTED, StepState.RUNNING}),
    StepState.FAILED: frozenset({StepState.RUNNING, StepState.REVERTING, StepState.REVERTED}),
    StepState.SKIPPED: frozenset(),
    StepState.REVERTING: frozenset({StepState.REVERTED, StepState.FAILED, StepState.REVERTING}),
    StepState.REVERTED: frozenset({StepState.RUNNING}),
}


def transition(current: Any, new: Any, table: Mapping[Any, frozenset[Any]]) -> Any:
    """Return ``new`` if the table allows ``current -> new``; raise otherwise."""
    if new not in table[current]:
        raise InvalidTransition(f"cannot go from {current.value} to {new.value}")
    return new


@dataclass(frozen=True)
class Step:
    """One unit of work of a run as the journal sees it."""

    run_id: str
    name: str
    state: StepState = StepState.PENDING
    progress: float = 0.0
    detail: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0


@dataclass(frozen=True)
class Run:
    """One execution of an operation."""

    id: str
    kind: RunKind
    workload: str
    state: RunState = RunState.PENDING
    created_at: float = 0.0
    finished_at: float = 0.0
    params: Mapping[str, Any] = field(default_factory=dict)
    result: Mapping[str, Any] = field(default_factory=dict)
    error: str = ""
    project: str = DEFAULT_PROJECT


def summarize_steps(steps: Iterable[Step]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in steps:
        counts[s.state.value] = counts.get(s.state.value, 0) + 1
    return counts
