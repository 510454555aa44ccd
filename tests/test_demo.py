"""``seawall demo`` as a newcomer runs it: a subprocess, its exit code and report.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seawall.clouds.sim import destroy_site

pytestmark = pytest.mark.slow


def processes_of(site: Path) -> list[int]:
    """Live processes started for a sim site (the sim puts SEAWALL_SITE in their env)."""
    marker = f"SEAWALL_SITE={site.resolve()}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in environ and state != "Z":
            found.append(int(proc.name))
    return found


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAWALL_")}
    env |= {"SEAWALL_HOME": str(tmp_path / "unused-home"), "SEAWALL_KDF": "fast"}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "seawall", "demo", "--workdir", str(workdir)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        report = json.loads((workdir / "report.json").read_text())
        assert report["ok"] is True, report.get("error")
        phases = report["phases"]
        assert list(phases) == [
            "protect_full",
            "protect_incremental",
            "failover",
            "drill",
            "reprotect",
            "failback",
        ]
        for name, phase in phases.items():
            assert phase["verified"] is True, name
            assert phase["state"] == "succeeded", name
        for name in ("failover", "drill", "failback"):
            rto = phases[name]["rto_seconds"]
            assert isinstance(rto, (int, float)) and 0 < rto < 120, (name, rto)
        assert phases["drill"]["residue"] == 0
        assert phases["drill"]["resources_before"] == phases["drill"]["resources_after"]
        assert phases["failover"]["application_data_matches"] is True
        assert phases["failback"]["application_data_matches"] is True
        # the incremental checkpoint read far less than the full one
        full, incr = report["checkpoints"][0], report["checkpoints"][1]
        assert 0 < incr["bytes_read"] < full["bytes_read"] / 4
        assert report["workload"]["site"] == "site-a"
        assert isinstance(report["achieved_rpo_seconds"], (int, float))
        # the summary table was printed, and nothing of the demo keeps running
        assert "seawall demo — summary" in proc.stdout + proc.stderr
        for site in ("a", "b"):
            assert processes_of(workdir / "sites" / site) == [], site
    finally:
        for site in ("a", "b"):
            destroy_site(workdir / "sites" / site)
