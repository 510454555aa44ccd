"""Fixtures for the repository tests: memory storage, cheap KDF, small packs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from repo_helpers import PASS

from seawall.repo import Repository
from seawall.storage.memory import MemoryStorage


@pytest.fixture
def storage() -> MemoryStorage:
    return MemoryStorage()


@pytest.fixture
def repo(storage: MemoryStorage) -> Iterator[Repository]:
    r = Repository.init(storage, PASS, kdf="fast", chunk_size=4096, pack_size=64 * 1024)
    yield r
    r.close()
