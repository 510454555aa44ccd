"""Docs that cannot drift: the CLI reference (from --help) and the RBAC reference (from the
rules' defaults) are regenerated and compared."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cli_and_rbac_references_match_the_code() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs/reference/generate.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_readme_names_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    head = readme[: readme.index("## Using seawall")]
    assert "./dev demo" in head and "./dev test" in head
    assert (ROOT / ".ci/run").read_text().strip().endswith("exec ./dev test")
