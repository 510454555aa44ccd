"""``seawall.clouds.graph``: the walk ``discover`` does on every driver."""

from __future__ import annotations

from seawall.clouds.graph import reachable
from seawall.model import Resource, ResourceKind, ResourceRef, Selector, SelectorKind

K = ResourceKind


def r(kind: ResourceKind, id_: str, **refs: tuple[ResourceRef, ...]) -> Resource:
    return Resource(kind, id_, id_, {}, refs)


def ref(kind: ResourceKind, id_: str) -> ResourceRef:
    return ResourceRef(kind, id_)


def test_follows_refs_and_takes_routers_and_floating_ips_that_point_in() -> None:
    net = r(K.NETWORK, "net")
    subnet = r(K.SUBNET, "sub", network=(net.ref,))
    port = r(K.PORT, "port", network=(net.ref,), subnet=(subnet.ref,))
    web = r(K.SERVER, "web", ports=(port.ref,), image=(ref(K.IMAGE, "public"),))
    router = r(K.ROUTER, "router", subnets=(subnet.ref,))
    fip = r(K.FLOATING_IP, "fip", port=(port.ref,))
    other = r(K.SERVER, "other")
    unrelated = r(K.NETWORK, "elsewhere")
    public = r(K.IMAGE, "public")
    fetched: list[ResourceRef] = []

    def fetch(wanted: ResourceRef) -> Resource | None:
        fetched.append(wanted)
        return public if wanted == public.ref else None

    everything = [net, subnet, port, web, router, fip, other, unrelated]
    picked = reachable(everything, Selector(members=("web",)), fetch)
    assert {p.id for p in picked} == {"net", "sub", "port", "web", "router", "fip", "public"}
    assert fetched == [public.ref]  # only what is not listed is fetched


def test_a_reference_nobody_can_find_is_left_out() -> None:
    web = r(K.SERVER, "web", flavor=(ref(K.FLAVOR, "gone"),))
    picked = reachable([web], Selector(SelectorKind.PROJECT))
    assert [p.id for p in picked] == ["web"]
