"""The chunk repository: content-addressed, deduplicating, compressed, encrypted.

``Repository`` is the facade every other layer uses; the format is specified in
docs/design/repository-format.md. This package imports only ``seawall.storage``,
``seawall.retention`` and ``seawall.errors`` and knows nothing of clouds, runs or the
database. Its modules form layers (each imports only the ones below it)::

    sync                   replication between repositories sharing a master key
    repository             the Repository facade
    maintenance | volume   check/stats/forget/prune; volume image and stream data paths
    store                  BlobStore: blobs by id over the index and the packs
    manifest | index       ManifestStore; Index (blob id -> pack location)
    pack                   PackWriter, pack trailers, ranged blob reads
    locks | keyfile        lock records; key slots
    format                 sealed objects and binary entry lists
"""

from __future__ import annotations

from seawall.repo.keyfile import KeySlot
from seawall.repo.maintenance import CheckReport
from seawall.repo.manifest import Manifest, VolumeImage
from seawall.repo.repository import Repository
from seawall.repo.sync import SyncStats, init_sharing, sync
from seawall.repo.volume import FileSource, VolumeSource

__all__ = [
    "CheckReport",
    "FileSource",
    "KeySlot",
    "Manifest",
    "Repository",
    "SyncStats",
    "VolumeImage",
    "VolumeSource",
    "init_sharing",
    "sync",
]
