"""Scheduler capacity: 1,000 workloads on two sim sites, time and CPU per tick.

    .venv/bin/python bench/scheduler.py [--workloads 1000] [--ticks 5]

Workloads are recorded in the state database (SQLite in a temporary home) with a
1-minute-RPO policy and one checkpoint each at the recovery site. Three phases:

- steady: every workload was protected just now, nothing is due (the common tick);
- all due: every protect is due at once (the scheduler only decides and hands out
  leases; the launcher counts instead of running 1,000 protects);
- breach: every checkpoint is old, so each tick evaluates (and the first raises) 1,000
  RPO breaches.

Prints wall and CPU seconds per tick for each phase.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from seawall.model import Checkpoint, ResourceGraph, Selector
from seawall.scheduler import Scheduler
from seawall.service import Service


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workloads", type=int, default=1000)
    ap.add_argument("--ticks", type=int, default=5)
    args = ap.parse_args()
    os.environ.setdefault("SEAWALL_PASSPHRASE", "bench")
    os.environ["SEAWALL_KDF"] = "fast"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        svc = Service(root / "home")
        for name in ("a", "b"):
            svc.add_site(name, "sim", {"path": str(root / "sites" / name)})
        svc.create_policy({"name": "minute", "rpo_seconds": 60})
        t0 = time.perf_counter()
        now = time.time()
        for i in range(args.workloads):
            w = f"w{i:04d}"
            svc.create_workload(w, "a", Selector.parse(f"members:s{i}"), "minute", ["b"])
            cp = Checkpoint(f"cp-{w}", w, "a", now, ResourceGraph())
            svc.db.put_checkpoint(cp, sites=["a", "b"])
        print(f"setup: {args.workloads} workloads in {time.perf_counter() - t0:.1f}s")

        skew = [0.0]
        launched: list[tuple[str, str]] = []
        sched = Scheduler(
            svc,
            tick_seconds=15,
            clock=lambda: time.time() + skew[0],
            launch=lambda op, w: launched.append((op, w)),
        )

        def phase(name: str, offset: float, fresh_checkpoints: bool) -> None:
            skew[0] = offset
            walls, cpus = [], []
            for _ in range(args.ticks):
                launched.clear()
                c0 = time.process_time()
                report = sched.tick()
                cpus.append(time.process_time() - c0)
                walls.append(report.seconds)
            print(
                f"{name:9s} wall/tick {min(walls) * 1000:7.1f} ms (max {max(walls) * 1000:.1f}) "
                f"cpu/tick {min(cpus) * 1000:7.1f} ms  started {len(launched)}/tick"
                f"  in breach {len(sched._breached)}"
            )

        # steady: the newest protect is recent for every workload -> nothing due
        from seawall.model import Run, RunKind, RunState

        for i in range(args.workloads):
            w = f"w{i:04d}"
            run = Run(f"run-{w}", RunKind.PROTECT, w, created_at=time.time())
            svc.db.add_run(run)
            svc.db.set_run_state(run.id, RunState.RUNNING)
            svc.db.set_run_state(run.id, RunState.SUCCEEDED, result={"duration_seconds": 3})
        phase("steady", 0, True)
        phase("all-due", 120, True)  # 2 minutes later every protect is due
        phase("breach", 3600, True)  # an hour later every RPO is breached
        svc.close()
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
