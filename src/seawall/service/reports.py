"""Figures over every workload: achieved RPO against each policy.

Achieved RPO is the age of the newest checkpoint held at the recovery site (the first
target, or the workload's own site when it has none); ``compliant`` is None while no
checkpoint exists there.
"""

from __future__ import annotations

import time
from typing import Any

from seawall.errors import NotFound
from seawall.model import Policy, Workload
from seawall.service.catalogue import Catalogue


def recovery_site(workload: Workload) -> str:
    """Where the workload would be recovered: its first target, else its own site."""
    return workload.targets[0] if workload.targets else workload.site


def achieved_rpo(cat: Catalogue, workload: str, site: str | None = None) -> float | None:
    w = cat.db.get_workload(workload)
    cps = cat.db.list_checkpoints(workload=workload, site=site or recovery_site(w))
    return round(time.time() - cps[0].created_at, 3) if cps else None


def rpo_report(cat: Catalogue, now: float | None = None) -> list[dict[str, Any]]:
    """Every workload's achieved RPO against its policy (one query for all of them)."""
    now = time.time() if now is None else now
    times = cat.db.checkpoint_times()
    policies: dict[str, Policy | None] = {}
    out = []
    for w in cat.db.list_workloads():
        if w.policy not in policies:
            try:
                policies[w.policy] = cat.get_policy(w.policy)
            except NotFound:
                policies[w.policy] = None
        policy = policies[w.policy]
        at = recovery_site(w)
        held = times.get((w.name, at))
        local = times.get((w.name, w.site))
        achieved = round(now - held[1], 3) if held else None
        rpo = policy.rpo_seconds if policy else None
        out.append(
            {
                "workload": w.name,
                "project": w.project,
                "site": w.site,
                "recovery_site": at,
                "policy": w.policy,
                "rpo_seconds": rpo,
                "achieved_rpo_seconds": achieved,
                "compliant": None if achieved is None or rpo is None else achieved <= rpo,
                "newest_checkpoint_at": held[1] if held else None,
                "oldest_checkpoint_at": held[0] if held else None,
                "newest_local_checkpoint_at": local[1] if local else None,
            }
        )
    return out
