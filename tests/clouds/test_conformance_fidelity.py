"""Conformance, read back: every driver returns a created resource as its spec asked.

The fidelity check at the end of every recovery (:func:`seawall.fidelity.compare`) relies
on this: a copy made exactly as asked must compare clean, so that every difference it
reports is a real one. Runs on every driver of the conformance suite (``sim`` here, the
lab's ``openstack`` in the lab tier), with the suite's own valid specs.
"""

from __future__ import annotations

import pytest

from seawall.clouds import ResourceSpec
from seawall.clouds.schema import ROLES
from seawall.fidelity import compare
from seawall.model import Resource, ResourceKind, ResourceRef

from .conftest import Harness
from .test_conformance import KINDS, prerequisites


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.value)
def test_a_created_resource_reads_back_as_its_spec(harness: Harness, kind: ResourceKind) -> None:
    attrs, refs = prerequisites(harness, kind)
    # unique per run: keypairs, flavors and volume types keep their captured names now,
    # and the lab is shared with other runs of this suite
    name = f"f{harness.prefix[2:]}-{kind.value}"
    # the kinds a driver keeps no marks on hold no tags either (OpenStack's keypairs,
    # flavors, volume types and server groups have none)
    unmarked = kind in harness.driver.capabilities().unmarked_kinds
    tags = {} if unmarked else {"app": "demo"}
    spec = ResourceSpec(kind, name, harness.key(name), attrs, refs, tags)
    created = harness.driver.create(spec)
    roles = ROLES.get(kind, {})
    asked = Resource(
        kind,
        created.id,
        spec.name,
        spec.attrs,
        {role: tuple(ResourceRef(roles[role].kind, i) for i in ids) for role, ids in refs.items()},
        spec.tags,
    )
    got = harness.driver.get(created.ref)
    assert got is not None
    differences = [str(d) for d in compare(asked, got)]
    if kind is ResourceKind.SERVER and "image" not in refs:
        # a server with neither an image nor a boot volume boots from the site's
        # placeholder image on OpenStack; a recovery's fidelity check reports that
        differences = [d for d in differences if ".refs.image:" not in d]
    assert differences == []
