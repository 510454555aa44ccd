"""What ``discover`` returns: the servers a selector picks and everything they need.

The walk is the same for every driver: the selected servers, everything they reference
(transitively), and the resources that only point *at* what was chosen but belong with it:
routers on a chosen subnet and floating IPs on a chosen port (and, in turn, what those
reference).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from seawall.model import Resource, ResourceKind, ResourceRef, Selector

K = ResourceKind


def _never(ref: ResourceRef) -> Resource | None:
    return None


def reachable(
    everything: Iterable[Resource],
    selector: Selector,
    fetch: Callable[[ResourceRef], Resource | None] = _never,
) -> list[Resource]:
    """The resources of the workload ``selector`` picks out of ``everything``, unordered.

    A reference to something not in ``everything`` (a public image or flavor another
    project owns) is looked up with ``fetch``; one that ``fetch`` cannot find is left out.
    """
    listed = list(everything)
    by_ref = {r.ref: r for r in listed}
    chosen: set[ResourceRef] = set()
    todo = [r.ref for r in listed if r.kind is K.SERVER and selector.matches(r)]
    while todo:
        while todo:
            ref = todo.pop()
            if ref in chosen:
                continue
            if ref not in by_ref:
                found = fetch(ref)
                if found is None:
                    continue
                by_ref[ref] = found
            chosen.add(ref)
            todo.extend(by_ref[ref].refers_to)
        for r in listed:
            if r.ref in chosen:
                continue
            if r.kind is K.ROUTER and chosen.intersection(r.refs.get("subnets", ())):
                todo.append(r.ref)
            if r.kind is K.FLOATING_IP and chosen.intersection(r.refs.get("port", ())):
                todo.append(r.ref)
    return [by_ref[ref] for ref in chosen]
