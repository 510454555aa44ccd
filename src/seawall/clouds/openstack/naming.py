"""How the openstack driver keeps seawall's tags where each kind allows them.

==================  ==================================================================
kind                where tags live
==================  ==================================================================
network, subnet,    Neutron tags ``key=value``
router, port, SG,
floating IP
server              metadata for ``seawall:*``; Nova tags ``key=value`` for the rest
volume              metadata (``seawall:size`` holds the byte size; ``seawall:tags`` names the
                    keys that are tags, the rest of the user's keys are its metadata)
image               properties for ``seawall:*``; Glance tags ``key=value`` for the rest
flavor, volume      extra specs ``seawall:key`` / ``seawall:tag:<key>`` (the ``seawall``
type                scope is ignored by the Nova and Cinder capability filters)
keypair             no metadata: the tags (zlib + base64url) end the public key's comment;
                    the name (= its id) is ``<name>-sw<hash of the key>``
server group        no metadata: the tags are packed into the name, after `` sw ``
==================  ==================================================================

These encodings are on the cloud: changing one strands what earlier runs created.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from seawall.clouds.tags import KEY_TAG
from seawall.errors import InvalidInput
from seawall.model import ResourceKind

K = ResourceKind

SIZE_META = "seawall:size"
TAGS_META = "seawall:tags"  #: a volume's metadata keys that are tags, comma-separated
TAG_SPEC = "seawall:tag:"  #: extra-spec prefix of a user tag on flavors and volume types
PACK = " sw "  #: server group name separator before the packed tags (never in base64)
KEY_COMMENT = " seawall-tags:"  #: in a keypair's public key, before the packed tags
#: kind -> openstacksdk's Neutron resource name (``network.<name>s()``, ``get_<name>``)
NEUTRON_KINDS = {
    K.NETWORK: "network",
    K.SUBNET: "subnet",
    K.ROUTER: "router",
    K.PORT: "port",
    K.SECURITY_GROUP: "security_group",
    K.FLOATING_IP: "ip",
}


def tags_to_strings(tags: Mapping[str, str]) -> list[str]:
    """Tags as Neutron, Nova and Glance hold them: ``key=value`` strings, sorted; a tag
    with an empty value is the bare key, so a plain tag the user set (``web``, read back
    by :func:`strings_to_tags` as ``{"web": ""}``) comes back as ``web``, not ``web=``."""
    return [f"{k}={v}" if v != "" else k for k, v in sorted(tags.items())]


def strings_to_tags(strings: Iterable[str]) -> dict[str, str]:
    """``key=value`` strings back into tags (a string without ``=`` is a key with "")."""
    out = {}
    for s in strings or ():
        k, _, v = s.partition("=")
        out[k] = v
    return out


def _pack(name: str, tags: Mapping[str, str]) -> str:
    payload = json.dumps({"n": name, "t": dict(tags)}, sort_keys=True, separators=(",", ":"))
    return base64.urlsafe_b64encode(zlib.compress(payload.encode(), 9)).decode().rstrip("=")


def _unpack(packed: str) -> tuple[str, dict[str, str]] | None:
    try:
        raw = base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4))
        data = json.loads(zlib.decompress(raw))
        return str(data["n"]), {str(k): str(v) for k, v in data["t"].items()}
    except (ValueError, KeyError, TypeError, zlib.error):
        return None


def pack_name(name: str, tags: Mapping[str, str]) -> str:
    """``<name> sw <base64url(zlib(json))>``: a server group's only place for its tags.
    When that is longer than Nova's 255 characters, seawall's own bookkeeping tags go
    first, then the user's; ``seawall:key`` always stays (find-or-create needs it)."""
    kept = dict(tags)
    droppable = [k for k in sorted(kept) if k.startswith("seawall:") and k != KEY_TAG]
    droppable += [k for k in sorted(kept) if not k.startswith("seawall:")]
    while True:
        full = f"{name[:60]}{PACK}{_pack(name, kept)}"
        if len(full) <= 255:
            return full
        if not droppable:
            raise InvalidInput(
                f"the key of {name!r} is too long to keep on a server group", field="key"
            )
        kept.pop(droppable.pop(0))


def unpack_name(cloud_name: str) -> tuple[str, dict[str, str]]:
    _, sep, packed = cloud_name.rpartition(PACK)
    found = _unpack(packed) if sep else None
    return found if found is not None else (cloud_name, {})


def keypair_name(name: str, key: str) -> str:
    """Keypair names allow ``[_- a-zA-Z0-9]`` and are the keypair's id, which ends up in
    the keys of later runs: kept short, unique per key; the tags go in the public key's
    comment instead (see :func:`keypair_public_key`)."""
    safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)[:60]
    return f"{safe}-sw{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def keypair_public_key(public_key: str, name: str, tags: Mapping[str, str]) -> str:
    """The public key with the tags appended to its comment (Nova keeps the text as given
    and computes the fingerprint from the key alone)."""
    return f"{public_key.strip()}{KEY_COMMENT}{_pack(name, tags)}"


def split_public_key(stored: str) -> tuple[str, str | None, dict[str, str]]:
    """(public key as captured, name, tags) from what Nova stores."""
    head, sep, packed = (stored or "").rpartition(KEY_COMMENT)
    found = _unpack(packed.strip()) if sep else None
    if found is None:
        return stored, None, {}
    return head, found[0], found[1]


def split_specs(specs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A flavor's or volume type's extra specs -> (the user's specs, the tags)."""
    attrs, tags = {}, {}
    for k, v in (specs or {}).items():
        if k == KEY_TAG:
            tags[KEY_TAG] = str(v)
        elif k.startswith(TAG_SPEC):
            tags[k[len(TAG_SPEC) :]] = str(v)
        else:
            attrs[k] = v
    return attrs, tags


def tag_specs(tags: Mapping[str, str]) -> dict[str, str]:
    """Tags as the extra specs of a flavor or volume type (see :func:`split_specs`)."""
    return {(k if k == KEY_TAG else TAG_SPEC + k): str(v)[:255] for k, v in sorted(tags.items())}


def unique_name(taken: Iterable[str], name: str, key: str) -> str:
    """Flavor and volume type names are unique per cloud: on a clash, suffix a hash
    of the key (deterministic, so a resumed run picks the same name)."""
    if name not in set(taken):
        return name
    return f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
