"""Faults produced for real on the lab: a Cinder service restarted in the middle of a protect.

cinder-volume is stopped before the protect asks for its snapshots and started again while
the run waits for them, so the snapshot requests land on a cloud whose volume service is
gone. Whatever the run does (wait and succeed, or fail and revert) must leave both
repositories consistent, no stray snapshot behind, and the next protect must work.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

from seawall.clouds import ResourceSpec
from seawall.model import ResourceKind, RunState, Selector
from seawall.service import Service
from seawall_lab import LabSite, down
from seawall_lab.services import start_cinder

from .conftest import ROOT, pattern

K = ResourceKind
MiB = 1 << 20

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(1800)]


def test_cinder_volume_restart_during_protect(lab_service: Service) -> None:
    svc = lab_service
    a = svc.driver("site-a")
    marker = f"flt{uuid.uuid4().hex[:6]}"
    site = LabSite("a", ROOT)

    def make(kind: ResourceKind, name: str, attrs: Any = None, refs: Any = None) -> Any:
        spec = ResourceSpec(kind, f"{marker}-{name}", f"{marker}/{name}", attrs or {},
                            refs or {}, {"app": marker})  # fmt: skip
        return a.create(spec)

    made: list[Any] = []
    try:
        net = make(K.NETWORK, "net")
        sub = make(K.SUBNET, "sub", {"cidr": "10.71.0.0/24"}, {"network": (net.id,)})
        port = make(K.PORT, "port", {"fixed_ips": ["10.71.0.5"]},
                    {"network": (net.id,), "subnet": (sub.id,)})  # fmt: skip
        flavor = make(K.FLAVOR, "flavor", {"vcpus": 1, "ram_mb": 128, "disk_gb": 1})
        vol = make(K.VOLUME, "data", {"size": 8 * MiB})
        data = pattern(f"{marker}-data", 512 * 1024)
        a.write_volume(vol.id, MiB, data)
        refs = {"flavor": (flavor.id,), "ports": (port.id,), "volumes": (vol.id,)}
        server = make(K.SERVER, "srv", {"hostname": "srv"}, refs)
        a.wait_for_status(server.ref, "ACTIVE", 300)
        made = [server, vol, flavor, port, sub, net]
        svc.create_workload(marker, "site-a", Selector.parse(f"tag:app={marker}"), "bronze",
                            ["site-b"])  # fmt: skip

        stopped = down(site, ["cinder-volume"])
        assert stopped == ["cinder-volume"]
        restarted = threading.Event()

        def restart() -> None:
            time.sleep(10)  # the protect is waiting on its snapshot by now
            start_cinder(site)
            restarted.set()

        thread = threading.Thread(target=restart, daemon=True)
        thread.start()
        t0 = time.monotonic()
        run = svc.protect(marker)
        took = time.monotonic() - t0
        thread.join(120)
        assert restarted.is_set(), "cinder-volume did not come back"
        print(f"[fault] protect with cinder-volume restarted: {run.state.value} in {took:.1f}s"
              f" ({run.error or 'no error'})")  # fmt: skip
        assert run.state in (RunState.SUCCEEDED, RunState.REVERTED, RunState.FAILED)
        if run.state is not RunState.SUCCEEDED:
            # failed cleanly: the error names what happened, nothing of the run remains
            assert run.error, "a failed run must say why"
            run = svc.protect(marker)
            assert run.state is RunState.SUCCEEDED, run.error

        for name in ("site-a", "site-b"):
            assert svc.repository(name).check(read_data=True).ok, name
        cp_id = run.result["checkpoint"]["id"]
        report = svc.verify_checkpoint(cp_id)
        assert report["ok"], report
        # the checkpoint holds the volume's bytes as written
        repo = svc.repository("site-b")
        ref = next(v for v in svc.get_checkpoint(cp_id).volumes if v.volume_id == vol.id)
        image = bytearray(ref.size)
        for off, chunk in repo.read_volume(ref.image_id):
            image[off : off + len(chunk)] = chunk
        assert bytes(image[MiB : MiB + len(data)]) == data
        # only the snapshot the checkpoint keeps (the CBT base) is left on the volume
        keys = {s.key for s in a.list_snapshots(vol.id)}
        assert len(keys) <= 1, keys
    finally:
        start_cinder(site)  # never leave the lab without its volume service
        for s in a.list_snapshots(made[1].id) if made else []:
            a.delete_snapshot(s.id)
        for r in made:
            a.delete(r.ref)
