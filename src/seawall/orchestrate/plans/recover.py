"""Planning a recovery: failover, drill, migration (and failback, a migration back)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from seawall.model import (
    LINK_ROLES,
    SELF_GROUP,
    CheckKind,
    Checkpoint,
    HealthCheck,
    IpPolicy,
    Policy,
    RecoveryPlan,
    Resource,
    ResourceGraph,
    ResourceKind,
    ResourceRef,
    RunKind,
    Workload,
)
from seawall.orchestrate.plans.flow import (
    FlowPlan,
    Stage,
    StepSpec,
    _stage,
    _stages,
    labels,
    resource_key,
    step,
)
from seawall.orchestrate.plans.problems import RUNTIME_ATTRS, RecoverMode, _mapped_to, _script_stage
from seawall.orchestrate.plans.protect import protect_stages
from seawall.orchestrate.steps import (
    CheckHealthArgs,
    CheckRecoveryArgs,
    CleanupDrillArgs,
    CreateResourceArgs,
    Expectation,
    FenceServerArgs,
    LinkResourceArgs,
    MapResourceArgs,
    ReleaseMarksArgs,
    RestoreImageArgs,
    RestoreVolumeArgs,
    RunScriptArgs,
    VerifyFidelityArgs,
    VerifyVolumeArgs,
    WaitServerArgs,
    id_symbol,
    symbol_ref,
)

K = ResourceKind


#: roles left out when a resource is recreated: a volume is created blank, never from its
#: image, because RestoreVolume writes only the checkpoint's data chunks and a hole in
#: the checkpoint (zeros) must read as zeros, not as the image's bytes
_BLANK_ROLES = frozenset({(K.VOLUME, "image")})


#: kinds a drill recreates under their own names: the project is the target's, and a
#: volume type is the operator's, one per cloud, so a drill uses the target's same-named
#: type as a failover does instead of making a renamed copy (which needs an admin)
_DRILL_KEEPS_NAME = frozenset({K.PROJECT, K.VOLUME_TYPE})


_CREATE_FIELDS = tuple(f.name for f in dataclasses.fields(CreateResourceArgs))


def _without_links(r: Resource, attrs: dict[str, Any]) -> dict[str, Any]:
    """``attrs`` without what needs the resource's :data:`LINK_ROLES` refs: a security
    group's rules whose remote is another group (the group's own stays: ``"self"``).
    They are left out, never widened: the link step adds them once the groups exist."""
    if r.kind is not K.SECURITY_GROUP:
        return attrs
    rules = [
        rule
        for rule in attrs.get("rules", ())
        if rule.get("remote_group") in (None, "", SELF_GROUP)
    ]
    return {**attrs, "rules": rules}


def _user_tags(r: Resource) -> dict[str, str]:
    """A resource's own tags (selectors depend on them), without seawall's bookkeeping."""
    return {k: v for k, v in r.tags.items() if not k.startswith("seawall:")}


def _spec_attrs(r: Resource, plan: RecoveryPlan, mode: RecoverMode) -> dict[str, Any]:
    attrs = {k: v for k, v in r.attrs.items() if k not in RUNTIME_ATTRS}
    m = plan.mappings
    if r.kind is K.NETWORK and mode is RecoverMode.DRILL:
        attrs["isolated"] = True
        attrs["external"] = False
    if r.kind is K.ROUTER and mode is RecoverMode.DRILL:
        attrs["external_gateway"] = False
    if r.kind is K.PORT and m.ip_policy is IpPolicy.DHCP:
        attrs.pop("fixed_ips", None)
        attrs.pop("mac_address", None)
    if "availability_zone" in attrs:
        zone = str(attrs["availability_zone"])
        attrs["availability_zone"] = m.availability_zone.get(zone, zone)
    if r.kind is K.VOLUME and "volume_type" in attrs:
        vt = str(attrs["volume_type"])
        attrs["volume_type"] = m.volume_type.get(vt, vt)
    return attrs


@dataclass(frozen=True)
class _ResourceSteps:
    """The steps that make one recovery's copy of each resource: create (or map onto a
    target resource), and for a resource with :data:`LINK_ROLES` refs a link step."""

    run_id: str
    checkpoint: Checkpoint
    plan: RecoveryPlan
    mode: RecoverMode

    @functools.cached_property
    def label(self) -> dict[ResourceRef, str]:
        return labels(self.checkpoint.graph)

    def spec_args(self, r: Resource, *, linked: bool) -> CreateResourceArgs:
        """What a create (``linked=False``: without the :data:`LINK_ROLES` refs and what
        needs them) or a link step (everything) asks of the target for ``r``."""
        graph, drill = self.checkpoint.graph, self.mode is RecoverMode.DRILL
        links = frozenset() if linked else LINK_ROLES.get(r.kind, frozenset())
        refs = {
            role: tuple(id_symbol(x) for x in targets if graph.find(x) is not None)
            for role, targets in r.refs.items()
            if (r.kind, role) not in _BLANK_ROLES and role not in links
        }
        attrs = _spec_attrs(r, self.plan, self.mode)
        tags = {"seawall:run": self.run_id, "seawall:workload": self.checkpoint.workload}
        prefix = f"drill-{self.run_id.split('-')[-1][:6]}-" if drill else ""
        return CreateResourceArgs(
            site=self.plan.target,
            kind=r.kind.value,
            name=r.name if r.kind in _DRILL_KEEPS_NAME else prefix + r.name,
            key=resource_key(self.run_id, r.ref),
            attrs=attrs if linked or not links else _without_links(r, attrs),
            refs=refs,
            tags=tags if drill else {**_user_tags(r), **tags},
            source_id=r.id,
        )

    def create(self, r: Resource) -> StepSpec:
        mapped = _mapped_to(self.plan, r, self.mode)
        if mapped:
            return step(
                f"map-{r.kind.value}:{self.label[r.ref]}",
                MapResourceArgs(self.plan.target, r.kind.value, mapped),
                provides=id_symbol(r.ref),
            )
        args = self.spec_args(r, linked=False)
        return step(
            f"create-{r.kind.value}:{self.label[r.ref]}",
            args,
            requires=_requires(args),
            provides=id_symbol(r.ref),
        )

    def link(self, r: Resource) -> StepSpec | None:
        """The second step of a resource with :data:`LINK_ROLES` refs, once every
        resource it links to exists (a group's rules naming other groups)."""
        if not any(r.refs.get(role) for role in LINK_ROLES.get(r.kind, ())):
            return None
        if _mapped_to(self.plan, r, self.mode):
            return None
        full = self.spec_args(r, linked=True)
        args = LinkResourceArgs(**{f: getattr(full, f) for f in _CREATE_FIELDS})
        return step(
            f"link-{r.kind.value}:{self.label[r.ref]}",
            args,
            requires=tuple(sorted({*_requires(full), id_symbol(r.ref)})),
        )


def _requires(a: CreateResourceArgs) -> tuple[str, ...]:
    return tuple(sorted({sym for syms in a.refs.values() for sym in syms}))


def plan_recover(
    *,
    run_id: str,
    kind: RunKind,
    mode: RecoverMode,
    checkpoint: Checkpoint,
    plan: RecoveryPlan,
    repository_site: str,
    prelude: Sequence[Stage] = (),
    checkpoint_symbol: str = "",
    epilogue: Sequence[Stage] = (),
) -> FlowPlan:
    """Recreate a checkpoint's workload at ``plan.target``.

    Restore order comes from :data:`seawall.model.RESTORE_RULES` plus explicit edges;
    servers boot by the plan's boot groups, each group checked healthy before the next.
    A drill renames everything with a ``drill-`` prefix (but the project and volume
    types, the target's own), isolates its networks, drops floating IPs and removes
    everything it created at the end.
    """
    target = plan.target
    graph = checkpoint.graph
    drill = mode is RecoverMode.DRILL
    steps = _ResourceSteps(run_id, checkpoint, plan, mode)
    label = steps.label
    create, link = steps.create, steps.link

    order = graph.restore_order()
    by_kind = {k: [r for r in order if r.kind is k] for k in ResourceKind}
    network_kinds = (K.PROJECT, K.NETWORK, K.SUBNET, K.ROUTER, K.SECURITY_GROUP)
    stages: list[Stage | None] = [
        _stage(
            "preflight",
            [
                step(
                    f"check-site:{target}",
                    CheckRecoveryArgs(target, repository_site, checkpoint.id),
                    requires=(checkpoint_symbol,) if checkpoint_symbol else (),
                )
            ],
        )
    ]
    for k in network_kinds:
        stages.append(_stage(f"network:{k.value}", [create(r) for r in by_kind[k]], parallel=True))
        links = [s for s in (link(r) for r in by_kind[k]) if s is not None]
        stages.append(_stage(f"network:{k.value}-links", links, parallel=True))
    for k in (K.KEYPAIR, K.FLAVOR, K.VOLUME_TYPE, K.SERVER_GROUP):
        stages.append(_stage(f"compute:{k.value}", [create(r) for r in by_kind[k]], parallel=True))
    image_steps = []
    for r in by_kind[K.IMAGE]:
        image_steps.append(create(r))
        if not _mapped_to(plan, r, mode):
            image_steps.append(
                step(
                    f"restore-image:{label[r.ref]}",
                    RestoreImageArgs(target, repository_site, checkpoint.id, r.id),
                    requires=(id_symbol(r.ref),),
                )
            )
    stages.append(_stage("images", image_steps))
    volume_steps: list[StepSpec] = []
    for r in by_kind[K.VOLUME]:
        volume_steps.append(create(r))
        volume_steps.append(
            step(
                f"restore-volume:{label[r.ref]}",
                RestoreVolumeArgs(target, repository_site, checkpoint.id, r.id),
                requires=(id_symbol(r.ref),),
                provides=f"restored:{r.id}",
                timeout=6 * 3600,
            )
        )
    stages.append(_stage("volumes", volume_steps))
    stages.append(_stage("ports", [create(r) for r in by_kind[K.PORT]], parallel=True))

    servers = by_kind[K.SERVER]
    groups: dict[int, list[Resource]] = {}
    for s in servers:
        groups.setdefault(plan.group_of(s.name), []).append(s)
    user_groups = [g.name for g in plan.boot_groups]
    group_names = [*user_groups, "rest"]
    scripts = [
        (
            _script_stage(sc.stage),
            step(
                f"run-script:{i}",
                RunScriptArgs(script=sc, site=target, record=drill),
                timeout=sc.timeout_seconds + 5,
            ),
        )
        for i, sc in enumerate(plan.scripts)
    ]
    check_names: set[str] = set()

    def check_name(hc: HealthCheck) -> str:
        base = f"check-health:{hc.server}:{hc.kind.value}{':' + str(hc.port) if hc.port else ''}"
        name, n = base, 1
        while name in check_names:
            n += 1
            name = f"{base}#{n}"
        check_names.add(name)
        return name

    for gi, group_name in enumerate(group_names):
        members = groups.get(gi, [])
        stages.append(_stage(f"boot:{group_name}", [create(s) for s in members], parallel=True))
        waits = [
            step(
                f"wait-server:{label[s.ref]}",
                WaitServerArgs(target, "ACTIVE"),
                requires=(id_symbol(s.ref),),
            )
            for s in members
        ]
        checks = [
            step(
                check_name(hc),
                CheckHealthArgs(site=target, check=hc, record=drill),
                requires=(id_symbol(next(s for s in members if s.name == hc.server).ref),),
                timeout=hc.timeout_seconds + 5,
            )
            for hc in plan.health_checks
            if any(s.name == hc.server for s in members)
        ]
        after = [step for where, step in scripts if where == group_name and gi < len(user_groups)]
        stages.append(_stage(f"healthy:{group_name}", [*waits, *checks, *after]))
    if not drill:
        stages.append(
            _stage("floating-ips", [create(r) for r in by_kind[K.FLOATING_IP]], parallel=True)
        )
    stages.append(
        _stage(
            "verify",
            [
                step(
                    f"verify-volume:{label[r.ref]}",
                    VerifyVolumeArgs(
                        site=target,
                        repository_site=repository_site,
                        checkpoint_id=checkpoint.id,
                        source_id=r.id,
                        keep_base=not drill,
                        record=drill,
                    ),
                    requires=(id_symbol(r.ref), f"restored:{r.id}"),
                    timeout=6 * 3600,
                )
                for r in by_kind[K.VOLUME]
            ]
            + [step for where, step in scripts if not where or where not in user_groups],
        )
    )
    stages.append(fidelity_stage(target, stages))
    if not drill:  # a drill's copies are removed at its end, marks and all
        stages.append(
            _stage(
                "release",
                [
                    step(
                        f"release-marks:{target}",
                        ReleaseMarksArgs(target),
                        requires=tuple(sorted(_created_symbols(stages))),
                    )
                ],
            )
        )
    if drill:
        stages.append(
            _stage(
                "cleanup",
                [
                    step(
                        f"cleanup-drill:{target}",
                        CleanupDrillArgs(target),
                        requires=tuple(
                            [f"restored:{r.id}" for r in by_kind[K.VOLUME]]
                            + [id_symbol(s.ref) for s in servers]
                        ),
                    )
                ],
            )
        )
    verb = {
        RecoverMode.FAILOVER: "fail over",
        RecoverMode.DRILL: "drill",
        RecoverMode.MIGRATE: "migrate",
    }[mode]
    title = f"{verb} {checkpoint.workload} to {target} from checkpoint {checkpoint.id}"
    return FlowPlan(run_id, kind, title, (*prelude, *_stages(*stages), *epilogue))


def _created_symbols(stages: Sequence[Stage | None]) -> set[str]:
    """The ids the create steps of ``stages`` provide: a step that requires them all runs
    after every copy exists."""
    return {
        s.provides
        for st in stages
        if st is not None
        for s in st.steps
        if isinstance(s.args, CreateResourceArgs) and s.provides
    }


def fidelity_stage(site: str, stages: Sequence[Stage | None]) -> Stage | None:
    """Compare every copy the ``stages`` create with what their create steps ask for,
    once everything is up (after the floating IPs and the volume verifications, before
    a drill's clean-up). The check requires every created or mapped copy's symbol: they
    are also the run's source -> target ids that refs compare through."""
    steps = [s for st in stages if st is not None for s in st.steps]
    # a resource with a link step is expected as that step asks (its full rules)
    linked = {s.args.key: s.args for s in steps if isinstance(s.args, LinkResourceArgs)}
    expected = tuple(
        _expectation(s.name, linked.get(s.args.key, s.args))
        for s in steps
        if isinstance(s.args, CreateResourceArgs) and s.args.kind != K.PROJECT.value
    )
    copies = {s.provides for s in steps if isinstance(s.args, CreateResourceArgs | MapResourceArgs)}
    if not expected:
        return None
    return _stage(
        "fidelity",
        [
            step(
                f"verify-fidelity:{site}",
                VerifyFidelityArgs(site, expected),
                requires=tuple(sorted(copies)),
            )
        ],
    )


def _expectation(step_name: str, args: CreateResourceArgs | LinkResourceArgs) -> Expectation:
    """What a create step asks for, as a resource of the source (its id and refs).

    A project is never created (the copy lives in the target's scoped project), so no
    expectation is made for one. A floating IP's address is expected only when the
    capture asks to preserve it: otherwise the spec's address is a wish, and the
    target's external network (another cloud's) allocates one, as DHCP does for ports
    under the ``dhcp`` IP policy."""
    kind = ResourceKind(args.kind)
    attrs: dict[str, Any] = dict(args.attrs)
    if kind is K.FLOATING_IP and not attrs.get("preserve_address"):
        attrs.pop("address", None)
    refs = {
        role: tuple(ref for sym in symbols if (ref := symbol_ref(sym)) is not None)
        for role, symbols in args.refs.items()
    }
    asked = Resource(kind, args.source_id, args.name, attrs, refs, args.tags)
    return Expectation(step_name.split(":", 1)[1], asked)


def fence_stage(site: str, servers: Sequence[Resource]) -> Stage | None:
    """Power off the primary's servers so nothing writes after the final checkpoint."""
    return _stage(
        "fence",
        [
            step(f"fence-server:{label[s.ref]}", FenceServerArgs(site, s.id))
            for label in [labels(ResourceGraph(tuple(servers)))]
            for s in servers
        ],
        parallel=True,
    )


def plan_migrate(
    *,
    run_id: str,
    kind: RunKind,
    workload: Workload,
    policy: Policy,
    graph: ResourceGraph,
    checkpoint_id: str,
    created_at: float,
    previous: Checkpoint | None,
    plan: RecoveryPlan,
) -> FlowPlan:
    """A planned migration (or failback) to ``plan.target`` with zero data loss.

    The primary's servers are fenced (powered off) first, so nothing writes after the
    final checkpoint; the final checkpoint (no quiesce needed) is replicated to the
    target, and the recovery there starts from it. Reverting powers the primary back on;
    snapshots and older checkpoints are tidied only once the recovery has succeeded.
    """
    final, tidy = protect_stages(
        run_id=run_id,
        workload=workload,
        policy=policy,
        graph=graph,
        site=workload.site,
        checkpoint_id=checkpoint_id,
        created_at=created_at,
        previous=previous,
        targets=[plan.target],
        prefix="final-",
        quiesce=False,
    )
    fence = fence_stage(workload.site, graph.of_kind(K.SERVER))
    pending = pending_checkpoint(workload, graph, checkpoint_id, created_at)
    return plan_recover(
        run_id=run_id,
        kind=kind,
        mode=RecoverMode.MIGRATE,
        checkpoint=pending,
        plan=plan,
        repository_site=plan.target,
        prelude=((fence,) if fence else ()) + final,
        checkpoint_symbol="final-checkpoint",
        epilogue=(tidy,) if tidy else (),
    )


def pending_checkpoint(
    workload: Workload, graph: ResourceGraph, checkpoint_id: str, created_at: float
) -> Checkpoint:
    """What a migration plans from: the final checkpoint's graph, before it is taken."""
    return Checkpoint(
        id=checkpoint_id,
        workload=workload.name,
        site=workload.site,
        created_at=created_at,
        graph=graph,
    )


def default_recovery_plan(workload: Workload, target: str, graph: ResourceGraph) -> RecoveryPlan:
    """Without a user plan: every server in one group, each checked for status ACTIVE."""
    from seawall.model import BootGroup, HealthCheck

    servers = tuple(s.name for s in graph.of_kind(K.SERVER))
    return RecoveryPlan(
        workload=workload.name,
        target=target,
        boot_groups=(BootGroup("all", servers),) if servers else (),
        health_checks=tuple(HealthCheck(n, CheckKind.STATUS) for n in servers),
    )
