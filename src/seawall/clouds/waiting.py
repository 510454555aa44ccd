"""Waiting for the cloud: one deadline-and-backoff loop for every driver.

Named after openstacksdk's ``resource.wait_for_status``: poll, stop when the resource is
where it should be, fail at once when it never will be (ERROR), and give up with
:class:`~seawall.errors.StepTimeout` at the deadline. The drivers differ only in what
counts as failed, how fast they poll and how they sleep (the openstack driver counts the
sleep as the cloud's time), so those are parameters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from seawall.errors import NotFound, SeawallError, StepTimeout
from seawall.model import Resource, ResourceRef

T = TypeVar("T")

#: ``failed(resource, last, want)``: the error to raise at once, or None to keep waiting
FailedRule = Callable[[Resource, str, str], SeawallError | None]


def wait_for(
    poll: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout: float,
    timed_out: Callable[[T], SeawallError],
    failed: Callable[[T], SeawallError | None] = lambda _: None,
    delay: float,
    factor: float = 2.0,
    max_delay: float,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``poll()`` until ``done`` says so; raise ``failed``'s error as soon as it has one,
    and ``timed_out``'s once ``timeout`` seconds have passed.

    Between polls it sleeps ``delay`` seconds, growing by ``factor`` up to ``max_delay``,
    and never past the deadline, so the last poll happens at the deadline itself.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = poll()
        if done(value):
            return value
        error = failed(value)
        if error is not None:
            raise error
        if time.monotonic() >= deadline:
            raise timed_out(value)
        sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * factor, max_delay)


def wait_for_status(
    get: Callable[[ResourceRef], Resource | None],
    ref: ResourceRef,
    status: str,
    timeout: float,
    *,
    site: str,
    status_of: Callable[[Resource], str],
    failed: FailedRule,
    delay: float,
    factor: float,
    max_delay: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Resource:
    """CloudDriver V1's ``wait_for_status`` over a driver's ``get``.

    ``status`` is compared case-insensitively with ``status_of(resource)`` (upper-cased);
    ``DELETED`` waits for the resource to be gone and then returns a stand-in with that
    status. A resource that is missing while waiting for anything else is NotFound.
    """
    want = status.upper()

    def poll() -> tuple[Resource, str]:
        found = get(ref)
        if found is None:
            if want == "DELETED":
                return Resource(ref.kind, ref.id, "", {"status": "DELETED"}), "DELETED"
            raise NotFound(f"{ref} does not exist on site {site!r}")
        return found, status_of(found).upper()

    def timed_out(seen: tuple[Resource, str]) -> SeawallError:
        found, last = seen
        return StepTimeout(
            f"{ref.kind.value} {found.name} ({ref.id}) did not reach status {want} "
            f"within {timeout:g}s (last seen: {last})"
        )

    found, _ = wait_for(
        poll,
        lambda seen: seen[1] == want,
        timeout=timeout,
        timed_out=timed_out,
        failed=lambda seen: failed(seen[0], seen[1], want),
        delay=delay,
        factor=factor,
        max_delay=max_delay,
        sleep=sleep,
    )
    return found
