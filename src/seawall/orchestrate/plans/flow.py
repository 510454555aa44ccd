"""The plan as data: steps, stages, the flow plan and its JSON; step-naming helpers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from seawall.model import (
    ResourceGraph,
    ResourceKind,
    ResourceRef,
    RunKind,
    dump,
)
from seawall.orchestrate.steps import (
    StepArgs,
    args_from_dict,
)
from seawall.orchestrate.steps import id_symbol as id_symbol


@dataclass(frozen=True)
class StepSpec:
    """One coarse unit of work (one resource, one volume), named ``verb-noun:subject``.

    ``task`` always equals ``args.TASK`` (build specs with :func:`step`); it is kept as a
    field because the plan's JSON names every step's task.
    """

    name: str
    task: str  #: class name in the task catalogue (seawall.orchestrate.tasks)
    args: StepArgs
    provides: str = ""
    requires: tuple[str, ...] = ()
    retries: int = 2  #: attempts after a transient error, with exponential backoff
    timeout: int = 900  #: seconds; enforced by the step's own waits

    def __post_init__(self) -> None:
        if self.task != self.args.TASK:
            raise ValueError(f"step {self.name}: task {self.task} takes {self.args.TASK}'s args")


def step(
    name: str,
    args: StepArgs,
    *,
    provides: str = "",
    requires: tuple[str, ...] = (),
    timeout: int = 900,
) -> StepSpec:
    """A step of the task that takes ``args``."""
    return StepSpec(name, args.TASK, args, provides=provides, requires=requires, timeout=timeout)


@dataclass(frozen=True)
class Stage:
    """Steps run one after another, or all at once when ``parallel``."""

    name: str
    parallel: bool
    steps: tuple[StepSpec, ...]


@dataclass(frozen=True)
class FlowPlan:
    run_id: str
    kind: RunKind
    title: str
    stages: tuple[Stage, ...]

    def steps(self) -> list[StepSpec]:
        return [s for stage in self.stages for s in stage.steps]

    def step_names(self) -> list[str]:
        return [s.name for s in self.steps()]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dump(self)
        return data


def plan_from_dict(data: Mapping[str, Any]) -> FlowPlan:
    stages = tuple(
        Stage(
            name=st["name"],
            parallel=st["parallel"],
            steps=tuple(
                StepSpec(
                    name=s["name"],
                    task=s["task"],
                    args=args_from_dict(s["task"], s["args"]),
                    provides=s["provides"],
                    requires=tuple(s["requires"]),
                    retries=s["retries"],
                    timeout=s["timeout"],
                )
                for s in st["steps"]
            ),
        )
        for st in data["stages"]
    )
    return FlowPlan(data["run_id"], RunKind(data["kind"]), data["title"], stages)


def resource_key(run_id: str, ref: ResourceRef) -> str:
    """Deterministic idempotency key of what a run creates for a source resource."""
    return f"{run_id}/{ref.kind.value}/{ref.id}"


def labels(graph: ResourceGraph) -> dict[ResourceRef, str]:
    """The name each resource goes by in step names: its own name when that is unique
    among its kind (the usual case), else ``name~id`` (clouds allow duplicate and empty
    names, TaskFlow does not allow duplicate step names)."""
    seen: dict[tuple[ResourceKind, str], int] = {}
    for r in graph.resources:
        seen[(r.kind, r.name)] = seen.get((r.kind, r.name), 0) + 1
    return {
        r.ref: r.name if r.name and seen[(r.kind, r.name)] == 1 else f"{r.name}~{r.id}"
        for r in graph.resources
    }


def _stage(name: str, steps: Iterable[StepSpec], *, parallel: bool = False) -> Stage | None:
    items = tuple(steps)
    return Stage(name, parallel, items) if items else None


def _stages(*stages: Stage | None) -> tuple[Stage, ...]:
    return tuple(s for s in stages if s is not None)
