"""The openstack driver's own tests: encodings and error mapping without a cloud, how
keypairs, flavors, volume types and server groups are recreated without marks or reused
(over a fake openstacksdk connection that keeps exactly what was sent), and
preflight errors (wrong credentials, unreachable endpoint) and the generic data path
against the lab (marked ``lab``)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from keystoneauth1 import exceptions as ka
from openstack import exceptions as os_exc

from seawall.clouds import ResourceSpec, open_site
from seawall.clouds.openstack import (
    KEY_TAG,
    OpenStackDriver,
    split_public_key,
    unpack_name,
)
from seawall.clouds.openstack.naming import (
    key_material,
    split_specs,
    strings_to_tags,
    tags_to_strings,
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


# what an earlier version wrote (golden: never written again, still read back clean)
LEGACY_GROUP = (
    "web-group sw eNqrVspTslIqT03STS_KLy1Q0lEqUbKqVkosKAAKF2fkg0SKUxPLE3NyrLJTK4GCRaV5uob6xalFZ"
    "alF8WBN-olJyUjKgApgypRqawEQgiBh"
)
PK = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb5ZbCQmTEJzWJDEq4v2h8cQv2Cq2SQx2qC3yTQnVqO me"
LEGACY_KEY = (
    f"{PK} seawall-tags:eNqrVspTslIqTtbNTq1U0lEqUbKqVkosKACJZeQXAEWKUxPLE3NyrEDyVkpFpXm6hvpAdkFi"
    "ZpF-tqFSbS0ArMAVRA"
)


def test_the_marks_earlier_versions_wrote_are_still_read_back_clean() -> None:
    tags = {KEY_TAG: "run-1/server_group/abc", "seawall:run": "run-1", "app": "shop"}
    assert unpack_name(LEGACY_GROUP) == ("web-group", tags)
    assert unpack_name("plain sw name") == ("plain sw name", {})
    assert split_public_key(LEGACY_KEY) == (
        PK,
        "sc-key",
        {KEY_TAG: "run-1/keypair/k1", "app": "shop"},
    )
    assert split_public_key(PK) == (PK, None, {})
    specs = {"hw:cpu_policy": "dedicated", KEY_TAG: "k", "seawall:tag:app": "shop"}
    assert split_specs(specs) == ({"hw:cpu_policy": "dedicated"}, {KEY_TAG: "k", "app": "shop"})


def test_tags_come_back_as_the_user_wrote_them() -> None:
    """A bare tag (``server create --tag tier-web``) stays bare: it came back
    ``tier-web=`` from a recovery, a difference the user sees."""
    cloud = ["tier-web", "app=shop", "seawall:key=run-1/server/x"]
    assert tags_to_strings(strings_to_tags(cloud)) == sorted(cloud)


def test_a_server_mark_nova_cannot_hold_is_kept_hashed_and_still_found() -> None:
    """A key (``run-…/server/<uuid>``) has ``/`` and passes Nova's 60 characters: it is
    kept as a hash in a Nova tag, never in the metadata the user reads."""
    from seawall.clouds.openstack.naming import hashed, nova_tag_fits, same_mark
    from seawall.clouds.openstack.restore import Restore

    key = "run-20261204T203452-5ab4d5/server/14f2a636-696a-4552-ab64-94f1c6d50f1d"
    meta, tags = Restore._server_tags(
        {"metadata": {"role": "db"}, "guest_agent": True},
        {"seawall:key": key, "seawall:run": "run-20261204T203452-5ab4d5", "tier": "db"},
    )
    assert meta == {"role": "db"}
    assert f"seawall:key={hashed(key)}" in tags and all(nova_tag_fits(t) for t in tags)
    assert {"seawall:run=run-20261204T203452-5ab4d5", "seawall:guest_agent=true", "tier=db"} < set(
        tags
    )
    assert same_mark(strings_to_tags(tags)["seawall:key"], key)
    assert not same_mark(strings_to_tags(tags)["seawall:key"], key + "x")


def test_key_material_is_the_key_without_its_comment() -> None:
    assert key_material(PK) == key_material(PK.replace(" me", " someone@else")) == PK[:-3]
    assert key_material(PK) != key_material(PK.replace("AAAAIGb5", "AAAAIGb6"))
    assert key_material("") == ""


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


# -- keypairs, flavors, volume types, server groups: no marks (over a fake SDK) ----------


class FakeCompute:
    """The part of openstacksdk's compute proxy the four unmarked kinds use, keeping what
    was sent exactly as sent (so a test sees every field a create wrote)."""

    def __init__(self) -> None:
        self.flavors_: dict[str, SimpleNamespace] = {}
        self.keypairs_: dict[str, SimpleNamespace] = {}
        self.groups_: dict[str, SimpleNamespace] = {}
        self.deleted: list[str] = []

    def flavors(self, **query: Any) -> list[SimpleNamespace]:
        return list(self.flavors_.values())

    def get_flavor(self, i: str) -> SimpleNamespace:
        return self.flavors_.get(i) or _missing(i)

    def create_flavor(self, **body: Any) -> SimpleNamespace:
        if any(f.name == body["name"] for f in self.flavors_.values()):
            raise os_exc.ConflictException("Flavor with name exists")
        defaults = {"ephemeral": 0, "swap": 0, "is_public": True, "description": None}
        f = SimpleNamespace(id=f"f{len(self.flavors_)}", extra_specs={}, **{**defaults, **body})
        self.flavors_[f.id] = f
        return f

    def create_flavor_extra_specs(self, flavor: Any, specs: dict[str, str]) -> None:
        flavor.extra_specs = {**flavor.extra_specs, **specs}

    def flavor_add_tenant_access(self, flavor: Any, project: str) -> None:
        flavor.access = [*getattr(flavor, "access", []), project]

    def delete_flavor(self, f: Any, ignore_missing: bool = True) -> None:
        self.deleted.append(getattr(f, "id", f))
        self.flavors_.pop(getattr(f, "id", f), None)

    def keypairs(self) -> list[SimpleNamespace]:
        return list(self.keypairs_.values())

    def get_keypair(self, name: str) -> SimpleNamespace:
        return self.keypairs_.get(name) or _missing(name)

    def create_keypair(self, **body: Any) -> SimpleNamespace:
        if body["name"] in self.keypairs_:
            raise os_exc.ConflictException("Key pair already exists")
        k = SimpleNamespace(**{"type": "ssh", **body})
        self.keypairs_[k.name] = k
        return k

    def server_groups(self) -> list[SimpleNamespace]:
        return list(self.groups_.values())

    def get_server_group(self, i: str) -> SimpleNamespace:
        return self.groups_.get(i) or _missing(i)

    def create_server_group(self, **body: Any) -> SimpleNamespace:
        defaults: dict[str, Any] = {"rules": {}, "policies": None, "member_ids": []}
        g = SimpleNamespace(id=f"g{len(self.groups_)}", **{**defaults, **body})
        self.groups_[g.id] = g
        return g


class FakeBlockStorage:
    def __init__(self) -> None:
        self.types_: dict[str, SimpleNamespace] = {}

    def types(self) -> list[SimpleNamespace]:
        return list(self.types_.values())

    def get_type(self, i: str) -> SimpleNamespace:
        return self.types_.get(i) or _missing(i)

    def create_type(self, **body: Any) -> SimpleNamespace:
        t = SimpleNamespace(id=f"t{len(self.types_)}", **{"description": None, **body})
        self.types_[t.id] = t
        return t


def _missing(what: str) -> Any:
    raise os_exc.NotFoundException(f"{what} not found")


@pytest.fixture
def fake() -> tuple[OpenStackDriver, FakeCompute, FakeBlockStorage]:
    """An openstack driver over a fake connection: only what these kinds call."""
    d = driver()
    compute, volumes = FakeCompute(), FakeBlockStorage()
    d.connection._conn = SimpleNamespace(
        compute=compute, block_storage=volumes, current_project_id="p-target"
    )
    return d, compute, volumes


Fake = tuple[OpenStackDriver, FakeCompute, FakeBlockStorage]
RUN_TAGS = {"seawall:run": "run-1", "seawall:workload": "w"}


def spec(kind: ResourceKind, name: str, **attrs: Any) -> ResourceSpec:
    return ResourceSpec(kind, name, f"run-1/{kind.value}/{name}", attrs, {}, RUN_TAGS)


def no_marks(d: OpenStackDriver, kind: ResourceKind) -> None:
    """Nothing of ``kind`` on the cloud says seawall: no ``seawall:*`` anywhere."""
    for r in d.list_resources(kind):
        assert not [t for t in r.tags if t.startswith("seawall:")], r
        assert "seawall" not in json.dumps(r.attrs) and " sw " not in r.name, r


def test_a_keypair_comes_back_with_its_name_and_exactly_its_public_key(fake: Fake) -> None:
    d, compute, _ = fake
    s = spec(K.KEYPAIR, "sc-key", public_key=PK, type="ssh")
    made = d.create(s)
    assert compute.keypairs_["sc-key"].public_key == PK and list(compute.keypairs_) == ["sc-key"]
    assert made.id == "sc-key" and made.tags[KEY_TAG] == s.key  # the run's: created here
    found = d.find(K.KEYPAIR, s.key)
    assert found is not None and found.id == "sc-key" and found.tags[KEY_TAG] == s.key
    assert d.create(s).id == "sc-key" and len(compute.keypairs_) == 1
    assert d.find(K.KEYPAIR, "run-1/keypair/other") is None
    no_marks(d, K.KEYPAIR)


def test_the_targets_keypair_with_the_same_key_is_reused_and_not_the_runs(fake: Fake) -> None:
    d, compute, _ = fake
    ops = PK.replace(" me", " ops")
    compute.keypairs_["sc-key"] = SimpleNamespace(name="sc-key", public_key=ops, type="ssh")
    got = d.create(spec(K.KEYPAIR, "sc-key", public_key=PK))
    assert got.id == "sc-key" and KEY_TAG not in got.tags  # never deleted by a revert
    assert compute.keypairs_["sc-key"].public_key.endswith(" ops")  # left as it was


def test_a_same_named_keypair_with_another_key_is_a_conflict_saying_what_to_do(
    fake: Fake,
) -> None:
    d, compute, _ = fake
    other = PK.replace("AAAAIGb5", "AAAAIGb6")
    compute.keypairs_["sc-key"] = SimpleNamespace(name="sc-key", public_key=other, type="ssh")
    with pytest.raises(
        Conflict, match=r"keypair 'sc-key' already exists on site 'x'.*delete or rename"
    ):
        d.create(spec(K.KEYPAIR, "sc-key", public_key=PK))
    assert compute.keypairs_["sc-key"].public_key == other


def test_a_keypair_without_a_public_key_is_refused_not_generated(fake: Fake) -> None:
    d, compute, _ = fake
    with pytest.raises(InvalidInput, match="public_key"):
        d.create(spec(K.KEYPAIR, "sc-key", public_key=""))
    assert not compute.keypairs_


FLAVOR: dict[str, Any] = {
    "vcpus": 2,
    "ram_mb": 2048,
    "disk_gb": 20,
    "ephemeral_gb": 1,
    "swap_mb": 512,
    "is_public": False,
    "description": "app tier",
    "extra_specs": {"hw:cpu_policy": "dedicated", "aggregate:ssd": "true"},
}


def test_a_flavor_is_created_as_captured_with_only_the_users_extra_specs(fake: Fake) -> None:
    d, compute, _ = fake
    s = spec(K.FLAVOR, "m1.app", **FLAVOR)
    made = d.create(s)
    (f,) = compute.flavors_.values()
    assert (f.name, f.vcpus, f.ram, f.disk, f.ephemeral, f.swap) == ("m1.app", 2, 2048, 20, 1, 512)
    assert (f.is_public, f.description) == (False, "app tier")
    assert f.access == ["p-target"]  # private: opened to the project recovered into
    assert f.extra_specs == {"hw:cpu_policy": "dedicated", "aggregate:ssd": "true"}
    assert made.tags[KEY_TAG] == s.key and made.attrs["extra_specs"] == FLAVOR["extra_specs"]
    found = d.find(K.FLAVOR, s.key)
    assert found is not None and found.id == f.id
    no_marks(d, K.FLAVOR)


def test_the_targets_matching_flavor_is_reused(fake: Fake) -> None:
    d, compute, _ = fake
    pre = compute.create_flavor(name="m1.app", vcpus=2, ram=2048, disk=20, ephemeral=1, swap=512)
    # an earlier version's mark in its extra specs is not the user's: still a match
    pre.extra_specs = {**FLAVOR["extra_specs"], KEY_TAG: "old-run/flavor/x"}
    got = d.create(spec(K.FLAVOR, "m1.app", **FLAVOR))
    assert got.id == pre.id and got.tags.get(KEY_TAG) != "run-1/flavor/m1.app"
    assert len(compute.flavors_) == 1


@pytest.mark.parametrize(
    ("change", "named"),
    [({"ram": 4096}, "ram 4096"), ({"extra_specs": {"hw:cpu_policy": "shared"}}, "extra specs")],
)
def test_a_same_named_flavor_that_differs_is_a_conflict_pointing_at_the_mapping(
    fake: Fake, change: dict[str, Any], named: str
) -> None:
    d, compute, _ = fake
    pre = compute.create_flavor(name="m1.app", vcpus=2, ram=2048, disk=20, ephemeral=1, swap=512)
    pre.extra_specs = dict(FLAVOR["extra_specs"])
    for k, v in change.items():
        setattr(pre, k, v)
    with pytest.raises(
        Conflict, match=rf"flavor 'm1.app' already exists.*{named}.*mappings\.flavor"
    ):
        d.create(spec(K.FLAVOR, "m1.app", **FLAVOR))
    assert len(compute.flavors_) == 1


def test_a_flavor_made_by_someone_else_meanwhile_is_reused_when_it_matches(fake: Fake) -> None:
    d, compute, _ = fake
    original = compute.create_flavor
    racer: list[Any] = []

    def create_after_a_rival(**body: Any) -> Any:  # the rival wins between look and create
        if not racer:
            racer.append(original(**body))
            racer[0].extra_specs = dict(FLAVOR["extra_specs"])
        return original(**body)

    compute.create_flavor = create_after_a_rival  # type: ignore[method-assign]
    got = d.create(spec(K.FLAVOR, "m1.app", **FLAVOR))
    assert got.id == racer[0].id and KEY_TAG not in got.tags


def test_the_targets_same_named_volume_type_is_reused_and_differences_logged(
    fake: Fake, caplog: pytest.LogCaptureFixture
) -> None:
    d, _, volumes = fake
    pre = volumes.create_type(name="__DEFAULT__", extra_specs={"volume_backend_name": "lvm"})
    with caplog.at_level("WARNING"):
        got = d.create(spec(K.VOLUME_TYPE, "__DEFAULT__",
                            extra_specs={"volume_backend_name": "ceph"}))  # fmt: skip
    assert got.id == pre.id and KEY_TAG not in got.tags and len(volumes.types_) == 1
    assert pre.extra_specs == {"volume_backend_name": "lvm"}  # the operator's, untouched
    assert "volume type __DEFAULT__" in caplog.text and "volume_backend_name" in caplog.text


def test_a_volume_type_is_created_only_when_the_target_has_none_of_that_name(
    fake: Fake,
) -> None:
    d, _, volumes = fake
    s = spec(K.VOLUME_TYPE, "gold", extra_specs={"volume_backend_name": "ceph"}, description="fast")
    made = d.create(s)
    (t,) = volumes.types_.values()
    assert (t.name, t.extra_specs, t.description) == (
        "gold",
        {"volume_backend_name": "ceph"},
        "fast",
    )
    assert made.tags[KEY_TAG] == s.key
    no_marks(d, K.VOLUME_TYPE)


def test_a_server_group_keeps_its_name_policy_and_rules(fake: Fake) -> None:
    d, compute, _ = fake
    rules = {"max_server_per_host": 2}
    s = spec(K.SERVER_GROUP, "web group", policies=["anti-affinity"], rules=rules)
    made = d.create(s)
    (g,) = compute.groups_.values()
    assert (g.name, g.policy, g.rules) == ("web group", "anti-affinity", rules)
    assert made.tags[KEY_TAG] == s.key and made.attrs["rules"] == rules
    no_marks(d, K.SERVER_GROUP)


def test_only_an_empty_server_group_with_the_same_policy_is_reused(fake: Fake) -> None:
    d, compute, _ = fake
    busy = compute.create_server_group(name="web", policy="anti-affinity")
    busy.member_ids = ["server-1"]
    compute.create_server_group(name="web", policy="affinity")
    assert d.create(spec(K.SERVER_GROUP, "web", policies=["anti-affinity"])).id == "g2"
    empty = d.create(ResourceSpec(K.SERVER_GROUP, "web", "run-2/server_group/web",
                                  {"policies": ["anti-affinity"]}))  # fmt: skip
    assert empty.id == "g2" and KEY_TAG not in empty.tags  # what another attempt made
    assert len(compute.groups_) == 3


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
