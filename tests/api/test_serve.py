"""``seawall serve`` as real processes: the acceptance run and two servers on one database."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from seawall.api.auth import LocalTokens
from seawall.model import RunKind, RunState, Selector
from seawall.service import Service

MINUTE = {
    "name": "minute",
    "rpo_seconds": 60,
    "retention": {"last": 6},
    "data_path": "cbt",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log

    def tail(self) -> str:
        return self.log.read_text()[-4000:]


@contextmanager
def serve(home: Path, env: dict[str, str], *args: str, name: str = "serve") -> Iterator[Server]:
    port = free_port()
    log = home.parent / f"{name}-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "seawall", "serve", "--port", str(port), *args],
            env={**env, "SEAWALL_HOME": str(home)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 90  # a busy 2-core machine starts slowly
        while True:
            try:
                httpx.get(server.url + "/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, server.tail()
                assert time.monotonic() < deadline, server.tail()
                time.sleep(0.2)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.slow
def test_acceptance_one_minute_rpo(shop: Any, hook: Any) -> None:
    """Checkpoints on schedule, RPO within policy, a forced failure raises a breach event
    and a webhook call, recovery clears it — through `seawall serve` in ≤ 3 minutes."""
    svc: Service = shop.svc
    svc.create_policy(MINUTE)
    svc.db.remove_workload("shop")
    svc.create_workload("shop", "a", Selector.parse("tag:app=shop"), "minute", ["b"])
    svc.close()
    token = LocalTokens(svc.home).issue("default")
    headers = {"Authorization": f"Bearer {token}"}
    samples: list[tuple[float, float | None]] = []
    t0 = time.monotonic()

    def rpo() -> dict[str, Any]:
        body = httpx.get(srv.url + "/v1/workloads/shop", headers=headers, timeout=10).json()
        samples.append((time.monotonic() - t0, body["rpo"]["achieved_rpo_seconds"]))
        return body["rpo"]  # type: ignore[no-any-return]

    def checkpoints_at_b() -> int:
        url = srv.url + "/v1/workloads/shop/checkpoints?site=b"
        return len(httpx.get(url, headers=headers, timeout=10).json()["items"])

    def events() -> list[str]:
        body = httpx.get(srv.url + "/v1/events?workload=shop", headers=headers, timeout=10)
        return [e["kind"] for e in body.json()["items"]]

    def wait(pred: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < deadline, f"{what}: {samples[-5:]}\n{srv.tail()}"
            time.sleep(2)

    with serve(svc.home, shop.env, "--tick", "2", "--webhook", hook.url) as srv:
        # 1. checkpoints appear on schedule and the achieved RPO stays within 60 s
        wait(lambda: bool(rpo()) and checkpoints_at_b() >= 2, 75, "two scheduled checkpoints")
        assert all(a is None or a <= 60 for _, a in samples), samples
        assert rpo()["compliant"] is True
        # 2. the recovery site's repository becomes unreachable: breach + webhook
        repo_b = shop.root / "repos" / "b"
        repo_b.rename(repo_b.with_name("b.unreachable"))
        repo_b.write_text("not a repository")  # nothing can be written under it
        wait(lambda: "rpo-breach" in events(), 80, "breach event")
        assert rpo()["compliant"] is False
        wait(lambda: "rpo-breach" in hook.events(), 10, "breach webhook")
        # 3. it comes back: the next protect replicates and the breach clears
        repo_b.unlink()
        repo_b.with_name("b.unreachable").rename(repo_b)
        wait(lambda: "rpo-recovered" in events(), 75, "recovery event")
        wait(lambda: "rpo-recovered" in hook.events(), 10, "recovery webhook")
        assert rpo()["compliant"] is True
        assert "replication-failed" in hook.events() or "run-failed" in hook.events()
    kinds = events_in(shop, "shop")
    assert kinds.count("rpo-breach") == 1 and kinds.count("rpo-recovered") == 1
    assert time.monotonic() - t0 < 180


def events_in(shop: Any, workload: str) -> list[str]:
    svc = Service(shop.svc.home)
    try:
        return [e.kind for e in svc.list_events(workload)]
    finally:
        svc.close()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgresql",
            marks=[pytest.mark.postgres],
        ),
    ]
)
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared-home' / 'state.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.mark.slow
def test_two_servers_one_database_no_duplicate_runs(
    shop: Any, shared_url: str, tmp_path: Path
) -> None:
    """Two `seawall serve` on one state database; the leader is killed mid-way."""
    home = tmp_path / "shared-home"
    svc = Service(home, shared_url)
    try:
        shop.add_sites(svc, init=False)
        svc.create_policy({**MINUTE, "retention": {"last": 2}})
        for name in ("db", "app", "web"):
            svc.create_workload(
                f"w-{name}", "a", Selector.parse(f"members:{name}"), "minute", ["b"]
            )
    finally:
        svc.close()
    admin = {"Authorization": f"Bearer {LocalTokens(home).issue('admin', admin=True)}"}
    args = ("--db-url", shared_url, "--tick", "0.5", "--workers", "2")
    with (
        serve(home, shop.env, *args, name="one") as one,
        serve(home, shop.env, *args, name="two") as two,
    ):
        time.sleep(6)
        leader = next(
            s for s in (one, two) if httpx.get(s.url + "/v1/health", headers=admin).json()["leader"]
        )
        other = two if leader is one else one
        leader.proc.kill()  # no goodbye: its lease must expire
        deadline = time.monotonic() + 25
        while not httpx.get(other.url + "/v1/health", headers=admin).json()["leader"]:
            assert time.monotonic() < deadline, other.tail()
            time.sleep(0.5)
        time.sleep(8)
        runs = httpx.get(other.url + "/v1/runs", headers=admin).json()["items"]
    protects = [r for r in runs if r["kind"] == RunKind.PROTECT.value]
    per_workload = {
        w: [r for r in protects if r["workload"] == w] for w in ("w-db", "w-app", "w-web")
    }
    assert all(len(v) == 1 for v in per_workload.values()), per_workload
    assert all(r["state"] == RunState.SUCCEEDED.value for r in protects), protects


def test_a_token_in_the_url_is_refused_and_never_logged(
    seawall_env: dict[str, str], tmp_path: Path
) -> None:
    """``?token=`` (or ``access_token``) lands in proxies' and servers' access logs and in
    browser history: a real ``seawall serve`` answers 400 and its access log shows the
    request with the value redacted, for the API and the dashboard alike."""
    home = tmp_path / "home"
    token = LocalTokens(home).issue("default")
    with serve(home, seawall_env, "--no-scheduler") as srv:
        for path in (
            f"/v1/workloads?token={token}",
            f"/v1/workloads?limit=5&access_token={token}",
            f"/?Token={token}",
        ):
            answer = httpx.get(srv.url + path, timeout=10)
            assert answer.status_code == 400, (path, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
            body = answer.json()
            assert body["title"] == "TokenInURL"
            assert "Authorization: Bearer" in body["detail"]
        ok = httpx.get(
            srv.url + "/v1/workloads", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert ok.status_code == 200
        srv.proc.send_signal(signal.SIGTERM)
        srv.proc.wait(15)
    log = srv.log.read_text()
    assert "GET /v1/workloads?limit=5&access_token=*** HTTP/1.1" in log, log
    assert token not in log
