"""The recovery's steps: CreateResource journals and reverts only what the run created.

A driver may reuse what the target already has (its same-named volume type, an
identical keypair, the project's ``default`` security group) and says so by returning it
without ``seawall:key`` (the ``CloudDriver`` contract): such a resource must never be
journaled, nor deleted by a revert. The step runs here against a scripted driver and an
in-memory journal, through its ``do``/``undo`` (what TaskFlow's execute/revert call).
RunScript runs a plan's script with an environment of its own, never seawall's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from seawall.clouds import ResourceSpec
from seawall.clouds.tags import KEY_TAG
from seawall.model import DEFAULT_PROJECT, Resource, ResourceKind, ResourceRef, Script
from seawall.orchestrate.plans import StepSpec
from seawall.orchestrate.steps import CreateResourceArgs, RunScriptArgs
from seawall.orchestrate.tasks.base import Context
from seawall.orchestrate.tasks.recover import CreateResource, RunScript

K = ResourceKind
RUN = "run-1"


@dataclass(frozen=True)
class Row:
    site: str
    kind: str
    resource_id: str
    key: str
    removed: bool = False


@dataclass
class Journal:
    rows: list[Row] = field(default_factory=list)

    def record_created(self, run_id: str, site: str, kind: str, rid: str, key: str) -> None:
        self.rows.append(Row(site, kind, rid, key))

    def list_created(self, run_id: str) -> list[Row]:
        return list(self.rows)

    def get_run(self, run_id: str) -> Any:
        return SimpleNamespace(id=run_id, project=DEFAULT_PROJECT)  # whose the steps act for

    def mark_removed(self, run_id: str, kind: str, rid: str) -> None:
        gone = (kind, rid)
        self.rows = [replace(r, removed=True) if (r.kind, r.resource_id) == gone else r
                     for r in self.rows]  # fmt: skip


@dataclass
class Driver:
    """Creates ``new-<n>``, or hands back the target's own ``reuse`` (no key), as told."""

    reuse: Resource | None = None
    existing: dict[str, Resource] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    creates: int = 0

    def create(self, spec: ResourceSpec) -> Resource:
        if self.reuse is not None:
            return self.reuse
        self.creates += 1
        made = Resource(spec.kind, f"new-{self.creates}", spec.name, {}, {},
                        {**spec.tags, KEY_TAG: spec.key})  # fmt: skip
        self.existing[made.id] = made
        return made

    def get(self, ref: ResourceRef) -> Resource | None:
        return self.existing.get(ref.id)

    def find(self, kind: ResourceKind, key: str) -> Resource | None:
        return next((r for r in self.existing.values() if r.tags.get(KEY_TAG) == key), None)

    def delete(self, ref: ResourceRef) -> None:
        self.deleted.append(ref.id)
        self.existing.pop(ref.id, None)


@dataclass
class Runtime:
    db: Journal
    the_driver: Driver

    def driver(self, site: str, project: str = DEFAULT_PROJECT) -> Driver:
        assert project == DEFAULT_PROJECT
        return self.the_driver

    def repository(self, site: str) -> Any:
        raise AssertionError("CreateResource reads no repository")


def args(kind: ResourceKind = K.VOLUME_TYPE, name: str = "__DEFAULT__") -> CreateResourceArgs:
    return CreateResourceArgs("b", kind.value, name, f"{RUN}/{kind.value}/src-1", {}, {},
                              {"seawall:run": RUN}, "src-1")  # fmt: skip


def step(rt: Runtime, a: CreateResourceArgs) -> tuple[CreateResource, Context]:
    task = CreateResource(StepSpec(f"create-{a.kind}:{a.name}", "CreateResource", a), RUN)
    return task, Context(task, rt, RUN, time.monotonic() + 60)  # type: ignore[arg-type]


@pytest.fixture
def theirs() -> Resource:
    """The target's own ``__DEFAULT__`` volume type, as a driver hands it back reused."""
    return Resource(K.VOLUME_TYPE, "vt-target", "__DEFAULT__", {"extra_specs": {}})


def test_what_the_driver_created_is_journaled_and_reverted() -> None:
    rt = Runtime(Journal(), Driver())
    a = args()
    task, ctx = step(rt, a)
    result = task.do(ctx, a, {})
    assert result["owned"] is True and result["id"] == "new-1"
    assert [(r.resource_id, r.key) for r in rt.db.rows] == [("new-1", a.key)]
    task.undo(ctx, a, {}, result)
    assert rt.the_driver.deleted == ["new-1"] and rt.db.rows[0].removed


def test_a_reused_resource_is_neither_journaled_nor_deleted(theirs: Resource) -> None:
    rt = Runtime(Journal(), Driver(reuse=theirs, existing={theirs.id: theirs}))
    a = args()
    task, ctx = step(rt, a)
    result = task.do(ctx, a, {})
    assert (result["id"], result["owned"]) == ("vt-target", False)
    assert rt.db.rows == []  # so a drill's clean-up (the journal) never sees it
    task.undo(ctx, a, {}, result)
    assert rt.the_driver.deleted == [] and "vt-target" in rt.the_driver.existing


def test_a_failed_attempt_reverts_only_what_carries_its_key(theirs: Resource) -> None:
    rt = Runtime(Journal(), Driver(existing={theirs.id: theirs}))
    a = args()
    task, ctx = step(rt, a)
    task.undo(ctx, a, {}, None)  # nothing of ours: the target's type stays
    assert rt.the_driver.deleted == []
    rt.the_driver.create(ResourceSpec(K.VOLUME_TYPE, a.name, a.key))  # made, not recorded
    task.undo(ctx, a, {}, None)
    assert rt.the_driver.deleted == ["new-1"]


def test_a_resumed_attempt_takes_what_the_journal_holds_and_still_owns_it(
    theirs: Resource,
) -> None:
    """Killed after the journal recorded the copy and before TaskFlow saved the result:
    the next attempt returns the journaled copy (still the run's, so a revert removes it),
    even where the driver, keeping no key, would have matched the target's own."""
    rt = Runtime(Journal(), Driver())
    a = args(K.SERVER_GROUP, "web")
    task, ctx = step(rt, a)
    first = task.do(ctx, a, {})
    rt.the_driver.reuse = theirs  # what a content match would hand back now
    again = task.do(ctx, a, {})
    assert (again["id"], again["owned"]) == (first["id"], True)
    assert rt.the_driver.creates == 1 and len(rt.db.rows) == 1
    task.undo(ctx, a, {}, again)
    assert rt.the_driver.deleted == [first["id"]]


def test_a_result_persisted_before_ownership_was_recorded_is_the_runs() -> None:
    rt = Runtime(Journal(), Driver())
    a = args()
    task, ctx = step(rt, a)
    made = rt.the_driver.create(ResourceSpec(K.VOLUME_TYPE, a.name, a.key))
    task.undo(ctx, a, {}, {"id": made.id, "name": a.name, "source_id": "src-1"})
    assert rt.the_driver.deleted == [made.id]


# -- RunScript: a plan's script is the workload's, not seawall's ---------------------------


@dataclass
class ResultJournal:
    """The one journal call RunScript makes: its check's outcome in the run's result."""

    result: dict[str, Any] = field(default_factory=dict)

    def update_run_result(self, run_id: str, values: dict[str, Any]) -> None:
        self.result.update(values)


def test_a_plans_script_gets_nothing_of_seawalls_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The script copies its own ``/proc/self/environ``: what the kernel gave it."""
    for name in ("SEAWALL_PASSPHRASE", "SEAWALL_TOKEN", "OS_PASSWORD", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "secret")
    seen = tmp_path / "environ"
    script = Script("final", ("cp", "/proc/self/environ", str(seen)))
    a = RunScriptArgs(script, "b", record=False)
    rt = Runtime(ResultJournal(), Driver())  # type: ignore[arg-type]
    task = RunScript(StepSpec("script:final", "RunScript", a), RUN)
    assert task.do(Context(task, rt, RUN, time.monotonic() + 60), a, {}) == {"ok": True}  # type: ignore[arg-type]
    env = dict(e.split("=", 1) for e in seen.read_text().split("\0") if "=" in e)
    assert set(env) <= {"PATH", "LANG", "LC_ALL", "TZ", "HOME", "SEAWALL_RUN", "SEAWALL_SITE"}, env
    assert (env["SEAWALL_RUN"], env["SEAWALL_SITE"]) == (RUN, "b")
