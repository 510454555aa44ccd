"""What each step kind takes: one frozen dataclass per task of the step catalogue.

The planners (``plans``) build these and the tasks (``tasks``) read them, so a field
renamed on one side fails mypy on the other, not a run. In a :class:`FlowPlan`'s JSON
(persisted by TaskFlow with every run, printed by the dry run) the arguments are the
dataclass's fields dumped with :func:`seawall.model.dump`; :func:`args_from_dict`
loads them back by the step's task name.

Runs persisted before the arguments were typed carried a ``run_id`` argument in most
steps that no step ever read (steps know their run from TaskFlow's injected ``run``);
it is no longer written, and loading ignores argument keys a step kind does not take so
that those runs can still be resumed.

Data between steps does not travel in arguments but in TaskFlow symbols: a step that
creates a resource provides ``id:<kind>/<source id>`` (:func:`id_symbol`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from seawall.errors import InvalidInput
from seawall.model import (
    Bandwidth,
    HealthCheck,
    QuiesceHook,
    Resource,
    ResourceKind,
    ResourceRef,
    Retention,
    Script,
    load,
)


def id_symbol(ref: ResourceRef) -> str:
    """The symbol a step creating (or mapping) ``ref``'s copy provides its new id under."""
    return f"id:{ref.kind.value}/{ref.id}"


def symbol_ref(symbol: str) -> ResourceRef | None:
    """The source resource an :func:`id_symbol` names (None for any other symbol)."""
    head, _, rest = symbol.partition("/")
    if not head.startswith("id:") or not rest:
        return None
    try:
        return ResourceRef(ResourceKind(head.removeprefix("id:")), rest)
    except ValueError:
        return None


@dataclass(frozen=True)
class StepArgs:
    """Base of every step's arguments; ``TASK`` names the task class that takes them."""

    TASK: ClassVar[str] = ""


# -- protect ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckSiteArgs(StepArgs):
    TASK: ClassVar[str] = "CheckSite"
    site: str


@dataclass(frozen=True)
class FreezeServerArgs(StepArgs):
    TASK: ClassVar[str] = "FreezeServer"
    site: str
    server: Resource
    hooks: tuple[QuiesceHook, ...]


@dataclass(frozen=True)
class ThawServerArgs(StepArgs):
    TASK: ClassVar[str] = "ThawServer"
    site: str
    server: Resource
    hooks: tuple[QuiesceHook, ...]


@dataclass(frozen=True)
class SnapshotVolumeArgs(StepArgs):
    TASK: ClassVar[str] = "SnapshotVolume"
    site: str
    volume_id: str
    key: str  #: the snapshot's idempotency key (``<run>/<prefix>snap/<volume>``)


@dataclass(frozen=True)
class UploadVolumeArgs(StepArgs):
    TASK: ClassVar[str] = "UploadVolume"
    site: str
    volume_id: str
    name: str  #: the volume image's name in the repository
    base_image: str  #: previous checkpoint's image of this volume ('' = full read)
    base_snapshot: str  #: its snapshot, for changed extents ('' = no change tracking)


@dataclass(frozen=True)
class UploadImageArgs(StepArgs):
    TASK: ClassVar[str] = "UploadImage"
    site: str
    image: Resource


@dataclass(frozen=True)
class CommitCheckpointArgs(StepArgs):
    TASK: ClassVar[str] = "CommitCheckpoint"
    site: str
    #: the checkpoint's manifest without what the upload steps provide (volumes, images)
    checkpoint: Mapping[str, Any]
    project: str
    volume_symbols: Mapping[str, str]  #: volume id -> symbol of its uploaded image
    image_symbols: Mapping[str, str]  #: image id -> symbol of its stream
    frozen_symbols: tuple[str, ...]  #: symbols of the freeze steps (their notes)


@dataclass(frozen=True)
class ReplicateCheckpointArgs(StepArgs):
    TASK: ClassVar[str] = "ReplicateCheckpoint"
    source: str
    target: str
    checkpoint_id: str
    bandwidth: Bandwidth


@dataclass(frozen=True)
class ExpireSnapshotsArgs(StepArgs):
    TASK: ClassVar[str] = "ExpireSnapshots"
    site: str
    volume_ids: tuple[str, ...]
    keep_keys: tuple[str, ...]  #: snapshot keys of this checkpoint (the next bases)


@dataclass(frozen=True)
class ApplyRetentionArgs(StepArgs):
    TASK: ClassVar[str] = "ApplyRetention"
    sites: tuple[str, ...]
    workload: str
    retention: Retention
    keep: str  #: the checkpoint this run made, kept whatever the retention says


# -- recovery ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckRecoveryArgs(StepArgs):
    TASK: ClassVar[str] = "CheckRecovery"
    site: str
    repository_site: str
    checkpoint_id: str


@dataclass(frozen=True)
class MapResourceArgs(StepArgs):
    TASK: ClassVar[str] = "MapResource"
    site: str
    kind: str
    name: str  #: the target resource's name the plan maps onto


@dataclass(frozen=True)
class CreateResourceArgs(StepArgs):
    TASK: ClassVar[str] = "CreateResource"
    site: str
    kind: str
    name: str
    key: str  #: deterministic find-or-create key (``<run>/<kind>/<source id>``)
    attrs: Mapping[str, Any]
    refs: Mapping[str, tuple[str, ...]]  #: role -> symbols of the referenced copies
    tags: Mapping[str, str]
    source_id: str


@dataclass(frozen=True)
class LinkResourceArgs(StepArgs):
    """A second find-or-create of a resource :class:`CreateResourceArgs` made (same
    key), now with the refs of :data:`seawall.model.LINK_ROLES` (a security group's
    rules naming other groups): the driver adds what the first one left out."""

    TASK: ClassVar[str] = "LinkResource"
    site: str
    kind: str
    name: str
    key: str
    attrs: Mapping[str, Any]
    refs: Mapping[str, tuple[str, ...]]
    tags: Mapping[str, str]
    source_id: str


@dataclass(frozen=True)
class RestoreImageArgs(StepArgs):
    TASK: ClassVar[str] = "RestoreImage"
    site: str
    repository_site: str
    checkpoint_id: str
    source_id: str

    @property
    def image_symbol(self) -> str:
        """The symbol of the new image this step fills."""
        return id_symbol(ResourceRef(ResourceKind.IMAGE, self.source_id))


@dataclass(frozen=True)
class RestoreVolumeArgs(StepArgs):
    TASK: ClassVar[str] = "RestoreVolume"
    site: str
    repository_site: str
    checkpoint_id: str
    source_id: str

    @property
    def volume_symbol(self) -> str:
        """The symbol of the new volume this step fills."""
        return id_symbol(ResourceRef(ResourceKind.VOLUME, self.source_id))


@dataclass(frozen=True)
class WaitServerArgs(StepArgs):
    TASK: ClassVar[str] = "WaitServer"
    site: str
    status: str


@dataclass(frozen=True)
class CheckHealthArgs(StepArgs):
    TASK: ClassVar[str] = "CheckHealth"
    site: str
    check: HealthCheck
    record: bool  #: a drill records a failed check instead of failing the run


@dataclass(frozen=True)
class VerifyVolumeArgs(StepArgs):
    TASK: ClassVar[str] = "VerifyVolume"
    site: str
    repository_site: str
    checkpoint_id: str
    source_id: str
    keep_base: bool  #: keep the verification snapshot as reprotect's change base
    record: bool  #: a drill records a difference instead of failing the run

    @property
    def volume_symbol(self) -> str:
        """The symbol of the recovered volume this step compares."""
        return id_symbol(ResourceRef(ResourceKind.VOLUME, self.source_id))


@dataclass(frozen=True)
class Expectation:
    """One resource a recovery created, as it asked for it: the source's id and refs
    (translated through the run's ids when compared), the spec's name, attrs and tags."""

    label: str  #: how the plan's step names call it (``web-1``, ``~<id>`` if unnamed)
    resource: Resource


@dataclass(frozen=True)
class VerifyFidelityArgs(StepArgs):
    """Read back every resource the recovery created and compare it with what it asked
    for (:func:`seawall.fidelity.compare`); the step requires every created or mapped
    copy's symbol, which is also the source -> target id mapping refs compare through."""

    TASK: ClassVar[str] = "VerifyFidelity"
    site: str
    expected: tuple[Expectation, ...]


@dataclass(frozen=True)
class ReleaseMarksArgs(StepArgs):
    """The last step of a failover or migration: every resource the run created on
    ``site`` loses the marks its driver keeps where the user reads them."""

    TASK: ClassVar[str] = "ReleaseMarks"
    site: str


@dataclass(frozen=True)
class RunScriptArgs(StepArgs):
    TASK: ClassVar[str] = "RunScript"
    script: Script
    site: str
    record: bool  #: a drill records a failed script instead of failing the run


@dataclass(frozen=True)
class FenceServerArgs(StepArgs):
    TASK: ClassVar[str] = "FenceServer"
    site: str
    server_id: str


@dataclass(frozen=True)
class CleanupDrillArgs(StepArgs):
    TASK: ClassVar[str] = "CleanupDrill"
    site: str


ARGS: dict[str, type[StepArgs]] = {
    cls.TASK: cls
    for cls in (
        CheckSiteArgs,
        FreezeServerArgs,
        ThawServerArgs,
        SnapshotVolumeArgs,
        UploadVolumeArgs,
        UploadImageArgs,
        CommitCheckpointArgs,
        ReplicateCheckpointArgs,
        ExpireSnapshotsArgs,
        ApplyRetentionArgs,
        CheckRecoveryArgs,
        MapResourceArgs,
        CreateResourceArgs,
        LinkResourceArgs,
        RestoreImageArgs,
        RestoreVolumeArgs,
        WaitServerArgs,
        CheckHealthArgs,
        VerifyVolumeArgs,
        VerifyFidelityArgs,
        ReleaseMarksArgs,
        RunScriptArgs,
        FenceServerArgs,
        CleanupDrillArgs,
    )
}


def args_from_dict(task: str, data: Mapping[str, Any]) -> StepArgs:
    """A step's typed arguments from a plan's JSON, old runs' included (see the module
    docstring: argument keys the step kind does not take are ignored)."""
    cls = ARGS.get(task)
    if cls is None:
        raise InvalidInput(f"unknown step kind {task!r}", field="step.task")
    known = {f.name for f in dataclasses.fields(cls)}
    return load(cls, {k: v for k, v in data.items() if k in known}, f"step.{task}")
