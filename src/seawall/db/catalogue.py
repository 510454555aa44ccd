"""What the operator declared, and the cache of what the repositories hold.

Sites, policies, workloads and recovery plans exist only here; the checkpoint cache
(checkpoints and the sites holding a copy) is disposable: the repositories are the
source of truth, :meth:`CatalogueStore.put_checkpoint` is idempotent and only ever adds
sites, so a cache rebuild, a replication and the original protect run can all report the
same checkpoint without coordinating.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from seawall import model
from seawall.db.connection import Database, inserted
from seawall.db.errors import conflict, not_found
from seawall.db.schema import (
    checkpoint_sites_t,
    checkpoints_t,
    plans_t,
    policies_t,
    sites_t,
    workloads_t,
)
from seawall.errors import NotFound
from seawall.model import Checkpoint, Policy, RecoveryPlan, Site, Workload


class CatalogueStore:
    """Sites, policies, workloads, recovery plans and the checkpoint cache.

    Lists are ordered: sites, policies and workloads by name, plans by (workload,
    target), checkpoints newest first.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    # ---- sites, policies, workloads, plans -------------------------------------------

    def add_site(self, site: Site) -> None:
        """Record a site; Conflict if the name is taken (sites are renamed by remove + add)."""
        self._add(sites_t, "site", site.name, {"name": site.name, "doc": model.dump(site)})

    def get_site(self, name: str) -> Site:
        return model.load(Site, self._get_doc(sites_t, "site", name))

    def list_sites(self) -> list[Site]:
        return [model.load(Site, d) for d in self._list_docs(sites_t)]

    def update_site(self, site: Site) -> None:
        """Replace a site's definition (its repository URL losing its credentials)."""
        with self._db.tx(write=True) as conn:
            res = conn.execute(
                sa.update(sites_t).where(sites_t.c.name == site.name).values(doc=model.dump(site))
            )
            if res.rowcount == 0:
                raise not_found("site", site.name)

    def remove_site(self, name: str) -> None:
        self._remove(sites_t, "site", name)

    def add_policy(self, policy: Policy) -> None:
        """Record a policy; Conflict if the name is taken."""
        self._add(
            policies_t, "policy", policy.name, {"name": policy.name, "doc": model.dump(policy)}
        )

    def get_policy(self, name: str) -> Policy:
        return model.load(Policy, self._get_doc(policies_t, "policy", name))

    def list_policies(self) -> list[Policy]:
        return [model.load(Policy, d) for d in self._list_docs(policies_t)]

    def remove_policy(self, name: str) -> None:
        self._remove(policies_t, "policy", name)

    def add_workload(self, w: Workload) -> None:
        """Record a workload; Conflict if the name is taken."""
        self._add(workloads_t, "workload", w.name, _workload_row(w))

    def get_workload(self, name: str) -> Workload:
        return model.load(Workload, self._get_doc(workloads_t, "workload", name))

    def list_workloads(self, project: str | None = None) -> list[Workload]:
        where = [] if project is None else [workloads_t.c.project == project]
        return [model.load(Workload, d) for d in self._list_docs(workloads_t, *where)]

    def update_workload(self, w: Workload) -> None:
        """Replace a workload's definition; NotFound if it was never added."""
        with self._db.tx(write=True) as conn:
            res = conn.execute(
                sa.update(workloads_t).where(workloads_t.c.name == w.name).values(_workload_row(w))
            )
            if res.rowcount == 0:
                raise not_found("workload", w.name)

    def remove_workload(self, name: str) -> None:
        """Remove a workload and its recovery plans; its runs and checkpoints stay as history."""
        with self._db.tx(write=True) as conn:
            res = conn.execute(sa.delete(workloads_t).where(workloads_t.c.name == name))
            if res.rowcount == 0:
                raise not_found("workload", name)
            conn.execute(sa.delete(plans_t).where(plans_t.c.workload == name))

    def set_plan(self, plan: RecoveryPlan) -> None:
        """Create or replace the plan for (workload, target): there is one per pair."""
        values = {"workload": plan.workload, "target": plan.target, "doc": model.dump(plan)}
        stmt = self._db.insert(plans_t).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[plans_t.c.workload, plans_t.c.target], set_={"doc": stmt.excluded.doc}
        )
        with self._db.tx(write=True) as conn:
            conn.execute(stmt)

    def get_plan(self, workload: str, target: str) -> RecoveryPlan:
        with self._db.tx() as conn:
            doc = conn.execute(
                sa.select(plans_t.c.doc).where(
                    plans_t.c.workload == workload, plans_t.c.target == target
                )
            ).scalar_one_or_none()
        if doc is None:
            raise NotFound(
                f"no recovery plan for workload {workload!r} to site {target!r}; "
                f"`seawall plan show {workload}` lists the workload's plans"
            )
        return model.load(RecoveryPlan, doc)

    def list_plans(self, workload: str | None = None) -> list[RecoveryPlan]:
        q = sa.select(plans_t.c.doc).order_by(plans_t.c.workload, plans_t.c.target)
        if workload is not None:
            q = q.where(plans_t.c.workload == workload)
        with self._db.tx() as conn:
            docs = conn.execute(q).scalars().all()
        return [model.load(RecoveryPlan, d) for d in docs]

    # ---- one document per name: the tables above share these ------------------------

    def _add(self, table: sa.Table, what: str, name: str, values: Mapping[str, Any]) -> None:
        stmt = self._db.insert(table).values(dict(values)).on_conflict_do_nothing()
        with self._db.tx(write=True) as conn:
            if not inserted(conn, stmt):
                raise conflict(what, name)

    def _get_doc(self, table: sa.Table, what: str, name: str) -> Any:
        key = next(iter(table.primary_key.columns))
        with self._db.tx() as conn:
            doc = conn.execute(sa.select(table.c.doc).where(key == name)).scalar_one_or_none()
        if doc is None:
            raise not_found(what, name)
        return doc

    def _list_docs(self, table: sa.Table, *where: sa.ColumnElement[bool]) -> list[Any]:
        key = next(iter(table.primary_key.columns))
        with self._db.tx() as conn:
            return list(conn.execute(sa.select(table.c.doc).where(*where).order_by(key)).scalars())

    def _remove(self, table: sa.Table, what: str, name: str) -> None:
        key = next(iter(table.primary_key.columns))
        with self._db.tx(write=True) as conn:
            if conn.execute(sa.delete(table).where(key == name)).rowcount == 0:
                raise not_found(what, name)

    # ---- checkpoint cache ----------------------------------------------------------

    def put_checkpoint(self, cp: Checkpoint, *, sites: Sequence[str]) -> None:
        """Cache a checkpoint and the sites holding a copy; repeating it only adds sites.

        Idempotent so a cache rebuild, a replication and the original protect run can all
        report the same checkpoint without coordinating.
        """
        values = {
            "id": cp.id,
            "workload": cp.workload,
            "site": cp.site,
            "created_at": cp.created_at,
            "doc": model.dump(cp),
        }
        stmt = self._db.insert(checkpoints_t).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[checkpoints_t.c.id],
            set_={k: getattr(stmt.excluded, k) for k in values if k != "id"},
        )
        with self._db.tx(write=True) as conn:
            conn.execute(stmt)
            for site in sorted(set(sites)):
                conn.execute(
                    self._db.insert(checkpoint_sites_t)
                    .values(checkpoint_id=cp.id, site=site)
                    .on_conflict_do_nothing()
                )

    def get_checkpoint(self, id: str) -> Checkpoint:
        return model.load(Checkpoint, self._get_doc(checkpoints_t, "checkpoint", id))

    def list_checkpoints(
        self, workload: str | None = None, site: str | None = None
    ) -> list[Checkpoint]:
        """Checkpoints, newest first; ``site`` keeps those with a copy at that site."""
        q = sa.select(checkpoints_t.c.doc).order_by(
            checkpoints_t.c.created_at.desc(), checkpoints_t.c.id.desc()
        )
        if workload is not None:
            q = q.where(checkpoints_t.c.workload == workload)
        if site is not None:
            held = sa.select(checkpoint_sites_t.c.checkpoint_id).where(
                checkpoint_sites_t.c.site == site
            )
            q = q.where(checkpoints_t.c.id.in_(held))
        with self._db.tx() as conn:
            docs = conn.execute(q).scalars().all()
        return [model.load(Checkpoint, d) for d in docs]

    def checkpoint_sites(self, id: str) -> list[str]:
        with self._db.tx() as conn:
            if not conn.execute(
                sa.select(checkpoints_t.c.id).where(checkpoints_t.c.id == id)
            ).first():
                raise not_found("checkpoint", id)
            return list(
                conn.execute(
                    sa.select(checkpoint_sites_t.c.site)
                    .where(checkpoint_sites_t.c.checkpoint_id == id)
                    .order_by(checkpoint_sites_t.c.site)
                ).scalars()
            )

    def remove_checkpoint(self, id: str) -> None:
        with self._db.tx(write=True) as conn:
            conn.execute(
                sa.delete(checkpoint_sites_t).where(checkpoint_sites_t.c.checkpoint_id == id)
            )
            if conn.execute(sa.delete(checkpoints_t).where(checkpoints_t.c.id == id)).rowcount == 0:
                raise not_found("checkpoint", id)

    def checkpoint_times(self) -> dict[tuple[str, str], tuple[float, float]]:
        """(workload, site) -> (oldest, newest) checkpoint creation time held at that site.

        One grouped query, so a scheduler tick over thousands of workloads stays cheap.
        """
        c, s = checkpoints_t, checkpoint_sites_t
        q = (
            sa.select(
                c.c.workload, s.c.site, sa.func.min(c.c.created_at), sa.func.max(c.c.created_at)
            )
            .join(s, s.c.checkpoint_id == c.c.id)
            .group_by(c.c.workload, s.c.site)
        )
        with self._db.tx() as conn:
            return {(w, site): (float(lo), float(hi)) for w, site, lo, hi in conn.execute(q)}


def _workload_row(w: Workload) -> dict[str, Any]:
    return {"name": w.name, "project": w.project, "doc": model.dump(w)}
