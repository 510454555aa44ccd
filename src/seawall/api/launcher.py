"""Starting operations without blocking the request: preflight now, execute on a worker.

The API and the dashboard both start runs through one :class:`Launcher` (``seawall
serve`` builds it and hands ``Launcher.start`` to the dashboard), so both answer at once
and both honour the same ``Idempotency-Key``: a retried POST finds the run its first
attempt recorded instead of starting a second one. The lock makes "look for the key,
then record the run" one step, so two concurrent retries cannot both start.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from seawall.model import Run
from seawall.service import Service
from seawall.service.audit import Initiator

log = logging.getLogger("seawall.api")


class Launcher:
    """Starts operations without blocking the request (shared with the dashboard)."""

    def __init__(self, service: Service, workers: int = 2) -> None:
        self.svc = service
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="seawall-api-run")
        self._lock = threading.Lock()

    def start(
        self,
        operation: str,
        workload: str,
        *,
        target: str | None = None,
        checkpoint_id: str | None = None,
        idempotency_key: str | None = None,
        project: str = "",
        by: str = "api",
        initiator: Initiator | None = None,
    ) -> tuple[Run, bool]:
        """(the run, whether it was started now) — False when the key was seen before.

        ``initiator`` (the caller) is recorded with the run and in the audit trail."""
        params: dict[str, Any] = {"started_by": by}
        with self._lock:
            if idempotency_key:
                seen = self.svc.find_run(project=project, key=idempotency_key)
                if seen is not None:
                    return seen, False
                params["idempotency_key"] = idempotency_key
            run, flow = self.svc.prepare_operation(
                operation,
                workload,
                target=target,
                checkpoint_id=checkpoint_id,
                params=params,
                initiator=initiator,
            )
        self.pool.submit(self._execute, run, flow)
        return run, True

    def _execute(self, run: Run, flow: Any) -> None:
        try:
            self.svc.execute_prepared(run, flow)
        except Exception:
            log.exception("run %s crashed", run.id)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
