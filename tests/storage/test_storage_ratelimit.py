"""Token bucket: average rate, bursts, and time-of-day windows (fake clock)."""

from __future__ import annotations

from datetime import datetime
from datetime import time as dtime

import pytest

from seawall.errors import InvalidInput
from seawall.storage.wrappers import RateWindow, TokenBucket, parse_windows
from seawall.units import parse_rate


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def test_average_rate_is_respected() -> None:
    clock = FakeClock()
    b = TokenBucket(1000, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        b.consume(500)
    # 5000 bytes at 1000 B/s with a 1000-byte burst: about 4 seconds
    assert clock.t == pytest.approx(4.0)


def test_windows_switch_rate_by_time_of_day() -> None:
    clock = FakeClock()
    windows = [RateWindow(dtime(8), dtime(18), 100), RateWindow(dtime(18), dtime(8), 0)]
    day = TokenBucket(
        10**9, windows, clock=clock, sleep=clock.sleep, now=lambda: datetime(2025, 1, 1, 12)
    )
    assert day.current_rate() == 100
    night = TokenBucket(
        10**9, windows, clock=clock, sleep=clock.sleep, now=lambda: datetime(2025, 1, 1, 23)
    )
    assert night.current_rate() == 0
    night.consume(10**12)  # unlimited: no sleep
    assert clock.t == 0


def test_parsers() -> None:
    assert parse_rate("50MiB/s") == 50 << 20
    assert parse_rate("10MB") == 10_000_000
    assert parse_rate("0") == 0
    w = parse_windows("08:00-18:00=1MiB,18:00-08:00=0")
    assert w[0].contains(dtime(9)) and not w[0].contains(dtime(19))
    assert w[1].contains(dtime(23)) and w[1].contains(dtime(7))
    with pytest.raises(InvalidInput):  # the one parser's error (was ValueError)
        parse_rate("fast")
