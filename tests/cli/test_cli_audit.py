"""``seawall audit list`` and the audit records of local commands: every command that
changes the state database is recorded as the local OS user (``via=cli``), with its
positional arguments as the target and its exit code; reads are not; options (which may
carry secrets) never are. ``seawall`` runs in this process through ``main``."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

from test_cli import fails, listed, seawall

from seawall import errors


def test_local_changes_are_recorded_as_the_os_user_and_reads_are_not(
    seawall_env: dict[str, str], tmp_path: Path
) -> None:
    path = str(tmp_path / "site-s")
    assert seawall("site", "add", "s", "--driver", "sim", "--param", f"path={path}").code == 0
    fails(seawall("site", "remove", "nosuch"), errors.NotFound, "site 'nosuch' not found")
    listed("site", "list")

    removed, added = listed("audit", "list")
    assert (added["action"], added["outcome"], added["status"]) == ("site add", "allowed", 0)
    assert added["target"] == {"name": "s"} and added["route"] == "seawall site add"
    assert added["method"] == "cli" and added["user_agent"].startswith("seawall/")
    assert added["initiator"] == {
        "user": getpass.getuser(),
        "project": "",
        "project_id": "",
        "roles": [],
        "via": "cli",
    }
    assert (removed["action"], removed["outcome"]) == ("site remove", "failed")
    assert removed["status"] == errors.NotFound.exit_code
    assert removed["target"] == {"name": "nosuch"}
    assert path not in json.dumps([added, removed])  # options are never recorded


def test_audit_list_filters(seawall_env: dict[str, str], tmp_path: Path) -> None:
    seawall("site", "remove", "one")
    assert seawall("policy", "create", "platinum", "--rpo", "15m", "--rto", "1h").code == 0
    assert [r["action"] for r in listed("audit", "list", "--outcome", "failed")] == ["site remove"]
    assert [r["target"] for r in listed("audit", "list", "--action", "site remove")] == [
        {"name": "one"}
    ]
    assert len(listed("audit", "list", "--user", getpass.getuser(), "--since", "1h")) == 2
    assert listed("audit", "list", "--user", "somebody-else") == []
    assert listed("audit", "list", "--until", "2000-01-01T00:00:00Z") == []
    assert len(listed("audit", "list", "--limit", "1")) == 1
    fails(
        seawall("audit", "list", "--since", "yesterday"),
        errors.InvalidInput,
        "since: 'yesterday' is neither a time like",
    )
    table = seawall("audit", "list")
    assert table.code == 0 and "failed" in table.out and "allowed" in table.out
