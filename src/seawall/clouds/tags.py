"""The tags seawall puts on what it creates, and how a resource's tags are split.

Every resource a run creates carries ``seawall:key`` (its ``spec.key``: deterministic, so a
resumed run finds it instead of creating a duplicate) next to the user's own tags. Tags
under the ``seawall:`` prefix are seawall's bookkeeping (the run, the workload, the key,
and driver-specific ones such as the openstack driver's ``seawall:size``); the rest are
the user's and are copied with the resource.
"""

from __future__ import annotations

from collections.abc import Mapping

#: the prefix of every tag seawall itself sets
PREFIX = "seawall:"
#: the tag that carries a created resource's ``spec.key`` (find-or-create looks it up)
KEY_TAG = "seawall:key"
#: the run that created a resource (what a drill's clean-up looks for)
RUN_TAG = "seawall:run"
#: the workload a created resource belongs to
WORKLOAD_TAG = "seawall:workload"


def is_bookkeeping(tag: str) -> bool:
    """Whether ``tag`` is one of seawall's own (``seawall:...``) rather than the user's."""
    return tag.startswith(PREFIX)


def with_key(tags: Mapping[str, str], key: str) -> dict[str, str]:
    """The tags a created resource carries: the spec's, plus its key under :data:`KEY_TAG`."""
    return {**tags, KEY_TAG: key}
