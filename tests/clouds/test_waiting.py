"""``seawall.clouds.waiting``: the one deadline-and-backoff loop both drivers poll with."""

from __future__ import annotations

import time

import pytest

from seawall.clouds.waiting import wait_for, wait_for_status
from seawall.errors import NotFound, PermanentError, SeawallError, StepTimeout
from seawall.model import Resource, ResourceKind, ResourceRef

K = ResourceKind


class Clock:
    """A monotonic clock that only moves when the loop sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(time, "monotonic", c.monotonic)
    return c


def test_backs_off_up_to_the_cap_and_never_sleeps_past_the_deadline(clock: Clock) -> None:
    with pytest.raises(StepTimeout, match="gave up"):
        wait_for(
            lambda: "busy",
            lambda v: v == "done",
            timeout=1.0,
            timed_out=lambda v: StepTimeout(f"gave up ({v})"),
            delay=0.1,
            factor=2.0,
            max_delay=0.3,
            sleep=clock.sleep,
        )
    assert clock.sleeps == [0.1, 0.2, 0.3, 0.3, 0.1]  # the last one ends at the deadline


def test_returns_the_value_that_is_done(clock: Clock) -> None:
    values = iter(["a", "b", "done"])
    got = wait_for(
        lambda: next(values),
        lambda v: v == "done",
        timeout=10,
        timed_out=lambda v: StepTimeout(v),
        delay=1,
        max_delay=1,
        sleep=clock.sleep,
    )
    assert got == "done" and clock.sleeps == [1, 1]


def test_a_failed_value_raises_at_once(clock: Clock) -> None:
    def failed(v: str) -> SeawallError | None:
        return PermanentError("broken") if v == "error" else None

    with pytest.raises(PermanentError, match="broken"):
        wait_for(
            lambda: "error",
            lambda v: False,
            timeout=10,
            timed_out=lambda v: StepTimeout(v),
            failed=failed,
            delay=1,
            max_delay=1,
            sleep=clock.sleep,
        )
    assert clock.sleeps == []


def status_waiter(states: list[Resource | None], clock: Clock, want: str) -> Resource:
    seen = iter(states)

    def failed(found: Resource, last: str, want: str) -> SeawallError | None:
        return PermanentError(f"{found.name} is {last}") if last == "ERROR" else None

    return wait_for_status(
        lambda ref: next(seen),
        ResourceRef(K.SERVER, "s1"),
        want,
        1.0,
        site="a",
        status_of=lambda r: str(r.attrs.get("status", "ACTIVE")),
        failed=failed,
        delay=0.5,
        factor=1.0,
        max_delay=0.5,
        sleep=clock.sleep,
    )


def test_status_is_compared_case_insensitively(clock: Clock) -> None:
    build = Resource(K.SERVER, "s1", "web", {"status": "BUILD"})
    active = Resource(K.SERVER, "s1", "web", {"status": "active"})
    assert status_waiter([build, active], clock, "ACTIVE") is active


def test_deleted_waits_for_the_resource_to_be_gone(clock: Clock) -> None:
    there = Resource(K.SERVER, "s1", "web", {"status": "ACTIVE"})
    gone = status_waiter([there, None], clock, "deleted")
    assert gone.attrs == {"status": "DELETED"} and gone.ref == there.ref


def test_missing_failed_and_late_resources(clock: Clock) -> None:
    with pytest.raises(NotFound, match="site 'a'"):
        status_waiter([None], clock, "ACTIVE")
    with pytest.raises(PermanentError, match="web is ERROR"):
        status_waiter([Resource(K.SERVER, "s1", "web", {"status": "ERROR"})], clock, "ACTIVE")
    build = Resource(K.SERVER, "s1", "web", {"status": "BUILD"})
    with pytest.raises(StepTimeout, match=r"server web \(s1\) did not reach status ACTIVE"):
        status_waiter([build] * 5, clock, "ACTIVE")
