"""Who is calling: a local token's roles, as issued and as read from older token files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from seawall.api.auth import LocalTokens, Principal
from seawall.errors import SeawallError


def test_a_token_holds_the_roles_it_was_issued_with(tmp_path: Path) -> None:
    tokens = LocalTokens(tmp_path)
    reader = tokens.lookup(tokens.issue("alpha", roles=["reader"]))
    operator = tokens.lookup(tokens.issue("alpha", roles=["reader", "dr-operator"]))
    assert reader is not None and reader.roles == {"reader"} and not reader.admin
    assert operator is not None and operator.roles == {"reader", "dr-operator"}
    with pytest.raises(SeawallError, match="at least one role"):
        tokens.issue("alpha", roles=[])


def test_tokens_issued_before_roles_keep_their_powers(tmp_path: Path) -> None:
    """An entry of a token file written before roles: ``admin: true`` is the admin role,
    anything else a member (what every token could do then)."""
    tokens = LocalTokens(tmp_path)
    digest = {t: hashlib.sha256(t.encode()).hexdigest() for t in ("sw_old", "sw_old_admin")}
    tokens.path.write_text(
        json.dumps(
            {
                digest["sw_old"]: {"project": "alpha", "admin": False, "name": "old"},
                digest["sw_old_admin"]: {"project": "admin", "admin": True, "name": "boss"},
            }
        )
    )
    old, boss = tokens.lookup("sw_old"), tokens.lookup("sw_old_admin")
    assert old is not None and old.roles == {"member"} and not old.admin
    assert boss is not None and boss.roles == {"admin"} and boss.admin


def test_admin_and_the_admin_role_are_one_thing() -> None:
    assert Principal(project="p", admin=True).roles >= {"admin"}
    assert Principal(project="p", roles=frozenset({"admin"})).admin
    assert not Principal(project="p", roles=frozenset({"dr-operator"})).admin
    assert Principal(project="p").roles == {"member"}  # what every caller could before
