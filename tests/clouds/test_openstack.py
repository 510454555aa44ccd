"""The openstack driver's own tests: encodings and error mapping without a cloud, and
preflight errors (wrong credentials, unreachable endpoint) and the generic data path
against the lab (marked ``lab``)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import pytest
from keystoneauth1 import exceptions as ka
from openstack import exceptions as os_exc

from seawall.clouds import open_site
from seawall.clouds.openstack import (
    KEY_TAG,
    OpenStackDriver,
    keypair_name,
    keypair_public_key,
    pack_name,
    split_public_key,
    unpack_name,
)
from seawall.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PermanentError,
    SiteUnavailable,
    TransientError,
)
from seawall.model import ResourceKind, Site
from seawall_lab.layout import LabSite

K = ResourceKind
LAB = LabSite("a")


def driver(**params: str) -> OpenStackDriver:
    d = open_site(Site("x", "openstack", {"cloud": "nowhere", **params}))
    assert isinstance(d, OpenStackDriver)
    return d


def test_needs_a_cloud() -> None:
    with pytest.raises(InvalidInput, match=r"params\.cloud"):
        open_site(Site("x", "openstack", {}))


def test_server_group_names_keep_tags_and_shed_bookkeeping_first() -> None:
    tags = {"app": "shop", KEY_TAG: "run-1/server_group/abc", "seawall:run": "run-1"}
    name = pack_name("web-group", tags)
    assert len(name) <= 255
    assert unpack_name(name) == ("web-group", tags)

    def noise(n: int) -> str:  # incompressible
        return "".join(hashlib.sha256(bytes([i])).hexdigest() for i in range(n))

    long = {**tags, "seawall:workload": noise(3), "note": noise(2)[:100]}
    packed = pack_name("g", long)
    got_name, got = unpack_name(packed)
    assert got_name == "g" and len(packed) <= 255
    assert got[KEY_TAG] == tags[KEY_TAG] and got["app"] == "shop"
    assert "seawall:workload" not in got  # bookkeeping goes before the user's tags
    assert unpack_name("plain name") == ("plain name", {})
    with pytest.raises(InvalidInput):
        pack_name("g", {KEY_TAG: noise(7)})


def test_keypair_names_are_short_and_tags_ride_in_the_comment() -> None:
    pk = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb5ZbCQmTEJzWJDEq4v2h8cQv2Cq2SQx2qC3yTQnVqO me"
    tags = {KEY_TAG: "run-1/keypair/" + "x" * 200, "app": "shop"}
    name = keypair_name("deploy key.v2", tags[KEY_TAG])
    assert len(name) < 80 and set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789_-deploykeyv")
    assert keypair_name("deploy key.v2", tags[KEY_TAG]) == name  # deterministic
    assert keypair_name("deploy key.v2", "other") != name
    stored = keypair_public_key(pk, "deploy key.v2", tags)
    assert split_public_key(stored) == (pk, "deploy key.v2", tags)
    assert split_public_key(pk) == (pk, None, {})


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(
    ("exc", "expected", "words"),
    [
        (os_exc.HttpException("boom", http_status=503), TransientError, "503"),
        (os_exc.NotFoundException("gone", http_status=404), NotFound, "not found"),
        (os_exc.ConflictException("taken", http_status=409), Conflict, "taken"),
        (os_exc.BadRequestException("bad", http_status=400), InvalidInput, "bad"),
        (os_exc.HttpException("Quota exceeded", http_status=413), Conflict, "quota"),
        (os_exc.ForbiddenException("nope", http_status=403), PermanentError, "role"),
        (ka.Unauthorized("no"), SiteUnavailable, "credentials"),
        (ka.ConnectFailure("Connection refused"), SiteUnavailable, "cannot reach"),
        (ka.ConnectFailure("Connection reset by peer"), TransientError, "dropped"),
        (ka.ConnectTimeout("slow"), TransientError, "timed out"),
        (ka.EndpointNotFound("no volume"), SiteUnavailable, "missing"),
    ],
)
def test_errors_map_onto_the_tree(exc: Exception, expected: type, words: str) -> None:
    err = driver().connection.translate(exc, "doing it")
    assert type(err) is expected, err
    assert words in str(err).lower()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_transient_reads_are_retried() -> None:
    d = driver()
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise os_exc.HttpException("busy", http_status=502)
        return "ok"

    assert d.connection.call("reading", flaky) == "ok" and len(calls) == 3


def test_rbd_path_only_with_a_ceph_conf(tmp_path: Path) -> None:
    assert driver().capabilities().data_paths == ("full",)
    conf = tmp_path / "ceph.conf"
    conf.write_text("[global]\n")
    caps = driver(ceph_conf=str(conf)).capabilities()
    try:
        import rbd  # noqa: F401
    except ImportError:
        assert caps.data_paths == ("full",)
    else:
        assert caps.data_paths == ("cbt", "full")


# -- against the lab ----------------------------------------------------------------------


def lab_clouds(tmp_path: Path, **changes: str) -> Path:
    """A copy of lab site a's clouds.yaml with some auth fields changed."""
    if not os.environ.get("SEAWALL_LAB_CLOUD"):
        pytest.skip("set SEAWALL_LAB_CLOUD (as lab/openstack/ci.sh does) to run against the lab")
    if not LAB.clouds_yaml.exists():
        pytest.skip("lab site a is not up (seawall-lab up --site a)")
    data = json.loads(LAB.clouds_yaml.read_text())
    data["clouds"]["seawall-lab-a"]["auth"].update(changes)
    path = tmp_path / "clouds.yaml"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.lab
def test_ping_names_wrong_credentials(tmp_path: Path) -> None:
    path = lab_clouds(tmp_path, password="wrong")
    d = driver(cloud="seawall-lab-a", clouds_yaml=str(path))
    with pytest.raises(SiteUnavailable, match="credentials were rejected"):
        d.ping()


@pytest.mark.lab
def test_ping_names_an_unreachable_endpoint(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    path = lab_clouds(tmp_path, auth_url=f"http://127.0.0.1:{port}/v3")
    d = driver(cloud="seawall-lab-a", clouds_yaml=str(path))
    with pytest.raises(SiteUnavailable, match="cannot reach"):
        d.ping()


@pytest.mark.lab
def test_unknown_cloud_is_unavailable(tmp_path: Path) -> None:
    path = lab_clouds(tmp_path)
    with pytest.raises(SiteUnavailable, match="not usable"):
        driver(cloud="no-such-cloud", clouds_yaml=str(path)).ping()


@pytest.mark.lab
def test_generic_path_reads_through_cinder_and_glance(tmp_path: Path) -> None:
    """Without RBD: a snapshot's bytes come back through a temporary volume and image."""
    from seawall.clouds import ResourceSpec

    path = lab_clouds(tmp_path)
    rbd_side = driver(cloud="seawall-lab-a", clouds_yaml=str(path), ceph_conf=str(LAB.ceph_conf))
    generic = driver(cloud="seawall-lab-a", clouds_yaml=str(path))
    assert generic.capabilities().data_paths == ("full",)
    key = f"t-generic-{os.getpid()}"
    vol = rbd_side.create(ResourceSpec(K.VOLUME, key, key, {"size": 1 << 20}))
    try:
        rbd_side.write_volume(vol.id, 4096, b"generic" * 100)
        snap = generic.create_snapshot(vol.id, key)
        assert generic.read_snapshot(snap.id, 4096, 700) == b"generic" * 100
        assert generic.read_snapshot(snap.id, 0, 10) == bytes(10)
        assert generic.changed_extents(snap.id, None)[0].length == 1 << 20
        with pytest.raises(NotFound):
            generic.changed_extents(snap.id, snap.id)
        with pytest.raises(PermanentError, match="RBD"):
            generic.write_volume(vol.id, 0, b"x")
        generic.delete_snapshot(snap.id)
    finally:
        generic.close()
        rbd_side.delete(vol.ref)
