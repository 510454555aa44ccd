"""``seawall.clouds.schema``, ``extents`` and ``tags``: what both drivers share."""

from __future__ import annotations

import pytest

from seawall.clouds import Extent
from seawall.clouds.extents import clip_extents, merge_extents
from seawall.clouds.schema import (
    check_identity,
    check_image_upload,
    check_volume_size,
    sort_resources,
    user_attrs,
)
from seawall.clouds.tags import KEY_TAG, is_bookkeeping, with_key
from seawall.errors import Conflict, InvalidInput, VerificationFailed
from seawall.model import Resource, ResourceKind

K = ResourceKind


def test_image_data_is_uploaded_once() -> None:
    assert check_image_upload("img", "aa", active=False, held=None, expected="") is True
    assert check_image_upload("img", "aa", active=False, held=None, expected="aa") is True
    assert check_image_upload("img", "aa", active=True, held="aa", expected="") is False
    with pytest.raises(Conflict, match="already holds other data"):
        check_image_upload("img", "aa", active=True, held="bb", expected="")
    with pytest.raises(VerificationFailed, match="md5 aa, expected bb"):
        check_image_upload("img", "aa", active=False, held=None, expected="bb")


def test_spec_checks() -> None:
    assert check_volume_size(4096) == 4096
    for bad in (0, -1, True, "4096", 1.5):
        with pytest.raises(InvalidInput, match="positive number of bytes"):
            check_volume_size(bad)
    with pytest.raises(InvalidInput, match="find-or-create"):
        check_identity(K.PORT, "p", "")
    with pytest.raises(InvalidInput) as exc:
        check_identity(K.SERVER, "", "k")
    assert exc.value.field == "server.name"
    check_identity(K.PORT, "", "k")  # Nova's own ports have no name; the key finds them
    assert user_attrs({"status": "ACTIVE", "access_address": "x", "size": 1}) == {"size": 1}


def test_listing_order_is_kind_then_name_then_id() -> None:
    rs = [
        Resource(K.SERVER, "2", "a"),
        Resource(K.NETWORK, "9", "z"),
        Resource(K.SERVER, "1", "a"),
    ]
    assert [(r.kind, r.id) for r in sort_resources(rs)] == [
        (K.NETWORK, "9"),
        (K.SERVER, "1"),
        (K.SERVER, "2"),
    ]


def test_extents_are_clipped_to_the_volume_then_merged() -> None:
    raw = [(0, 10), (8, 4), (20, 10), (4096, 8)]
    assert merge_extents(clip_extents(raw, 25)) == [Extent(0, 12), Extent(20, 5)]


def test_the_key_tag() -> None:
    assert with_key({"app": "x"}, "run/port/1") == {"app": "x", KEY_TAG: "run/port/1"}
    assert is_bookkeeping(KEY_TAG) and not is_bookkeeping("app")
