"""Leases: named, expiring claims that let one of several seawall processes lead.

The scheduler holds one lease to be the leader and one per operation it starts. Expiry
uses the callers' clocks, so hosts sharing a PostgreSQL database must keep their clocks
within a fraction of the lease's ``ttl``.
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from seawall.db.connection import Database, inserted
from seawall.db.schema import leases_t
from seawall.errors import InvalidInput


class LeaseStore:
    """Take, renew and give up leases; exactly one of several racing holders wins."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew lease ``name`` for ``ttl`` seconds; False if another holds it.

        One conditional UPDATE then an INSERT ... ON CONFLICT DO NOTHING, so exactly one
        of several racing holders wins on both backends. Expiry uses the callers' clocks:
        hosts sharing a PostgreSQL lease must keep their clocks within a fraction of ``ttl``.
        """
        if ttl <= 0:
            raise InvalidInput("must be positive", field="lease.ttl")
        now = time.time()
        with self._db.tx(write=True) as conn:
            res = conn.execute(
                sa.update(leases_t)
                .where(
                    leases_t.c.name == name,
                    sa.or_(leases_t.c.holder == holder, leases_t.c.expires_at <= now),
                )
                .values(holder=holder, expires_at=now + ttl)
            )
            if res.rowcount:
                return True
            stmt = (
                self._db.insert(leases_t)
                .values(name=name, holder=holder, expires_at=now + ttl)
                .on_conflict_do_nothing()
            )
            return inserted(conn, stmt)

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up early; a no-op unless ``holder`` holds it."""
        with self._db.tx(write=True) as conn:
            conn.execute(
                sa.delete(leases_t).where(leases_t.c.name == name, leases_t.c.holder == holder)
            )
