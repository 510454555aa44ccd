"""The `store` fixture and the records the state database tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from seawall.db import StateStore
from seawall.model import (
    Checkpoint,
    Resource,
    ResourceGraph,
    ResourceKind,
    Run,
    RunKind,
    Selector,
    Workload,
)


@pytest.fixture
def store(state_url: str) -> Iterator[StateStore]:
    s = StateStore(state_url)
    yield s
    s.close()


def workload(name: str = "app", project: str = "default") -> Workload:
    return Workload(
        name, site="a", selector=Selector(members=("db",)), policy="gold", targets=("b",),
        project=project,
    )  # fmt: skip


def checkpoint(id: str, workload: str = "app", created_at: float = 1000.0) -> Checkpoint:
    graph = ResourceGraph((Resource(ResourceKind.SERVER, "s1", "db", attrs={"ram": 1024}),))
    return Checkpoint(id, workload, "a", created_at, graph)


def run(id: str, workload: str = "app", kind: RunKind = RunKind.PROTECT, at: float = 0.0) -> Run:
    return Run(id, kind, workload, created_at=at, params={"checkpoint": "c1"})
