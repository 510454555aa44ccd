"""Byte-level format of a seawall repository (see docs/design/repository-format.md).

Every object the repository writes (config, pack blobs, pack trailers, index files,
manifests, locks) is *sealed* the same way::

    +------+---------+------+-------+--------+-------+------------------------+
    | "SW" | version | type | codec | cipher | nonce | ciphertext + 16 B tag  |
    |  2 B |   1 B   | 1 B  |  1 B  |  1 B   | 12 B  |                        |
    +------+---------+------+-------+--------+-------+------------------------+

The 6 header bytes are authenticated as associated data together with a *context*
(the blob id for blobs, the storage key for manifests, a fixed label otherwise), so an
attacker with write access can neither change the codec nor move an object to a name
where it would be believed.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import blake3
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from seawall.errors import CorruptObject, UnsupportedVersion

MAGIC = b"SW"
#: The one format version this code writes and reads.
FORMAT_VERSION = 1
HEADER = struct.Struct("<2sBBBB")
NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = HEADER.size + NONCE_SIZE + TAG_SIZE
ID_SIZE = 32
HOLE = bytes(ID_SIZE)


class ObjectType:
    """The ``type`` byte: what a sealed object is, so it cannot be confused with another."""

    CONFIG = 1
    INDEX = 2
    MANIFEST = 3
    LOCK = 4
    PACK_TRAILER = 5
    BLOB_DATA = 16  # a fixed-size volume chunk
    BLOB_LIST = 17  # a piece of a volume image's / stream's chunk list
    BLOB_STREAM = 18  # a content-defined stream chunk


BLOB_TYPES = frozenset({ObjectType.BLOB_DATA, ObjectType.BLOB_LIST, ObjectType.BLOB_STREAM})


class Codec:
    """The ``codec`` byte: how the plaintext was compressed before sealing."""

    NONE = 0
    ZSTD = 1


class Cipher:
    """The ``cipher`` byte: which AEAD sealed the object."""

    AES256GCM = 1


_KDF_DATA = "seawall repository v1 object encryption key"
_KDF_ID = "seawall repository v1 chunk id key"
_KDF_FP = "seawall repository v1 master key fingerprint"


def hash_id(data: bytes | bytearray | memoryview) -> bytes:
    """Unkeyed BLAKE3: names packs and index files by their (already encrypted) bytes."""
    return blake3.blake3(data).digest()


class _Local(threading.local):
    cctx: zstandard.ZstdCompressor | None = None
    dctx: zstandard.ZstdDecompressor | None = None


@dataclass(frozen=True)
class ObjectInfo:
    """What the plaintext header of a sealed object says."""

    version: int
    type: int
    codec: int
    cipher: int


class Keys:
    """Keys derived from the master key; the master key itself is never used directly.

    Two repositories that share a master key (``Repository.init(key_from=...)``) derive
    the same chunk ids and can exchange sealed objects as they are, which is what makes
    ``sync`` a byte copy.
    """

    def __init__(self, master: bytes, *, zstd_level: int = 1) -> None:
        if len(master) != 32:
            raise ValueError("the master key is 32 bytes")
        self.master = master
        self.data_key = blake3.blake3(master, derive_key_context=_KDF_DATA).digest()
        self.id_key = blake3.blake3(master, derive_key_context=_KDF_ID).digest()
        self.fingerprint = blake3.blake3(master, derive_key_context=_KDF_FP).hexdigest()[:16]
        self._aead = AESGCM(self.data_key)
        self.zstd_level = zstd_level
        self._local = _Local()

    # -- ids ---------------------------------------------------------------------------
    def chunk_id(self, data: bytes | memoryview) -> bytes:
        """Keyed BLAKE3, so ids reveal nothing about the plaintext without the key."""
        return blake3.blake3(data, key=self.id_key).digest()

    # -- compression ---------------------------------------------------------------------
    def _compress(self, data: bytes | memoryview) -> tuple[int, bytes | memoryview]:
        local = self._local
        if local.cctx is None:
            local.cctx = zstandard.ZstdCompressor(level=self.zstd_level)
        n = len(data)
        if n >= PROBE_MIN and _incompressible(local.cctx, data, n):
            return Codec.NONE, data
        packed = local.cctx.compress(data)
        if len(packed) >= len(data):
            return Codec.NONE, data
        return Codec.ZSTD, packed

    def _decompress(self, codec: int, data: bytes, what: str) -> bytes:
        if codec == Codec.NONE:
            return data
        if codec == Codec.ZSTD:
            local = self._local
            if local.dctx is None:
                local.dctx = zstandard.ZstdDecompressor()
            try:
                return local.dctx.decompress(data)
            except zstandard.ZstdError as exc:
                raise CorruptObject(f"{what}: cannot decompress: {exc}") from None
        raise UnsupportedVersion(f"{what}: unknown codec byte {codec}; upgrade seawall")

    # -- sealing -------------------------------------------------------------------------
    def seal(
        self, type_: int, data: bytes | memoryview, context: bytes, *, compress: bool = True
    ) -> bytes:
        """Compress (when it helps), then encrypt and authenticate one object."""
        codec, payload = self._compress(data) if compress else (Codec.NONE, data)
        header = HEADER.pack(MAGIC, FORMAT_VERSION, type_, codec, Cipher.AES256GCM)
        nonce = _nonce()
        return header + nonce + self._aead.encrypt(nonce, payload, header + context)

    def seal_buffer(self, type_: int, data: bytes | memoryview, context: bytes) -> bytearray:
        """:meth:`seal` for the data path: the same bytes, built in one buffer (the
        ciphertext is encrypted in place after the header, no concatenation copy)."""
        codec, payload = self._compress(data)
        header = HEADER.pack(MAGIC, FORMAT_VERSION, type_, codec, Cipher.AES256GCM)
        nonce = _nonce()
        start = HEADER.size + NONCE_SIZE
        out = bytearray(start + len(payload) + TAG_SIZE)
        out[: HEADER.size] = header
        out[HEADER.size : start] = nonce
        self._aead.encrypt_into(nonce, payload, header + context, memoryview(out)[start:])
        return out

    def unseal(
        self, blob: bytes | memoryview, context: bytes, *, expect_type: int, what: str
    ) -> bytes:
        """Authenticate and decrypt one object; raise :class:`CorruptObject` naming ``what``."""
        info = parse_header(blob, what)
        if info.type != expect_type:
            raise CorruptObject(f"{what}: object type {info.type}, expected {expect_type}")
        if info.cipher != Cipher.AES256GCM:
            raise UnsupportedVersion(f"{what}: unknown cipher byte {info.cipher}; upgrade seawall")
        header = bytes(blob[: HEADER.size])
        nonce = blob[HEADER.size : HEADER.size + NONCE_SIZE]
        try:
            payload = self._aead.decrypt(nonce, blob[HEADER.size + NONCE_SIZE :], header + context)
        except InvalidTag:
            raise CorruptObject(f"{what}: failed authentication (modified or damaged)") from None
        return self._decompress(info.codec, payload, what)

    def seal_json(self, type_: int, value: Any, context: bytes) -> bytes:
        return self.seal(type_, canonical_json(value), context)

    def unseal_json(self, blob: bytes, context: bytes, *, expect_type: int, what: str) -> Any:
        raw = self.unseal(blob, context, expect_type=expect_type, what=what)
        try:
            return json.loads(raw)
        except ValueError:
            raise CorruptObject(f"{what}: not valid JSON after decryption") from None


def _nonce() -> bytes:
    return os.urandom(NONCE_SIZE)


#: Chunks at least this long are probed before compressing (smaller ones just compress).
PROBE_MIN = 16 * 1024
_PROBE_PIECES = 4
_PROBE_PIECE = 1024


def _incompressible(cctx: zstandard.ZstdCompressor, data: bytes | memoryview, n: int) -> bool:
    """A cheap entropy probe: compress 4 x 1 KiB samples spread over the chunk.

    Random (already compressed or encrypted) samples shrink by less than 3 %, and the
    chunk is then stored as is without compressing all of it (the probe costs ~1/16 of
    that). Any sample of text or zeros makes the probe shrink, so the chunk is compressed
    (and still stored uncompressed if compressing does not make it smaller)."""
    step = n // _PROBE_PIECES
    sample = b"".join(data[i * step : i * step + _PROBE_PIECE] for i in range(_PROBE_PIECES))
    return len(cctx.compress(sample)) * 100 >= len(sample) * 97


def parse_header(blob: bytes | memoryview, what: str) -> ObjectInfo:
    if len(blob) < OVERHEAD:
        raise CorruptObject(f"{what}: truncated ({len(blob)} bytes)")
    magic, version, type_, codec, cipher = HEADER.unpack_from(blob, 0)
    if magic != MAGIC:
        raise CorruptObject(f"{what}: not a seawall object (bad magic)")
    if version != FORMAT_VERSION:
        raise UnsupportedVersion(
            f"{what}: format version {version}, this seawall reads {FORMAT_VERSION}; "
            "upgrade seawall"
        )
    return ObjectInfo(version, type_, codec, cipher)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces: equal content gives equal bytes (and equal ids)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# --------------------------------------------------------------------------------------
# Pack trailers and index files: the same binary entry list.
# --------------------------------------------------------------------------------------

#: One blob's location: id, type, offset in the pack, sealed length, plaintext length.
ENTRY = struct.Struct("<32sBIII")


@dataclass(frozen=True, slots=True)
class BlobEntry:
    id: bytes
    type: int
    offset: int
    length: int
    raw_length: int


def encode_entries(entries: Iterable[BlobEntry]) -> bytes:
    items = list(entries)
    out = bytearray(struct.pack("<I", len(items)))
    for e in items:
        out += ENTRY.pack(e.id, e.type, e.offset, e.length, e.raw_length)
    return bytes(out)


def decode_entries(data: bytes, pos: int, what: str) -> tuple[list[BlobEntry], int]:
    try:
        (count,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if pos + count * ENTRY.size > len(data):
            raise CorruptObject(f"{what}: entry list runs past the end")
        out = []
        for _ in range(count):
            id_, type_, offset, length, raw = ENTRY.unpack_from(data, pos)
            out.append(BlobEntry(id_, type_, offset, length, raw))
            pos += ENTRY.size
    except struct.error:
        raise CorruptObject(f"{what}: malformed entry list") from None
    return out, pos


def encode_index(packs: Mapping[bytes, Iterable[BlobEntry]]) -> bytes:
    out = bytearray(struct.pack("<I", len(packs)))
    for pack_id in sorted(packs):
        out += pack_id
        out += encode_entries(packs[pack_id])
    return bytes(out)


def decode_index(data: bytes, what: str) -> dict[bytes, list[BlobEntry]]:
    try:
        (npacks,) = struct.unpack_from("<I", data, 0)
    except struct.error:
        raise CorruptObject(f"{what}: malformed index") from None
    pos = 4
    out: dict[bytes, list[BlobEntry]] = {}
    for _ in range(npacks):
        pack_id = data[pos : pos + ID_SIZE]
        if len(pack_id) != ID_SIZE:
            raise CorruptObject(f"{what}: malformed index")
        entries, pos = decode_entries(data, pos + ID_SIZE, what)
        out[pack_id] = entries
    return out


TRAILER_LEN = struct.Struct("<I")
