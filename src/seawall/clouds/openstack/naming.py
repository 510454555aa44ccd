"""Where the openstack driver keeps seawall's bookkeeping, and where it keeps none.

seawall never writes its marks into what a user reads or the cloud acts on: key
material, names, extra specs (the scheduler reads them), descriptions. The marks that
remain, and where:

==================  ==================================================================
kind                seawall's marks on the cloud
==================  ==================================================================
network, subnet,    Neutron tags ``key=value`` (``seawall:key``, ``seawall:run``,
router, port, SG,   ``seawall:workload``, ``seawall:isolated``); the project's
floating IP         ``default`` security group is the project's and is never tagged
server              Nova tags ``seawall:<name>=<value>`` (key, run, workload, guest agent);
                    a value a Nova tag cannot hold (over 60 characters, ``/`` or ``,``:
                    the key always) as ``~`` + its hash (:func:`hashed`); metadata holds
                    only the user's (and a user tag a Nova tag cannot hold)
volume              metadata ``seawall:key``/``run``/``workload`` while its recovery
                    runs (Cinder has no tags), removed by its last step (``release``);
                    ``seawall:size`` only for a size that is not whole GiB,
                    ``seawall:tags`` only to name the keys that are the volume's tags;
                    the rest of the metadata is the user's
image               Glance tags ``seawall:<name>=<value>`` (key, run, workload, the source
                    data's md5); the properties are exactly the user's
keypair             **none**: the captured name and exactly the captured public key
flavor              **none**: the captured name, attributes and the user's extra specs
volume type         **none**: the target's same-named type is reused (it is the
                    operator's); one is created, as captured, only when none exists
server group        **none**: the captured name, policy and rules
==================  ==================================================================

The last four kinds (:data:`UNMARKED_KINDS`) have neither tags nor metadata, so nothing
on the cloud says seawall made them. Instead:

- ``create`` first reuses an identical resource the target already has (same name and
  content: a keypair with the same key, a flavor with the same sizes and extra specs, a
  same-named volume type, an empty same-named server group with the same policy) and
  returns it **without** ``seawall:key``: not the run's to delete. What it creates it
  returns with the spec's tags and ``seawall:key`` (in memory only), and the driver
  object remembers it, so ``find(kind, key)`` finds it for as long as that object lives.
- Ownership is kept in seawall's own journal: the recovery's ``CreateResource`` step
  journals (``record_created``) only what the driver created, and revert and drill
  clean-up delete only what the journal holds. A reused resource is never deleted.
- A resumed run converges: its step first takes the id the run's journal holds for
  the key; failing that, what an attempt created before the crash is identical to the
  spec, so ``create`` reuses it. **Residual risk**: a run killed after the cloud created
  a keypair, flavor, volume type or server group and before the journal recorded it
  leaves that resource unjournaled; the resumed run uses it but takes it for the
  target's own, so a revert or a drill clean-up leaves it behind: a resource identical to
  the source's, under the source's name (with the ``drill-<run>-`` prefix after a drill),
  for an operator to remove by name.

Earlier versions wrote marks into those four kinds (a ``-sw<hex>`` keypair name and a
`` seawall-tags:`` public-key comment, ``seawall:key`` / ``seawall:tag:*`` extra specs,
tags packed into a server group's name after `` sw ``). They are still **read**
(:func:`split_public_key`, :func:`split_specs`, :func:`unpack_name`), so what those
versions recovered is captured clean and found by its old key, and never written again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from seawall.clouds.tags import KEY_TAG
from seawall.model import ResourceKind

K = ResourceKind

SIZE_META = "seawall:size"
#: the kinds that carry no seawall mark on the cloud (see the table above)
UNMARKED_KINDS = frozenset({K.KEYPAIR, K.FLAVOR, K.VOLUME_TYPE, K.SERVER_GROUP})
#: read only (what earlier versions wrote): extra-spec prefix of a tag
TAG_SPEC = "seawall:tag:"
#: read only: a server group name's separator before tags packed into it
PACK = " sw "
#: read only: in a keypair's public key, before tags packed into its comment
KEY_COMMENT = " seawall-tags:"
MD5_TAG = "seawall:md5"  #: an image's tag: the md5 its source data had (checked on upload)
TAGS_META = "seawall:tags"  #: a volume's metadata keys that are tags, comma-separated
#: kind -> openstacksdk's Neutron resource name (``network.<name>s()``, ``get_<name>``)
NEUTRON_KINDS = {
    K.NETWORK: "network",
    K.SUBNET: "subnet",
    K.ROUTER: "router",
    K.PORT: "port",
    K.SECURITY_GROUP: "security_group",
    K.FLOATING_IP: "ip",
}


#: the start of a mark's value kept as a hash (a Nova tag cannot hold the value itself)
HASHED = "~"


def hashed(value: str) -> str:
    """A mark's value as a Nova tag can hold it: ``~`` and 24 hex digits of its sha256
    (a key such as ``run-.../server/<uuid>`` has ``/`` and passes 60 characters)."""
    return HASHED + hashlib.sha256(value.encode()).hexdigest()[:24]


def same_mark(stored: str | None, value: str) -> bool:
    """Whether a mark read back from the cloud is ``value``, kept as is or hashed."""
    return stored is not None and stored in (value, hashed(value))


def nova_tag_fits(text: str) -> bool:
    """Nova's rule for a server tag: at most 60 characters, no ``/`` and no ``,``."""
    return len(text) <= 60 and "/" not in text and "," not in text


def tags_to_strings(tags: Mapping[str, str]) -> list[str]:
    """Tags as Neutron, Nova and Glance hold them: ``key=value`` strings, sorted; a tag
    with no value is the bare key, as the user wrote it (``tier-web``, not ``tier-web=``),
    so :func:`strings_to_tags` and this give back what the cloud held."""
    return [k if v == "" else f"{k}={v}" for k, v in sorted(tags.items())]


def strings_to_tags(strings: Iterable[str]) -> dict[str, str]:
    """``key=value`` strings back into tags (a string without ``=`` is a key with "")."""
    out = {}
    for s in strings or ():
        k, _, v = s.partition("=")
        out[k] = v
    return out


def _unpack(packed: str) -> tuple[str, dict[str, str]] | None:
    try:
        raw = base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4))
        data = json.loads(zlib.decompress(raw))
        return str(data["n"]), {str(k): str(v) for k, v in data["t"].items()}
    except (ValueError, KeyError, TypeError, zlib.error):
        return None


def unpack_name(cloud_name: str) -> tuple[str, dict[str, str]]:
    """(name, tags) of a server group an earlier version named ``<name> sw <packed>``;
    any other name is itself, with no tags."""
    _, sep, packed = cloud_name.rpartition(PACK)
    found = _unpack(packed) if sep else None
    return found if found is not None else (cloud_name, {})


def split_public_key(stored: str) -> tuple[str, str | None, dict[str, str]]:
    """(public key as captured, name, tags) from what Nova stores: an earlier version
    appended the tags to the comment; a key without them is returned as it is."""
    head, sep, packed = (stored or "").rpartition(KEY_COMMENT)
    found = _unpack(packed.strip()) if sep else None
    if found is None:
        return stored, None, {}
    return head, found[0], found[1]


def split_specs(specs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A flavor's or volume type's extra specs -> (the user's specs, the tags an earlier
    version kept there): comparing and capturing use the user's specs only."""
    attrs, tags = {}, {}
    for k, v in (specs or {}).items():
        if k == KEY_TAG:
            tags[KEY_TAG] = str(v)
        elif k.startswith(TAG_SPEC):
            tags[k[len(TAG_SPEC) :]] = str(v)
        else:
            attrs[k] = v
    return attrs, tags


def key_material(public_key: str) -> str:
    """An OpenSSH public key without its comment (``<type> <base64>``): what makes two
    keypairs the same credential. The comment is a label and never reaches the guest's
    authentication, so a same-named keypair that differs only there is reused."""
    return " ".join(str(public_key or "").split()[:2])
