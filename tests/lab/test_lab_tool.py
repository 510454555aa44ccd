"""The lab tool without a lab: its layout, its constraints file, its ``env`` command.

Fast tier (not marked ``lab``): these hold on any machine, since they only name paths.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

import seawall_lab
from seawall_lab.cli import main
from seawall_lab.install import CONSTRAINTS
from seawall_lab.layout import LabError, LabSite


def test_site_b_is_site_a_moved_by_100_except_the_ceph_mons() -> None:
    a, b = LabSite("a", Path("/x")).ports, LabSite("b", Path("/x")).ports
    for name, port in a.items():
        expected = port + 1 if name.startswith("mon_") else port + 100
        assert b[name] == expected, name
    assert len(set(a.values()) | set(b.values())) == 2 * len(a), "the sites share a port"


def test_an_unknown_site_is_refused() -> None:
    with pytest.raises(LabError, match="sites a and b"):
        LabSite("c").port(5000)


def test_the_constraints_file_is_part_of_the_lab_tool() -> None:
    """Found beside the tool's own code, not relative to a seawall checkout or wheel."""
    assert CONSTRAINTS.is_file()
    assert CONSTRAINTS.parent == Path(seawall_lab.__file__).resolve().parent
    assert "keystoneauth1===" in CONSTRAINTS.read_text()


def test_env_exports_the_paths_up_writes(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["env", "--site", "b", "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    exported = dict(
        shlex.split(line.removeprefix("export "))[0].split("=", 1)
        for line in result.output.splitlines()
    )
    site = LabSite("b", tmp_path)
    assert exported == {
        "SEAWALL_LAB_ROOT": str(tmp_path),
        "SEAWALL_LAB_CLOUD": "seawall-lab-b",
        "SEAWALL_LAB_CLOUDS_YAML": str(site.clouds_yaml),
        "SEAWALL_LAB_CEPH_CONF": str(site.ceph_conf),
    }


def test_status_of_a_root_with_nothing_started(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["status", "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["site a: nothing started", "site b: nothing started"]


def test_seawall_itself_has_no_lab_command() -> None:
    from seawall.cli import cli

    assert "lab" not in cli.commands


def test_a_socket_file_left_by_a_killed_daemon_is_not_taken_for_a_live_one(
    tmp_path: Path,
) -> None:
    """What broke a CI run: a SIGKILLed ovsdb-server leaves its socket file, and a
    bring-up that waited for the *file* then failed at once with "connection refused".
    The lab waits for a socket that accepts, and removes a dead one before it starts the
    daemon again; a live one is left alone."""
    import socket

    from seawall_lab.process import clear_stale_socket, unix_socket_open

    site = LabSite("a", tmp_path)
    site.run.mkdir(parents=True)
    stale = site.run / "ovnnb_db.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(stale))
    dead.close()  # the file stays, nothing listens: what SIGKILL leaves behind
    assert stale.is_socket() and not unix_socket_open(stale)
    clear_stale_socket(site, "ovsdb-nb", stale)
    assert not stale.exists()

    live_path = site.run / "ovnsb_db.sock"
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(live_path))
        live.listen(1)
        assert unix_socket_open(live_path)
        clear_stale_socket(site, "ovsdb-sb", live_path)
        assert live_path.is_socket()
