"""The chunk repository: content-addressed, deduplicating, compressed, encrypted.

``Repository`` is the facade every other layer uses; the format is specified in
docs/design/repository-format.md. This package imports only ``seawall.storage`` and
``seawall.errors`` and knows nothing of clouds, runs or the database.
"""

from __future__ import annotations

from seawall.repo.keyfile import KeySlot
from seawall.repo.repository import (
    CheckReport,
    FileSource,
    Manifest,
    Repository,
    SyncStats,
    VolumeImage,
    VolumeSource,
)
from seawall.repo.sync import init_sharing, sync

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
