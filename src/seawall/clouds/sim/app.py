"""The sample workload's server program, run as a sim server's process (stdlib only).

    python -m seawall.clouds.sim.app --role db|app|web [--requires host1,host2]

It makes boot order and health checks real rather than asserted: a server that requires
peers refuses to start until every one of them answers ``GET /health`` (and it can only
reach peers on its own networks, which is what makes a drill's bubble isolated), and its
own health fails when a required peer goes away. Volume writes go through the sim's
:class:`~seawall.clouds.sim.journal.VolumeWriter`, so changed-block tracking sees them.

Environment (set by the sim): SEAWALL_ADDRESS, SEAWALL_PORT, SEAWALL_HOSTNAME,
SEAWALL_VOLUMES and SEAWALL_CBT (``os.pathsep``-joined, in attach order), SEAWALL_PEERS
(JSON ``{hostname: "addr:port"}``).

HTTP:
    GET  /health   200 {role, hostname, ok: true, volumes: [sha256...], peers: [host...]};
                   503 if a required peer is unhealthy
    GET  /volumes  200 {volumes: [sha256...]}
    POST /write    {volume, offset, length, seed} -> deterministic pseudo-random bytes
                   written and fsync'd; 200 {sha256}
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from seawall.clouds.sim.journal import VolumeWriter
from seawall.errors import SeawallError

#: how long one health probe of a peer may take
PROBE_TIMEOUT = 2.0


def pattern(seed: int, length: int) -> bytes:
    """The bytes ``POST /write`` writes: deterministic, so tests can predict them."""
    return random.Random(seed).randbytes(length)


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while buf := f.read(1 << 20):
            digest.update(buf)
    return digest.hexdigest()


def probe(address: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """True if ``http://address/health`` answers 200."""
    try:
        with urllib.request.urlopen(f"http://{address}/health", timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError, ValueError):
        return False


class App:
    """One server's state: who it is, its volumes and the peers it requires."""

    def __init__(self, role: str, requires: list[str], env: dict[str, str]) -> None:
        self.role = role
        self.requires = requires
        self.hostname = env.get("SEAWALL_HOSTNAME", "")
        self.address = env.get("SEAWALL_ADDRESS", "127.0.0.1")
        self.port = int(env.get("SEAWALL_PORT") or 0)
        self.volumes = [v for v in env.get("SEAWALL_VOLUMES", "").split(os.pathsep) if v]
        journals = [j for j in env.get("SEAWALL_CBT", "").split(os.pathsep) if j]
        self.writers = [
            VolumeWriter(v, journals[i] if i < len(journals) else None)
            for i, v in enumerate(self.volumes)
        ]
        self.peers: dict[str, str] = json.loads(env.get("SEAWALL_PEERS") or "{}")

    def required_addresses(self) -> dict[str, str]:
        """Required peers by hostname; one that is not on my networks is a hard error."""
        missing = [h for h in self.requires if h not in self.peers]
        if missing:
            raise SystemExit(
                f"sim_app {self.hostname}: required peer(s) {', '.join(missing)} are not on "
                f"any of my networks (reachable: {', '.join(sorted(self.peers)) or 'none'})"
            )
        return {h: self.peers[h] for h in self.requires}

    def wait_for_peers(self, timeout: float) -> None:
        """Boot order made real: start only once every required peer is healthy."""
        required = self.required_addresses()
        deadline = time.monotonic() + timeout
        while True:
            down = [h for h, a in required.items() if not probe(a, timeout=1.0)]
            if not down:
                return
            if time.monotonic() >= deadline:
                raise SystemExit(
                    f"sim_app {self.hostname}: required peer(s) {', '.join(down)} did not "
                    f"answer /health within {timeout:g}s; start them first"
                )
            time.sleep(0.2)

    def volume_hashes(self) -> list[str]:
        return [file_sha256(v) for v in self.volumes]

    def health(self) -> tuple[int, dict[str, Any]]:
        down = [h for h, a in self.required_addresses().items() if not probe(a)]
        body: dict[str, Any] = {
            "role": self.role,
            "hostname": self.hostname,
            "ok": not down,
            "volumes": self.volume_hashes(),
            "peers": sorted(self.peers),
        }
        if down:
            body["unhealthy_peers"] = down
        return (503 if down else 200), body

    def write(self, request: dict[str, Any]) -> dict[str, Any]:
        index = int(request["volume"])
        if not 0 <= index < len(self.writers):
            raise ValueError(f"volume index {index} out of range (have {len(self.writers)})")
        data = pattern(int(request["seed"]), int(request["length"]))
        self.writers[index].write(int(request["offset"]), data)
        return {"sha256": file_sha256(self.volumes[index])}


class Handler(BaseHTTPRequestHandler):
    app: App

    def _send(self, status: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(*self.app.health())
        elif self.path == "/volumes":
            self._send(200, {"volumes": self.app.volume_hashes()})
        else:
            self._send(404, {"error": f"no such path {self.path}"})

    def do_POST(self) -> None:
        if self.path != "/write":
            self._send(404, {"error": f"no such path {self.path}"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            self._send(200, self.app.write(json.loads(self.rfile.read(length))))
        except (KeyError, TypeError, ValueError, SeawallError) as exc:
            self._send(400, {"error": str(exc)})

    def log_message(self, format: str, *args: Any) -> None:
        if self.path != "/health":  # health probes would drown the log
            super().log_message(format, *args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seawall.clouds.sim.app")
    parser.add_argument("--role", required=True, choices=("db", "app", "web"))
    parser.add_argument("--requires", default="", help="comma-separated peer hostnames")
    parser.add_argument("--wait", type=float, default=20.0, help="seconds to wait for peers")
    args = parser.parse_args(argv)
    app = App(args.role, [h for h in args.requires.split(",") if h], dict(os.environ))
    print(f"sim_app {app.hostname} ({app.role}) waiting for {app.requires or 'nobody'}", flush=True)
    app.wait_for_peers(args.wait)
    handler = type("BoundHandler", (Handler,), {"app": app})
    try:
        server = ThreadingHTTPServer((app.address, app.port), handler)
    except OSError as exc:
        print(f"sim_app {app.hostname}: cannot bind {app.address}:{app.port}: {exc}", flush=True)
        return 1
    server.daemon_threads = True
    print(f"sim_app {app.hostname} ({app.role}) serving on {app.address}:{app.port}", flush=True)
    threading.current_thread().name = app.hostname
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
