#!/usr/bin/env python3
"""Benchmark the repository engine against restic and borg on the same volume images.

    .venv/bin/python bench/repo.py [--size 2G] [--workdir /var/tmp/seawall-bench]
                                   [--tools seawall,restic,borg] [--json] [--keep]

Generates (deterministically, seed 1) a sparse volume image of about 40 % zero runs, 30 %
log-like text and 30 % random bytes in 64 KiB-4 MiB runs; a copy with ~2 % changed in
scattered 4-64 KiB writes plus the list of changed extents; and a copy with a few
unaligned inserts and deletes. Then runs each tool (encryption on) on the same files:
full protect, incremental (seawall: with the changed extents), shifted, restore.
Reports MB/s, wall time, bytes stored per byte changed and peak RSS, with ratios to
restic and borg. restic and borg are installed from Debian (apt-get) if missing.

Generated data lives in --workdir (outside the git tree) and is removed unless --keep.
This script is not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MiB = 1 << 20
PASS = "bench passphrase"
ROOT = Path(__file__).resolve().parent.parent


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.upper().rstrip("IB")
    return int(float(t[:-1]) * units[t[-1]]) if t[-1] in units else int(t)


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------
def make_text(rng: random.Random, n: int) -> bytes:
    words = [
        "INFO",
        "WARN",
        "DEBUG",
        "request",
        "served",
        "user",
        "GET",
        "POST",
        "/api/v1",
        "latency_ms",
        "status=200",
        "status=404",
        "worker",
        "cache",
        "miss",
        "hit",
    ]
    lines = []
    size = 0
    while size < min(n, 256 * 1024):
        line = (
            f"2025-01-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:"
            f"{rng.randrange(60):02d}:{rng.randrange(60):02d} "
            + " ".join(rng.choice(words) for _ in range(rng.randrange(4, 12)))
            + f" id={rng.randrange(10**9)}\n"
        )
        lines.append(line)
        size += len(line)
    block = "".join(lines).encode()
    reps = n // len(block) + 1
    # rotate the block per repetition so the text is not one repeated 256 KiB unit
    out = bytearray()
    for i in range(reps):
        k = (i * 7919) % len(block)
        out += block[k:] + block[:k]
        if len(out) >= n:
            break
    return bytes(out[:n])


def make_volume(path: Path, size: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
        pos = 0
        while pos < size:
            n = int(2 ** rng.uniform(16, 22)) // 4096 * 4096
            n = min(n, size - pos)
            r = rng.random()
            if r < 0.4:
                pass  # zero run: left as a hole
            elif r < 0.7:
                os.pwrite(f.fileno(), make_text(rng, n), pos)
            else:
                os.pwrite(f.fileno(), rng.randbytes(n), pos)
            pos += n


def mutate(src: Path, dst: Path, frac: float = 0.02, seed: int = 2) -> list[list[int]]:
    shutil.copyfile(src, dst)
    size = src.stat().st_size
    rng = random.Random(seed)
    extents = []
    changed = 0
    with open(dst, "r+b") as f:
        while changed < size * frac:
            n = rng.randrange(1, 17) * 4096
            off = rng.randrange(0, (size - n) // 4096) * 4096
            kind = rng.random()
            data = (
                rng.randbytes(n) if kind < 0.6 else (make_text(rng, n) if kind < 0.9 else bytes(n))
            )
            os.pwrite(f.fileno(), data, off)
            extents.append([off, n])
            changed += n
    return extents


def shift(src: Path, dst: Path, seed: int = 3) -> None:
    rng = random.Random(seed)
    size = src.stat().st_size
    edits = sorted(rng.randrange(size) for _ in range(12))
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        pos = 0
        for i, at in enumerate(edits):
            shutil.copyfileobj(_Limited(fi, at - pos), fo, 4 * MiB)
            pos = at
            if i % 3 == 2:  # delete
                n = rng.randrange(1, 8192)
                fi.seek(n, 1)
                pos += n
            else:  # insert
                fo.write(rng.randbytes(rng.randrange(1, 8192)))
        shutil.copyfileobj(fi, fo, 4 * MiB)


class _Limited:
    def __init__(self, f: Any, n: int) -> None:
        self.f, self.left = f, n

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        data: bytes = self.f.read(min(n if n > 0 else self.left, self.left))
        self.left -= len(data)
        return data


# --------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------
def run(
    cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> dict[str, Any]:
    """Wall time, CPU time and peak RSS of one child process (output goes to temp files,
    so a chatty tool cannot block on a full pipe)."""
    import tempfile

    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            cmd, env={**os.environ, **(env or {})}, cwd=cwd, stdout=out_f, stderr=err_f
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t0
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read().decode(), err_f.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}): {err[-2000:]}")
    return {
        "wall": wall,
        "rss_mib": usage.ru_maxrss / 1024,
        "cpu": usage.ru_utime + usage.ru_stime,
        "stdout": out,
    }


def du(path: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def ensure_tool(name: str, package: str) -> bool:
    if shutil.which(name):
        return True
    print(f"installing {package} from Debian ...", file=sys.stderr)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-qq", package],
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        stdout=subprocess.DEVNULL,
        check=False,
    )
    return shutil.which(name) is not None


def seawall_cli(group: str, *args: str) -> list[str]:
    code = f"import sys; from seawall.cli.repo import {group} as g; g(sys.argv[1:])"
    return [sys.executable, "-c", code, *args]


def bench_seawall(
    w: Path, files: dict[str, Path], ext: Path, kdf: str, chunk: int | None
) -> dict[str, Any]:
    repo = w / "seawall-repo"
    env = {"SEAWALL_PASSPHRASE": PASS}
    init = ["init", str(repo), "--kdf", kdf] + (["--chunk-size", str(chunk)] if chunk else [])
    run(seawall_cli("repo_group", *init), env)
    res: dict[str, Any] = {}
    r = run(
        seawall_cli("volume_group", "put", str(repo), "disk", str(files["full"]), "--json"), env
    )
    full_id = json.loads(r["stdout"])["id"]
    res["full"] = {**r, "stored": du(repo)}
    before = du(repo)
    r = run(
        seawall_cli(
            "volume_group",
            "put",
            str(repo),
            "disk",
            str(files["mut"]),
            "--base",
            full_id,
            "--changed-extents",
            str(ext),
            "--json",
        ),
        env,
    )
    mut_id = json.loads(r["stdout"])["id"]
    res["mut"] = {**r, "added": du(repo) - before}
    before = du(repo)
    r = run(
        seawall_cli("volume_group", "put", str(repo), "disk-noext", str(files["mut"]), "--json"),
        env,
    )
    res["mut_noext"] = {**r, "added": du(repo) - before}
    before = du(repo)
    r = run(
        seawall_cli("volume_group", "put", str(repo), "disk", str(files["shift"]), "--json"), env
    )
    res["shift"] = {**r, "added": du(repo) - before}
    out = w / "seawall-restore.img"
    r = run(seawall_cli("volume_group", "get", str(repo), f"disk@{mut_id}", str(out)), env)
    res["restore"] = {**r, "ok": _same(out, files["mut"])}
    out.unlink()
    return res


def bench_restic(w: Path, files: dict[str, Path]) -> dict[str, Any]:
    repo, cache, src = w / "restic-repo", w / "restic-cache", w / "restic-src"
    src.mkdir(exist_ok=True)
    env = {"RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD": PASS, "RESTIC_CACHE_DIR": str(cache)}
    run(["restic", "init"], env)
    res: dict[str, Any] = {}
    ids = {}
    for step in ("full", "mut", "shift"):
        link = src / "disk.img"
        link.unlink(missing_ok=True)
        os.link(files[step], link)
        before = du(repo)
        r = run(["restic", "backup", "--json", "disk.img"], env, cwd=src)
        summary = [json.loads(x) for x in r["stdout"].splitlines() if '"summary"' in x]
        ids[step] = summary[-1]["snapshot_id"] if summary else "latest"
        res[step] = {**r, "added": du(repo) - before, "stored": du(repo)}
    target = w / "restic-restore"
    r = run(["restic", "restore", ids["mut"], "--target", str(target)], env)
    res["restore"] = {**r, "ok": _same(target / "disk.img", files["mut"])}
    shutil.rmtree(target)
    return res


def bench_borg(w: Path, files: dict[str, Path]) -> dict[str, Any]:
    repo, base, src = w / "borg-repo", w / "borg-base", w / "borg-src"
    src.mkdir(exist_ok=True)
    env = {
        "BORG_PASSPHRASE": PASS,
        "BORG_BASE_DIR": str(base),
        "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
    }
    run(["borg", "init", "-e", "repokey", str(repo)], env)
    res: dict[str, Any] = {}
    for step in ("full", "mut", "shift"):
        link = src / "disk.img"
        link.unlink(missing_ok=True)
        os.link(files[step], link)
        before = du(repo)
        r = run(["borg", "create", f"{repo}::{step}", "disk.img"], env, cwd=src)
        res[step] = {**r, "added": du(repo) - before, "stored": du(repo)}
    target = w / "borg-restore"
    target.mkdir()
    r = run(["borg", "extract", "--sparse", f"{repo}::mut"], env, cwd=target)
    res["restore"] = {**r, "ok": _same(target / "disk.img", files["mut"])}
    shutil.rmtree(target)
    return res


def _same(a: Path, b: Path) -> bool:
    import hashlib

    def digest(p: Path) -> str:
        h = hashlib.blake2b()
        with open(p, "rb") as f:
            while chunk := f.read(8 * MiB):
                h.update(chunk)
        return h.hexdigest()

    return digest(a) == digest(b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size", default="2G")
    ap.add_argument("--workdir", default="/var/tmp/seawall-bench")
    ap.add_argument("--tools", default="seawall,restic,borg")
    ap.add_argument("--kdf", default="default", choices=["default", "fast"])
    ap.add_argument("--chunk-size", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="repetitions (tools interleaved); the table shows median [min-max]",
    )
    ap.add_argument("--keep", action="store_true", help="keep the generated images")
    args = ap.parse_args()
    size = parse_size(args.size)
    w = Path(args.workdir)
    w.mkdir(parents=True, exist_ok=True)
    for p in w.iterdir():
        if p.is_dir():
            shutil.rmtree(p)
    files = {"full": w / "vol.img", "mut": w / "vol_mut.img", "shift": w / "vol_shift.img"}
    ext = w / "extents.json"
    marker = w / f"data-{size}.done"
    if not marker.exists():
        print("generating images ...", file=sys.stderr)
        make_volume(files["full"], size)
        ext.write_text(json.dumps(mutate(files["full"], files["mut"])))
        shift(files["full"], files["shift"])
        marker.touch()
    changed = sum(n for _, n in json.loads(ext.read_text()))
    tools = args.tools.split(",")
    available = [
        t
        for t in tools
        if t == "seawall"
        or (t == "restic" and ensure_tool("restic", "restic"))
        or (t == "borg" and ensure_tool("borg", "borgbackup"))
    ]
    reps: list[dict[str, Any]] = []
    for rep in range(args.repeat):
        for p in w.iterdir():
            if p.is_dir():
                shutil.rmtree(p)
        one: dict[str, Any] = {"size": size, "changed_bytes": changed, "tools": {}}
        # Tools interleaved within each repetition, so load from other jobs hits all alike.
        for tool in available:
            print(f"rep {rep + 1}/{args.repeat}: {tool} ...", file=sys.stderr)
            if tool == "seawall":
                one["tools"][tool] = bench_seawall(w, files, ext, args.kdf, args.chunk_size)
            elif tool == "restic":
                one["tools"][tool] = bench_restic(w, files)
            else:
                one["tools"][tool] = bench_borg(w, files)
        summarize(one)
        reps.append(one)
    report(reps, args.json)
    if not args.keep:
        for p in w.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def summarize(results: dict[str, Any]) -> None:
    """Per-tool figures of one repetition (and their ratios to restic and borg)."""
    size, changed = results["size"], results["changed_bytes"]
    rows: dict[str, dict[str, Any]] = {}
    for tool, r in results["tools"].items():
        rows[tool] = {
            "full_MBps": size / 1e6 / r["full"]["wall"],
            "full_cpu_s": r["full"]["cpu"],
            "incr_s": r["mut"]["wall"],
            "incr_cpu_s": r["mut"]["cpu"],
            "incr_stored_per_changed": r["mut"]["added"] / changed,
            "restore_MBps": size / 1e6 / r["restore"]["wall"],
            "restore_cpu_s": r["restore"]["cpu"],
            "peak_rss_MiB": max(x["rss_mib"] for x in r.values() if isinstance(x, dict)),
            "shift_stored_MiB": r["shift"]["added"] / MiB,
            "restore_ok": r["restore"]["ok"],
        }
        if tool == "seawall":
            rows[tool]["incr_noext_s"] = r["mut_noext"]["wall"]
    for tool in rows:
        for ref in ("restic", "borg"):
            if ref in rows and ref != tool:
                a, b = rows[tool], rows[ref]
                rows[tool][f"vs_{ref}"] = {
                    "full": round(a["full_MBps"] / b["full_MBps"], 2),
                    "incr_time": round(a["incr_s"] / b["incr_s"], 3),
                    "restore": round(a["restore_MBps"] / b["restore_MBps"], 2),
                }
    results["summary"] = rows
    for r in results["tools"].values():
        for v in r.values():
            if isinstance(v, dict):
                v.pop("stdout", None)


def _med(xs: list[float]) -> str:
    import statistics

    if len(xs) == 1:
        return f"{xs[0]:.2f}"
    return f"{statistics.median(xs):.2f} [{min(xs):.2f}-{max(xs):.2f}]"


def report(reps: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"runs": reps}, indent=1, default=str))
        return
    size, changed = reps[0]["size"], reps[0]["changed_bytes"]
    print(
        f"volume {size / MiB:.0f} MiB, changed {changed / 1e6:.1f} MB, "
        f"{len(reps)} repetition(s): median [min-max]"
    )
    cols = [
        "full_MBps",
        "full_cpu_s",
        "incr_s",
        "incr_cpu_s",
        "incr_stored_per_changed",
        "restore_MBps",
        "restore_cpu_s",
        "peak_rss_MiB",
        "shift_stored_MiB",
    ]
    for tool in reps[0]["summary"]:
        rows = [r["summary"][tool] for r in reps]
        print(
            f"{tool}: "
            + ", ".join(f"{c}={_med([x[c] for x in rows])}" for c in cols)
            + ("" if all(x["restore_ok"] for x in rows) else "  RESTORE MISMATCH")
        )
        for ref in ("restic", "borg"):
            if f"vs_{ref}" in rows[0]:
                ratios = {
                    k: _med([x[f"vs_{ref}"][k] for x in rows])
                    for k in ("full", "incr_time", "restore")
                }
                print(f"   vs {ref}: {ratios}")


if __name__ == "__main__":
    main()
