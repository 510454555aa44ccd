"""The audit trail (``seawall.service.audit``), for admins: every project's records.

Newest first; the marker is a record's id. Records are never removed, so a page's marker
is always found again under the same filters.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from seawall.api.dependencies import Caller, Limit, Marker, Rules, Since, Svc, needs, paginate
from seawall.api.schemas import AuditOut, Page
from seawall.service.audit import AuditFilter

router = APIRouter()

Name = Annotated[str | None, Query(max_length=255)]


@router.get("/audit", tags=["audit"], openapi_extra=needs("seawall:audit:list"))
def list_audit(
    p: Caller,
    svc: Svc,
    rbac: Rules,
    since: Since = None,
    until: Since = None,
    project: Name = None,
    user: Name = None,
    action: Name = None,
    outcome: Literal["allowed", "denied", "failed", "pending"] | None = None,
    limit: Limit = 100,
    marker: Marker = None,
) -> Page[AuditOut]:
    """Who did what, when and from where; ``project`` matches the initiator's project
    name or id; ``since <= at < until`` in seconds since the epoch. Admins only."""
    rbac.authorize(p, "seawall:audit:list", p.project)
    selected = AuditFilter(
        since=since, until=until, project=project, user=user, action=action, outcome=outcome
    )
    upto = int(marker) if marker and marker.isdigit() else None
    # one more than a page (and the marker's own record) tells whether there is a next
    records = svc.audit.list(selected, upto=upto, limit=limit + (2 if marker else 1))
    items, nxt = paginate(records, lambda r: str(r.id), limit, marker)
    return Page[AuditOut](items=[AuditOut(**r.as_dict()) for r in items], next_marker=nxt)
