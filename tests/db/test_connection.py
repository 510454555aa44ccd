"""Opening a state database, and the errors of a damaged, locked or unreachable one."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from seawall.db import StateDatabaseBusy, StateDatabaseError, StateStore, default_url
from seawall.errors import InvalidInput
from seawall.model import Site

# ---- opening --------------------------------------------------------------------------


def test_default_url_lives_in_seawall_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEAWALL_DB_URL", raising=False)
    monkeypatch.setenv("SEAWALL_HOME", str(tmp_path / "home"))
    assert default_url() == f"sqlite:///{tmp_path / 'home' / 'state.db'}"
    assert (tmp_path / "home").is_dir()
    with StateStore() as s:
        assert s.url == default_url()
        s.add_site(Site("a", "sim"))
    assert (tmp_path / "home" / "state.db").is_file()
    monkeypatch.setenv("SEAWALL_DB_URL", "sqlite://")
    assert default_url() == "sqlite://"


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    """WAL lets readers proceed while one process writes."""
    StateStore(f"sqlite:///{tmp_path / 's.db'}").close()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_in_memory_sqlite_works_across_threads() -> None:
    s = StateStore("sqlite://")
    threads = [threading.Thread(target=s.add_site, args=(Site(f"s{i}", "sim"),)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(s.list_sites()) == 8


def test_unsupported_url_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="unsupported database 'mysql'"):
        StateStore("mysql://x@localhost/db")


# ---- damaged, locked and unreachable databases ----------------------------------------


def test_corrupt_sqlite_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not sqlite " * 100)
    with pytest.raises(StateDatabaseError) as info:
        StateStore(f"sqlite:///{path}")
    text = str(info.value)
    assert str(path) in text and "file is not a database" in text
    assert "restore it from a backup or move it aside" in text


def test_locked_sqlite_database_is_transient(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    s = StateStore(url, busy_timeout=0.2)
    s.add_site(Site("a", "sim"))
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        started = time.monotonic()
        with pytest.raises(StateDatabaseBusy, match="is locked by another process") as info:
            s.add_site(Site("b", "sim"))
        assert time.monotonic() - started < 5
        assert info.value.exit_code == 6  # a TransientError: the caller retries
        assert [x.name for x in s.list_sites()] == ["a"]  # readers are not blocked (WAL)
    finally:
        other.execute("ROLLBACK")
        other.close()
    s.add_site(Site("b", "sim"))


def test_unreachable_postgresql_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StateDatabaseBusy, match="Check that PostgreSQL is running"):
        StateStore(f"postgresql://postgres@127.0.0.1:{port}/seawall", busy_timeout=1)
