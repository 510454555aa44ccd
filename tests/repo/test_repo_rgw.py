"""The repository on real S3: Ceph RGW of the two OpenStack lab sites (marked ``lab``).

What moto cannot show: a real object store's listing, ranged reads and overwrite
semantics under the engine, and replication between two independent sites' stores.
"""

from __future__ import annotations

import pytest
from repo_helpers import PASS, BytesSource, make_volume, restore

from seawall.repo import Repository, init_sharing, sync
from seawall.storage import open_storage

pytestmark = pytest.mark.lab


def test_repository_on_rgw_replicates_between_sites(
    rgw_a: tuple[str, dict[str, str]], rgw_b: tuple[str, dict[str, str]]
) -> None:
    (bucket_a, opts_a), (bucket_b, opts_b) = rgw_a, rgw_b
    store_a = open_storage(f"s3://{bucket_a}/repo", opts_a)
    src = Repository.init(store_a, PASS, kdf="fast", chunk_size=4096, pack_size=64 * 1024)
    data = make_volume(300_000, seed=7)
    vol = src.write_volume("vm", BytesSource(data))
    src.save_manifest("checkpoint", {"workload": "w"}, {}, id="cp1", refs=[vol.id])
    fresh = Repository.open(open_storage(f"s3://{bucket_a}/repo", opts_a), PASS)
    assert restore(fresh, vol.id) == data

    dst = init_sharing(src, open_storage(f"s3://{bucket_b}/repo", opts_b))
    first = sync(src, dst)
    assert first.manifests_sent == 2 and first.bytes_sent > 0
    reopened = Repository.open(open_storage(f"s3://{bucket_b}/repo", opts_b), PASS)
    assert reopened.check(read_data=True).ok
    assert restore(reopened, vol.id) == data
    again = sync(src, reopened)
    assert (again.bytes_sent, again.manifests_sent) == (0, 0)
