"""The RBAC rules on their own: the defaults by role and project, an operator's policy
file overriding them, and the 403 message naming the role needed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from seawall.api.auth import Principal
from seawall.errors import InvalidInput
from seawall.service.access import Forbidden
from seawall.service.rbac import ROLES, Rbac


def caller(*roles: str, project: str = "alpha", project_id: str = "") -> Principal:
    return Principal(project=project, project_id=project_id, roles=frozenset(roles))


def test_each_role_includes_the_one_before_and_only_in_its_own_project() -> None:
    rules = Rbac()
    may = {
        role: [
            k
            for k in ("protect", "drill", "failover", "failback")
            if rules.allowed(caller(role), f"seawall:run:create:{k}", "alpha")
        ]
        for role in ROLES
    }
    assert may == {
        "reader": [],
        "member": ["protect", "drill"],
        "dr-operator": ["protect", "drill", "failover", "failback"],
        "admin": ["protect", "drill", "failover", "failback"],
    }
    assert rules.allowed(caller("reader"), "seawall:workload:get", "alpha")
    # a project role is no role in another project; admin's is in every project
    assert not rules.allowed(caller("dr-operator"), "seawall:run:create:failover", "beta")
    assert rules.allowed(caller("admin"), "seawall:run:create:failover", "beta")
    # a Keystone caller owns what is recorded under its project's id or its name
    keystone = caller("member", project="alpha", project_id="0f3c")
    assert rules.allowed(keystone, "seawall:plan:update", "0f3c")
    assert rules.allowed(keystone, "seawall:plan:update", "alpha")
    # a token holding none of seawall's roles reads nothing, not even the catalogue
    assert not rules.allowed(caller("heat_stack_owner"), "seawall:workload:list", "alpha")
    assert not rules.allowed(caller(), "seawall:site:list", "alpha")


def test_a_denial_names_the_role_it_needs() -> None:
    with pytest.raises(Forbidden) as denied:
        Rbac().authorize(caller("member"), "seawall:run:create:failover", "alpha")
    message = str(denied.value)
    assert "seawall:run:create:failover needs the dr-operator role" in message
    assert "you hold member" in message and "\n" not in message


def test_an_unknown_action_is_a_programming_error() -> None:
    with pytest.raises(KeyError, match="no RBAC rule 'seawall:run:create:explode'"):
        Rbac().allowed(caller("admin"), "seawall:run:create:explode", "alpha")


def test_the_operators_file_overrides_the_defaults_and_is_reread(tmp_path: Path) -> None:
    path = tmp_path / "rbac.yaml"
    # members may fail over here; drills are the operator's
    path.write_text(
        '"seawall:run:create:failover": "rule:admin or rule:project_member"\n'
        '"seawall:run:create:drill": "rule:admin or rule:project_operator"\n'
    )
    rules = Rbac(path)
    member = caller("member")
    assert rules.allowed(member, "seawall:run:create:failover", "alpha")
    assert not rules.allowed(member, "seawall:run:create:drill", "alpha")
    assert rules.allowed(member, "seawall:run:create:protect", "alpha")  # still the default
    with pytest.raises(Forbidden, match=r"the rule 'seawall:run:create:drill' of .*rbac.yaml"):
        rules.authorize(member, "seawall:run:create:drill", "alpha")

    path.write_text('"seawall:run:create:failover": "!"\n')  # "!" never allows
    later = time.time() + 5
    os.utime(path, (later, later))
    assert not rules.allowed(caller("admin"), "seawall:run:create:failover", "alpha")
    assert rules.allowed(member, "seawall:run:create:drill", "alpha")


def test_a_missing_file_or_an_unknown_rule_stops_at_start(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        Rbac(tmp_path / "nowhere.yaml")
    typo = tmp_path / "rbac.yaml"
    typo.write_text('"seawall:run:create:failovr": "rule:admin"\n')
    with pytest.raises(InvalidInput, match=r"unknown rules seawall:run:create:failovr"):
        Rbac(typo)


def test_oslo_policy_tools_find_the_rules_by_their_entry_point() -> None:
    """``oslopolicy-sample-generator --namespace seawall`` loads the entry point that
    pyproject.toml declares; it must name the function that lists every rule."""
    import importlib
    import tomllib

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    target = project["entry-points"]["oslo.policy.policies"]["seawall"]
    module, _, name = target.partition(":")
    listed = getattr(importlib.import_module(module), name)()
    assert "seawall:run:create:failover" in {r.name for r in listed}
    assert {r.name for r in listed} == set(Rbac().enforcer.registered_rules)
