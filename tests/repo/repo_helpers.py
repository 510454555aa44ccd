"""Helpers shared by the repository tests (imported as a module, not a fixture file)."""

from __future__ import annotations

import random

from seawall.repo import Repository

PASS = "correct horse battery staple"


class BytesSource:
    """A volume held in memory; counts what the repository actually read."""

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.size = len(self.data)
        self.bytes_read = 0

    def read(self, offset: int, length: int) -> bytes:
        self.bytes_read += length
        return self.data[offset : offset + length]


def restore(repo: Repository, image_id: str) -> bytes:
    info = repo.volume_info(image_id)
    out = bytearray(info.size)
    for off, data in repo.read_volume(image_id):
        out[off : off + len(data)] = data
    return bytes(out)


def make_volume(size: int, seed: int = 1, chunk: int = 4096) -> bytes:
    """Deterministic mix of zero, text-like and random runs (like the bench data)."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        kind = rng.random()
        n = rng.randrange(1, 8) * chunk
        if kind < 0.4:
            out += bytes(n)
        elif kind < 0.7:
            line = f"{rng.randrange(10**6)} INFO service started worker={rng.randrange(99)}\n"
            out += (line.encode() * (n // len(line) + 1))[:n]
        else:
            out += rng.randbytes(n)
    return bytes(out[:size])
