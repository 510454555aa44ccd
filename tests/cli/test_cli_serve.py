"""``seawall serve``'s options that act before it serves: issuing tokens with roles, and
refusing an RBAC file it cannot use before it starts or writes anything."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from seawall.api.auth import LocalTokens
from seawall.cli import cli


def test_serve_issues_a_token_with_its_roles(tmp_path: Path) -> None:
    out = CliRunner().invoke(
        cli,
        ["serve", "--home", str(tmp_path), "--issue-token", "alpha", "--role", "reader"],
    )
    assert out.exit_code == 0, out.output
    found = LocalTokens(tmp_path).lookup(out.output.strip())
    assert found is not None and found.project == "alpha" and found.roles == {"reader"}
    bad = CliRunner().invoke(
        cli, ["serve", "--home", str(tmp_path), "--issue-token", "alpha", "--role", "root"]
    )
    assert bad.exit_code == 2 and "reader" in bad.output


def test_serve_refuses_a_missing_or_mistyped_rbac_file_before_starting(tmp_path: Path) -> None:
    home = tmp_path / "home"
    out = CliRunner().invoke(cli, ["serve", "--home", str(home), "--rbac-file", "nope.yaml"])
    assert out.exit_code == 2 and "RBAC file nope.yaml does not exist" in out.output
    typo = tmp_path / "rbac.yaml"
    typo.write_text('"seawall:run:create:fialover": "rule:admin"\n')
    out = CliRunner().invoke(cli, ["serve", "--home", str(home), "--rbac-file", str(typo)])
    assert out.exit_code == 2 and "unknown rules seawall:run:create:fialover" in out.output
    assert not home.exists()  # no first admin token written, nothing started
