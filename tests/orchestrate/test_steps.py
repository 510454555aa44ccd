"""Typed step arguments: planner and task share one dataclass per step kind, and plans
persisted before the arguments were typed still load (so their runs can be resumed).

``tests/data/plans/persisted-v1/`` holds the full JSON (arguments included) that the
planners wrote before: every step then also carried a ``run_id`` argument no step read.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from seawall.errors import InvalidInput
from seawall.orchestrate.plans import StepSpec, plan_from_dict
from seawall.orchestrate.steps import ARGS, CheckSiteArgs, WaitServerArgs, args_from_dict
from seawall.orchestrate.tasks import CATALOGUE

from .test_plans import PLANS

PERSISTED = Path(__file__).parent.parent / "data" / "plans" / "persisted-v1"


@pytest.mark.parametrize("name", sorted(PLANS))
def test_a_plan_persisted_before_typed_arguments_loads_as_todays_plan(name: str) -> None:
    """...except for the stages added since: a recovery persisted before the fidelity
    check has no ``fidelity`` (nor ``release``) stage, and resumes without one."""
    old = json.loads((PERSISTED / f"{name}.json").read_text())
    today = PLANS[name]()
    today = dataclasses.replace(
        today, stages=tuple(st for st in today.stages if st.name not in ("fidelity", "release"))
    )
    assert plan_from_dict(old).to_dict() == today.to_dict()


@pytest.mark.parametrize("name", sorted(PLANS))
def test_a_plan_round_trips_through_its_json(name: str) -> None:
    plan = PLANS[name]()
    data = json.loads(json.dumps(plan.to_dict()))
    assert plan_from_dict(data).to_dict() == plan.to_dict()


def test_every_task_of_the_catalogue_declares_its_arguments() -> None:
    assert set(ARGS) == set(CATALOGUE)
    for name, cls in ARGS.items():
        assert dataclasses.is_dataclass(cls) and name == cls.TASK


def test_a_step_takes_only_its_own_tasks_arguments() -> None:
    with pytest.raises(ValueError, match="takes CheckSite's args"):
        StepSpec("wait-server:db", "WaitServer", CheckSiteArgs("b"))
    assert StepSpec("wait-server:db", "WaitServer", WaitServerArgs("b", "ACTIVE")).args.site == "b"


def test_an_unknown_step_kind_or_a_missing_argument_is_named() -> None:
    with pytest.raises(InvalidInput, match="unknown step kind 'Teleport'"):
        args_from_dict("Teleport", {})
    with pytest.raises(InvalidInput, match="status"):
        args_from_dict("WaitServer", {"site": "b"})


def test_an_id_symbol_names_its_source_resource_back() -> None:
    """The fidelity check reads the run's source -> target ids off the symbols it requires."""
    from seawall.model import ResourceKind, ResourceRef
    from seawall.orchestrate.steps import id_symbol, symbol_ref

    for ref in (
        ResourceRef(ResourceKind.PORT, "p-1"),
        ResourceRef(ResourceKind.KEYPAIR, "my/key"),  # a keypair's id is its name
    ):
        assert symbol_ref(id_symbol(ref)) == ref
    for other in ("restored:vol-1", "final-checkpoint", "id:teapot/x", "id:port/"):
        assert symbol_ref(other) is None
