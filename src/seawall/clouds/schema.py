"""The driver-neutral resource schema (DESIGN.md §4) that every driver reads and writes.

What each kind may reference, which attrs are the cloud's runtime state rather than the
user's, the order resources are listed in, and the checks on a spec that do not depend on
the cloud. A driver keeps only what is its own: how a kind maps onto its APIs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from seawall.errors import Conflict, InvalidInput, VerificationFailed
from seawall.model import SELF_GROUP as SELF_GROUP  # re-exported for the drivers
from seawall.model import Resource, ResourceKind

K = ResourceKind


@dataclass(frozen=True)
class Role:
    """What a ref role of a kind points to, and how many it takes."""

    kind: ResourceKind
    required: bool = False
    many: bool = False


#: role -> what it points to, per kind. A role not listed here is an input error, so a
#: typo in captured metadata fails at create time instead of producing a broken graph.
ROLES: Mapping[ResourceKind, Mapping[str, Role]] = {
    K.SUBNET: {"network": Role(K.NETWORK, required=True)},
    K.ROUTER: {"subnets": Role(K.SUBNET, many=True)},
    K.PORT: {
        "network": Role(K.NETWORK, required=True),
        "subnet": Role(K.SUBNET),
        "security_groups": Role(K.SECURITY_GROUP, many=True),
    },
    K.VOLUME: {"volume_type": Role(K.VOLUME_TYPE), "image": Role(K.IMAGE)},
    K.SERVER: {
        "flavor": Role(K.FLAVOR, required=True),
        "image": Role(K.IMAGE),
        "keypair": Role(K.KEYPAIR),
        "ports": Role(K.PORT, many=True),
        "volumes": Role(K.VOLUME, many=True),
        "server_group": Role(K.SERVER_GROUP),
    },
    K.FLOATING_IP: {"port": Role(K.PORT)},
    K.SECURITY_GROUP: {"remote_groups": Role(K.SECURITY_GROUP, many=True)},
}


def remote_groups(
    group: str, rules: Iterable[Mapping[str, Any]], targets: Iterable[str]
) -> dict[str, str]:
    """The target id of each other group the rules of ``group`` name as their remote.

    A captured rule keeps its remote group as the source group's id (or
    :data:`SELF_GROUP`), and the group's ``remote_groups`` refs list those source ids,
    sorted, once each; a restore is given the recovered copies' ids in the same order.
    A rule whose remote cannot be resolved is an error naming the group and the rule,
    never a rule "from any source": a recovery must not widen a firewall.
    """
    rules = list(rules)
    sources = sorted(
        {str(r["remote_group"]) for r in rules if r.get("remote_group") not in (None, SELF_GROUP)}
    )
    ids = list(targets)
    if len(ids) != len(sources):
        missing = [r for r in rules if r.get("remote_group") not in (None, SELF_GROUP)]
        raise InvalidInput(
            f"security group {group!r}: {len(sources)} remote group(s) named by its rules "
            f"({', '.join(sources)}) but {len(ids)} recovered; rule(s) "
            f"{missing} would lose their remote group (and allow any source); include "
            "the remote groups in the workload or map them",
            field="security_group.refs.remote_groups",
        )
    return dict(zip(sources, ids, strict=True))


#: attrs the cloud computes; a spec's values for them (copied from a source) are ignored
RUNTIME_ATTRS = frozenset({"status", "access_address"})

#: the order ``list_resources`` and ``discover`` return kinds in (the model's order)
KIND_ORDER = {k: i for i, k in enumerate(ResourceKind)}


def sort_resources(resources: Iterable[Resource]) -> list[Resource]:
    """By kind (model order), then name, then id: the same listing from every driver."""
    return sorted(resources, key=lambda r: (KIND_ORDER[r.kind], r.name, r.id))


def user_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """``attrs`` without the :data:`RUNTIME_ATTRS` (what a create may take from a spec)."""
    return {k: v for k, v in attrs.items() if k not in RUNTIME_ATTRS}


#: kinds a cloud lets a user (or the cloud itself) leave unnamed: Nova creates an unnamed
#: port for ``server create --network X`` and an unnamed volume for ``--boot-from-volume``,
#: and Neutron's networks, subnets and routers take an empty name too. Their copies keep
#: the empty name (the source's), so a name is never how they are found: find-or-create
#: goes by the ``seawall:key`` tag, and two unnamed ports never collide.
UNNAMED_KINDS = frozenset({K.NETWORK, K.SUBNET, K.ROUTER, K.PORT, K.VOLUME})


def check_identity(kind: ResourceKind, name: str, key: str) -> None:
    """A spec needs a key (find-or-create looks it up by the key), and a name unless its
    kind may be unnamed (:data:`UNNAMED_KINDS`)."""
    if not name and kind not in UNNAMED_KINDS:
        raise InvalidInput("is required", field=f"{kind.value}.name")
    if not key:
        raise InvalidInput("is required (find-or-create needs it)", field=f"{kind.value}.key")


def check_volume_size(size: Any) -> int:
    """A volume's ``size``, which must be a positive number of bytes (not GiB, not text)."""
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise InvalidInput(
            f"expected a positive number of bytes, got {size!r}", field="volume.attrs.size"
        )
    return size


def check_image_upload(
    name: str, md5: str, *, active: bool, held: str | None, expected: str | None
) -> bool:
    """Glance's rule for an image's data, kept by every driver: it is uploaded once.

    True when the bytes whose md5 is ``md5`` may be uploaded. False when the image is
    ``active`` and already holds them (``held`` is the md5 of what it holds): a no-op.
    Conflict when it holds other bytes; VerificationFailed when they do not match the md5
    the image was created with (``expected``; empty or None if none).
    """
    if active:
        if md5 != held:
            raise Conflict(f"image {name} already holds other data")
        return False
    if expected and expected != md5:
        raise VerificationFailed(f"image {name}: uploaded data has md5 {md5}, expected {expected}")
    return True
