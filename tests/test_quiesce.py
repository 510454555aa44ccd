"""The script quiesce agent runs the workload's hook with the hook contract's environment
only: the server's name and id, PATH, the locale and HOME; nothing of seawall's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from seawall.model import QuiesceHook, Resource, ResourceKind
from seawall.quiesce import ScriptQuiesce


def test_a_hook_script_gets_nothing_of_seawalls_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hook copies its own ``/proc/self/environ``: what the kernel gave it."""
    for name in ("SEAWALL_PASSPHRASE", "SEAWALL_TOKEN", "OS_PASSWORD", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "secret")
    seen = tmp_path / "environ"
    hook = QuiesceHook("script", freeze=("cp", "/proc/self/environ", str(seen)))
    server = Resource(ResourceKind.SERVER, "srv-1", "db")
    ScriptQuiesce().freeze(None, server, hook)  # type: ignore[arg-type]  # the script agent needs no driver
    env = dict(e.split("=", 1) for e in seen.read_text().split("\0") if "=" in e)
    assert set(env) <= {
        "PATH",
        "LANG",
        "LC_ALL",
        "TZ",
        "HOME",
        "SEAWALL_SERVER",
        "SEAWALL_SERVER_ID",
    }
    assert (env["SEAWALL_SERVER"], env["SEAWALL_SERVER_ID"]) == ("db", "srv-1")
