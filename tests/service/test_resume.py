"""Service behaviours that need no cloud: resuming runs safely."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from seawall.model import Run, RunKind, RunState
from seawall.service import Service


def test_a_run_finished_by_another_resumer_is_not_resumed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The list of unfinished runs can be stale by the time the run's lease is taken."""
    svc = Service(tmp_path / "home")
    try:
        svc.db.add_run(Run("run-x", RunKind.PROTECT, "w", created_at=time.time()))
        dead = {"host": socket.gethostname(), "pid": 1, "start": "not-its-start-time"}
        svc.db.update_run_result("run-x", {"owner": dead})
        svc.db.set_run_state("run-x", RunState.RUNNING)
        stale = svc.db.list_runs(states=[RunState.RUNNING])
        svc.db.set_run_state("run-x", RunState.SUCCEEDED)  # the other resumer finished it
        monkeypatch.setattr(svc.db, "list_runs", lambda *a, **k: stale)
        resumed: list[Any] = []
        monkeypatch.setattr(svc.runner, "resume", lambda run_id: resumed.append(run_id))
        assert svc.resume_unfinished() == []
        assert resumed == []
        assert svc.get_run("run-x").state is RunState.SUCCEEDED
    finally:
        svc.close()
