"""The event journal, filtered to what the caller may see.

An event names a workload, a run, both or neither. The caller sees an event of a
workload of its project, or (with no workload) of a run of its project; events that name
neither are the operator's and only admins see them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from seawall.api.auth import Principal
from seawall.api.dependencies import Caller, Limit, Marker, Rules, Since, Svc, needs, paginate
from seawall.api.schemas import EventOut, Page
from seawall.errors import NotFound
from seawall.service import Service, access

router = APIRouter()


class EventVisibility:
    """Decides, event by event, whether ``p`` sees it; looks each run's project up once."""

    def __init__(self, svc: Service, p: Principal) -> None:
        self.svc = svc
        self.p = p
        self.projects = {w.name: w.project for w in svc.list_workloads()}
        self.run_projects: dict[str, str] = {}

    def __call__(self, ev: Any) -> bool:
        if self.p.admin:
            return True
        if ev.workload:
            return ev.workload in self.projects and self.p.sees(self.projects[ev.workload])
        if ev.run_id:
            return self.p.sees(self.run_project(ev.run_id))
        return False

    def run_project(self, run_id: str) -> str:
        if run_id not in self.run_projects:
            try:
                self.run_projects[run_id] = self.svc.get_run(run_id).project
            except NotFound:  # the run was removed: nobody's
                self.run_projects[run_id] = ""
        return self.run_projects[run_id]


@router.get("/events", tags=["events"], openapi_extra=needs("seawall:events:list"))
def events(
    p: Caller,
    svc: Svc,
    rbac: Rules,
    workload: str | None = None,
    since: Since = None,
    limit: Limit = 100,
    marker: Marker = None,
) -> Page[EventOut]:
    owner = p.project
    if workload is not None:
        owner = access.visible_workload(svc, p, workload).project
    rbac.authorize(p, "seawall:events:list", owner)
    visible = EventVisibility(svc, p)
    evs = [
        EventOut.model_validate(e, from_attributes=True)
        for e in svc.list_events(workload=workload, since=since, limit=5000)
        if visible(e)
    ]
    items, nxt = paginate(evs, lambda e: str(e.id), limit, marker)
    return Page[EventOut](items=items, next_marker=nxt)
