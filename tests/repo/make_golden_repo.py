"""Write the golden repository fixture for the current format version.

Run once per format version and commit the result:
    .venv/bin/python tests/repo/make_golden_repo.py tests/data/repo-v1
The test ``test_repo_golden.py`` opens it and checks every byte, so a later format change
cannot silently stop old repositories from opening.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path

from seawall.repo import Repository
from seawall.storage.local import LocalStorage

PASSPHRASE = "golden fixture v1"


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data, self.size = data, len(data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]


def main(target: str) -> None:
    rng = random.Random(2025)
    root = Path(target)
    repo = Repository.init(
        LocalStorage(root), PASSPHRASE, kdf="fast", chunk_size=4096, pack_size=16 * 1024
    )
    text = b"".join(f"{i:06d} INFO seawall golden line\n".encode() for i in range(600))
    vol = bytes(8192) + rng.randbytes(12288) + text[:16384] + bytes(4096) + b"tail"
    v1 = repo.write_volume("golden-disk", _Bytes(vol))
    vol2 = vol[:9000] + b"CHANGED!" + vol[9008:]
    v2 = repo.write_volume("golden-disk", _Bytes(vol2), base=v1.id, extents=[(9000, 8)])
    stream = rng.randbytes(20000) + text
    sid = repo.put_stream("golden-image", [stream[:7000], stream[7000:]])
    repo.save_manifest(
        "checkpoint",
        {"workload": "golden"},
        {"note": "format v1"},
        id="golden-checkpoint",
        refs=[v2.id, sid],
    )
    repo.close()
    expect = {
        "passphrase": PASSPHRASE,
        "format_version": 1,
        "volumes": {
            v1.id: hashlib.sha256(vol).hexdigest(),
            v2.id: hashlib.sha256(vol2).hexdigest(),
        },
        "stream": [sid, hashlib.sha256(stream).hexdigest()],
        "checkpoint": "golden-checkpoint",
        "sizes": {v1.id: len(vol), v2.id: len(vol2)},
    }
    (root.parent / f"{root.name}.json").write_text(json.dumps(expect, indent=1, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1])
