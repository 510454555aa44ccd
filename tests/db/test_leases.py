"""Leases: exclusive until they expire, one winner of a race."""

from __future__ import annotations

import threading
import time

import pytest

from seawall.db import StateStore
from seawall.errors import InvalidInput

# ---- leases ---------------------------------------------------------------------------


def test_lease_is_exclusive_until_it_expires(store: StateStore) -> None:
    assert store.acquire_lease("scheduler", "host-a", ttl=30)
    assert not store.acquire_lease("scheduler", "host-b", ttl=30)
    assert store.acquire_lease("scheduler", "host-a", ttl=30)  # renewal
    assert store.acquire_lease("other", "host-b", ttl=30)  # leases are independent
    store.release_lease("scheduler", "host-b")  # not the holder: no effect
    assert not store.acquire_lease("scheduler", "host-b", ttl=30)
    store.release_lease("scheduler", "host-a")
    assert store.acquire_lease("scheduler", "host-b", ttl=0.2)
    assert not store.acquire_lease("scheduler", "host-a", ttl=30)
    time.sleep(0.3)
    assert store.acquire_lease("scheduler", "host-a", ttl=30)  # host-b's lease expired
    with pytest.raises(InvalidInput):
        store.acquire_lease("scheduler", "host-a", ttl=0)


def test_lease_race_has_one_winner(store: StateStore) -> None:
    def contend(name: str, holder: str, barrier: threading.Barrier, wins: list[str]) -> None:
        barrier.wait()
        if store.acquire_lease(name, holder, ttl=30):
            wins.append(holder)

    for round_ in range(3):
        barrier = threading.Barrier(8)
        wins: list[str] = []
        threads = [
            threading.Thread(target=contend, args=(f"lease-{round_}", f"h{i}", barrier, wins))
            for i in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(wins) == 1
