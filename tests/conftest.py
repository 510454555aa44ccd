"""Shared fixtures: a real, throwaway PostgreSQL server and the state database URLs.

The PostgreSQL server is started once per test session from the Debian package's binaries
(``/usr/lib/postgresql/*/bin``; ``./dev test`` installs them), in a temporary directory,
listening on 127.0.0.1 only, with trust authentication and durability switched off (it is
thrown away). When the tests run as root it runs as the ``postgres`` user, since
PostgreSQL refuses to run as root. Missing binaries fail the PostgreSQL tests loudly
instead of skipping them: a skipped backend would pass CI without testing anything.

Fixtures:

``postgres_server``  session-scoped; the server's admin URL (database ``postgres``).
``postgres_url``     a fresh, empty schema on that server for one test (via its URL).
``state_url``        parametrized ``sqlite`` / ``postgresql``: an empty state database URL;
                     tests using it run on both backends (the PostgreSQL variant is marked
                     ``postgres``, so ``-m "not postgres"`` runs SQLite only).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _pg_bindir() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if not found:
        pytest.fail(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; "
            "install the Debian package: apt-get install postgresql (./dev test does this)",
            pytrace=False,
        )
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user() -> tuple[list[str], int | None, int | None]:
    """The command prefix and uid/gid to run PostgreSQL with (it refuses to run as root)."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail(
            "running as root and there is no 'postgres' user to run the test server as; "
            "install the Debian postgresql package (it creates the user)",
            pytrace=False,
        )
    runuser = shutil.which("runuser") or "/sbin/runuser"
    return [runuser, "-u", "postgres", "--"], pw.pw_uid, pw.pw_gid


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Start a throwaway PostgreSQL cluster; yield its admin URL; stop it by its PID."""
    bindir = _pg_bindir()
    prefix, uid, gid = _as_user()
    tmp = Path(tempfile.mkdtemp(prefix="seawall-pg-"))
    if uid is not None and gid is not None:
        os.chown(tmp, uid, gid)
    data = tmp / "data"
    log = tmp / "server.log"

    def run(*args: str) -> None:
        proc = subprocess.run(
            [*prefix, *args], capture_output=True, text=True, cwd=tmp, timeout=60, check=False
        )
        if proc.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            pytest.fail(
                f"{' '.join(args[:2])} failed ({proc.returncode}):\n{proc.stdout}\n"
                f"{proc.stderr}\n{tail}",
                pytrace=False,
            )

    pid: int | None = None
    try:
        run(
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )
        for attempt in itertools.count():
            port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={port} "
                f"-c unix_socket_directories='{tmp}' -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=200"
            )
            try:
                run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "30",
                    "-o", options, "start")  # fmt: skip
                break
            except pytest.fail.Exception:
                if attempt >= 2:  # the port was taken between probing and binding
                    raise
        pid = int((data / "postmaster.pid").read_text().split()[0])
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if pid is not None:
            _stop(pid)
        shutil.rmtree(tmp, ignore_errors=True)


def _stop(pid: int) -> None:
    """Immediate shutdown (SIGQUIT: the cluster is thrown away), SIGKILL if it lingers."""
    try:
        os.kill(pid, signal.SIGQUIT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


_db_counter = itertools.count()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """An empty schema for one test, dropped afterwards.

    A schema named in ``search_path`` behaves as an empty database to seawall (tables,
    ``alembic_version`` and reflection all use it) and costs milliseconds, where a
    CREATE DATABASE costs a third of a second per test.
    """
    import psycopg

    name = f"t{os.getpid()}_{next(_db_counter)}"
    admin = postgres_server.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    yield f"{postgres_server}?options=-csearch_path%3D{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty state database URL on each supported backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return str(request.getfixturevalue("postgres_url"))
