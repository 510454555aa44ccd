"""Pure planners: compile an operation into stages of idempotent steps.

A :class:`FlowPlan` is plain data (JSON-able through :func:`seawall.model.dump`): the
dry run prints it, the engine turns it into a TaskFlow flow, and a conductor on another
host can rebuild the very same flow from it. Nothing here does I/O; everything a planner
needs (the discovered graph, the previous checkpoint, the target's inventory) is passed in.

Data between steps flows through named symbols: a step that creates a resource provides
``id:<kind>/<source id>`` and the steps that point at it require that symbol, so the
engine orders them and a resumed run gets the ids back from TaskFlow's persisted store.

``flow``: the plan as data; ``protect``: checkpoints; ``recover``: failover, drill,
migration; ``problems``: the preflight rules of a recovery. Each step's arguments are
the dataclasses of ``seawall.orchestrate.steps``.
"""

from __future__ import annotations

from seawall.orchestrate.plans.flow import (
    FlowPlan,
    Stage,
    StepSpec,
    id_symbol,
    labels,
    plan_from_dict,
    resource_key,
    step,
)
from seawall.orchestrate.plans.problems import RUNTIME_ATTRS, RecoverMode, recovery_problems
from seawall.orchestrate.plans.protect import plan_protect, protect_stages, tidy_stage
from seawall.orchestrate.plans.recover import (
    default_recovery_plan,
    fence_stage,
    pending_checkpoint,
    plan_migrate,
    plan_recover,
)

__all__ = [
    "RUNTIME_ATTRS",
    "FlowPlan",
    "RecoverMode",
    "Stage",
    "StepSpec",
    "default_recovery_plan",
    "fence_stage",
    "id_symbol",
    "labels",
    "pending_checkpoint",
    "plan_from_dict",
    "plan_migrate",
    "plan_protect",
    "plan_recover",
    "protect_stages",
    "recovery_problems",
    "resource_key",
    "step",
    "tidy_stage",
]
