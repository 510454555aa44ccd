"""The step catalogue: every step is a TaskFlow task with ``execute`` and ``revert``.

Rules every step keeps (TaskFlow runs a step again after a crash):

- **Idempotent.** Cloud objects are found-or-created by a deterministic key, snapshots
  by their key, manifests by their id; writing the same volume data twice is harmless.
- **Revert undoes only what this run made**, and tolerates "already gone".
- **Coarse.** One step per resource or volume, never per chunk: chunk progress goes to
  ``update_progress`` and the state database.
- **Deadlines and retries are the step's own.** Transient errors are retried with
  exponential backoff inside the step; integrity errors never are.
- **Cancellation** is checked at the start of every step and between chunks.

The base (journal, deadline, retries, fault hooks for the crash tests) is in ``base``;
the steps of a checkpoint in ``protect``, those of a recovery in ``recover``. Each task
takes the argument dataclass of its kind from ``seawall.orchestrate.steps``, the same
the planners build. :data:`CATALOGUE` names them for the flow factory.
"""

from __future__ import annotations

from typing import Any

from seawall.orchestrate.tasks.base import Context, SeawallTask
from seawall.orchestrate.tasks.protect import (
    ApplyRetention,
    CheckSite,
    CommitCheckpoint,
    ExpireSnapshots,
    FreezeServer,
    ReplicateCheckpoint,
    SnapshotSource,
    SnapshotVolume,
    ThawServer,
    UploadImage,
    UploadVolume,
)
from seawall.orchestrate.tasks.recover import (
    CheckHealth,
    CheckRecovery,
    CleanupDrill,
    CreateResource,
    FenceServer,
    LinkResource,
    MapResource,
    ReleaseMarks,
    RestoreImage,
    RestoreVolume,
    RunScript,
    VerifyFidelity,
    VerifyVolume,
    WaitServer,
    cleanup_run,
    probe,
    tagged,
    verify_volume,
)

__all__ = [
    "CATALOGUE",
    "Context",
    "SeawallTask",
    "SnapshotSource",
    "cleanup_run",
    "probe",
    "tagged",
    "verify_volume",
]

CATALOGUE: dict[str, type[SeawallTask[Any]]] = {
    cls.__name__: cls
    for cls in (
        CheckSite,
        FreezeServer,
        ThawServer,
        SnapshotVolume,
        UploadVolume,
        UploadImage,
        CommitCheckpoint,
        ReplicateCheckpoint,
        ExpireSnapshots,
        ApplyRetention,
        CheckRecovery,
        MapResource,
        CreateResource,
        LinkResource,
        RestoreImage,
        RestoreVolume,
        WaitServer,
        CheckHealth,
        VerifyVolume,
        VerifyFidelity,
        ReleaseMarks,
        RunScript,
        FenceServer,
        CleanupDrill,
    )
}
