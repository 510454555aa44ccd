"""Migration at open: several processes, head equals the metadata, round trip, refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from seawall.db import VERSION_TABLE, StateDatabaseError, StateStore, metadata, migration_config
from seawall.model import RunState, Site

# ---- several processes ----------------------------------------------------------------

_WORKER = """
import sys, time
from seawall.db import StateStore
from seawall.errors import Conflict
from seawall.model import Run, RunKind, RunState, StepState
url, tag = sys.argv[1], sys.argv[2]
print("ready", flush=True)
sys.stdin.readline()
s = StateStore(url)  # both processes open the fresh database at the same moment
try:
    s.add_run(Run("shared", RunKind.PROTECT, "app"))
except Conflict:
    pass
for i in range(15):
    rid = f"{tag}-{i}"
    s.add_run(Run(rid, RunKind.PROTECT, "app"))
    s.set_run_state(rid, RunState.RUNNING)
    s.set_step(rid, "Snapshot", StepState.RUNNING)
    s.set_step("shared", "Shared", StepState.RUNNING, detail=rid)
    s.add_event("run", rid, run_id=rid)
    s.set_run_state(rid, RunState.SUCCEEDED)
print("ok")
"""


def test_two_processes_open_a_fresh_database_and_create_runs(state_url: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, state_url, tag],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("p1", "p2")
    ]
    for p in procs:  # both have imported seawall: release them together
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert out.strip() == "ok"
    with StateStore(state_url) as s:
        runs = s.list_runs(limit=1000)
        assert len(runs) == 31
        assert sum(r.state is RunState.SUCCEEDED for r in runs) == 30
        assert all(s.list_steps(r.id) for r in runs)
        assert len(s.list_events(limit=1000)) == 30


# ---- migrations -----------------------------------------------------------------------


def _schema_diff(url: str) -> list[object]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"compare_type": True, "version_table": VERSION_TABLE}
            )
            return list(compare_metadata(ctx, metadata))
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrations_produce_exactly_the_metadata(state_url: str) -> None:
    StateStore(state_url).close()
    assert _schema_diff(state_url) == []


def test_migrations_round_trip(state_url: str) -> None:
    with StateStore(state_url) as s:
        s.add_site(Site("a", "sim"))
    command.downgrade(migration_config(state_url), "base")
    assert _tables(state_url) <= {"seawall_alembic_version"}
    command.upgrade(migration_config(state_url), "head")
    assert _schema_diff(state_url) == []
    with StateStore(state_url) as s:
        assert s.list_sites() == []
        s.add_site(Site("a", "sim"))


def test_database_from_a_newer_seawall_is_refused(state_url: str) -> None:
    StateStore(state_url).close()
    engine = sa.create_engine(state_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE seawall_alembic_version SET version_num = 'f00d'"))
    engine.dispose()
    with pytest.raises(StateDatabaseError, match=r"revision f00d.*newer seawall\. Upgrade seawall"):
        StateStore(state_url)


def test_a_database_from_before_the_own_version_table_is_adopted(tmp_path: Path) -> None:
    """Early databases kept their revision in Alembic's default table; they still open."""
    url = f"sqlite:///{tmp_path / 'legacy.db'}"
    with StateStore(url) as s:
        s.add_site(Site("a", "sim"))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"ALTER TABLE {VERSION_TABLE} RENAME TO alembic_version"))
    engine.dispose()
    with StateStore(url) as s:
        assert [x.name for x in s.list_sites()] == ["a"]
    assert VERSION_TABLE in _tables(url)
