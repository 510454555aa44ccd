"""The ``/v1`` schemas: pydantic models of what goes over the wire, and nothing else.

Pydantic lives at the edge only (the service speaks the model's dataclasses); the route
modules turn model objects into these. A model's class name is its name in the OpenAPI
document's ``components``, so renaming one changes the published API.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field


class Problem(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    field: str | None = None
    problems: list[str] | None = None


class SiteOut(BaseModel):
    name: str
    driver: str


class PolicyOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    rpo_seconds: int
    rto_target_seconds: int
    schedule: str
    drill_schedule: str
    targets: list[str]


class RpoOut(BaseModel):
    rpo_seconds: int | None
    achieved_rpo_seconds: float | None
    compliant: bool | None
    recovery_site: str
    newest_checkpoint_at: float | None


class WorkloadOut(BaseModel):
    name: str
    site: str
    selector: dict[str, Any]
    policy: str
    targets: list[str]
    project: str
    rpo: RpoOut | None = None


#: A name the API accepts for a new object (policy, workload): DNS-label-like.
NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class WorkloadIn(BaseModel):
    name: str = Field(pattern=NAME)
    site: str = Field(min_length=1, max_length=63)
    selector: str = Field(min_length=1, description="tag:k=v, project or members:a,b")
    policy: str = Field(min_length=1, max_length=63)
    targets: list[str] = []
    project: str | None = Field(None, description="admins only; default: the caller's")


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=NAME)
    rpo_seconds: int = Field(3600, ge=60, le=10**8)
    schedule: str = Field("", description="cron window; empty: driven by rpo_seconds")
    drill_schedule: str = Field("", description="cron expression; empty: no drills")


class CheckpointOut(BaseModel):
    id: str
    workload: str
    site: str
    created_at: float
    consistency: str
    parent: str
    volumes: list[dict[str, Any]]
    notes: list[str]
    resources: int


class ChangeOut(BaseModel):
    resource: str = Field(description="<kind> <name>, e.g. 'port web-1'")
    attribute: str = Field(description="a path into it, e.g. 'fixed_ips', 'metadata.role'")
    before: Any = Field(None, description="the older checkpoint's value; null: absent")
    after: Any = Field(None, description="the newer checkpoint's value; null: absent")


class CheckpointDiffOut(BaseModel):
    workload: str
    older: str
    newer: str
    added: list[str]
    removed: list[str]
    changed: list[ChangeOut]


class PlanOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    workload: str
    target: str


class StepOut(BaseModel):
    name: str
    state: str
    progress: float
    detail: str
    started_at: float
    finished_at: float


class RunOut(BaseModel):
    id: str
    kind: str
    workload: str
    state: str
    project: str
    created_at: float
    finished_at: float
    error: str
    params: dict[str, Any]
    result: dict[str, Any]
    progress: float = Field(description="fraction of steps finished, 0..1")
    steps: list[StepOut] | None = None


class OperationIn(BaseModel):
    operation: Literal["protect", "drill", "failover", "migrate", "reprotect", "failback"]
    target: str | None = None
    checkpoint_id: str | None = None


class DrillIn(BaseModel):
    workload: str = Field(min_length=1)
    target: str | None = None
    checkpoint_id: str | None = None


class DrillReport(BaseModel):
    run: str
    workload: str
    state: str
    created_at: float
    target: str | None
    checkpoint_id: str | None
    rto_seconds: float | None
    verified: bool | None
    residue: int | None
    error: str


class ReportRow(BaseModel):
    workload: str
    project: str
    policy: str
    rpo_seconds: int | None
    achieved_rpo_seconds: float | None
    compliant: bool | None
    rto_target_seconds: int | None
    last_rto_seconds: float | None
    last_drill: DrillReport | None


class EventOut(BaseModel):
    id: int
    at: float
    kind: str
    severity: str
    message: str
    workload: str | None
    run_id: str | None
    data: dict[str, Any]


class InitiatorOut(BaseModel):
    user: str
    project: str
    project_id: str
    roles: list[str]
    via: str


class AuditOut(BaseModel):
    id: int
    at: float
    time: str
    action: str
    method: str
    route: str
    target: dict[str, str]
    outcome: Literal["allowed", "denied", "failed", "pending"]
    status: int
    initiator: InitiatorOut
    client: str
    user_agent: str
    request_id: str


class UsageOut(BaseModel):
    since: float | None
    projects: dict[str, dict[str, float]]


#: What a :class:`Page` lists.
ItemT = TypeVar("ItemT")


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    next_marker: str | None


class Health(BaseModel):
    status: str
    version: str
    leader: bool | None
