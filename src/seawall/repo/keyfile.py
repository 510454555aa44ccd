"""Key slots: the master key wrapped by a passphrase through argon2id.

A repository has one random 32-byte master key and one or more *key slots* under
``keys/``; each slot wraps the master key with a key-encryption key derived from one
passphrase. Adding, removing or changing a passphrase rewrites one small slot and never
the data. Key files are plain JSON (their KDF parameters must be readable before any key
is known); the wrapped master key inside is AES-256-GCM sealed and bound to the slot id.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from seawall.errors import CorruptObject, InvalidInput, UnsupportedVersion

#: Where key slots live on storage: ``keys/<slot id>``.
KEYS_PREFIX = "keys/"
KEY_FORMAT = "seawall-key"
KEY_VERSION = 1

#: argon2id parameters by name. "default" is RFC 9106's second recommended option
#: (64 MiB, t=3, p=4); "fast" exists for tests and the demo only and says so in the file.
KDF_PROFILES: dict[str, dict[str, int]] = {
    "default": {"time_cost": 3, "memory_cost": 65536, "parallelism": 4},
    "fast": {"time_cost": 1, "memory_cost": 64, "parallelism": 1},
}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)


def derive_kek(passphrase: str, kdf: dict[str, Any]) -> bytes:
    if kdf.get("algorithm") != "argon2id":
        raise UnsupportedVersion(f"unknown key derivation {kdf.get('algorithm')!r}")
    return hash_secret_raw(
        passphrase.encode(),
        _unb64(kdf["salt"]),
        time_cost=int(kdf["time_cost"]),
        memory_cost=int(kdf["memory_cost"]),
        parallelism=int(kdf["parallelism"]),
        hash_len=32,
        type=Type.ID,
    )


@dataclass(frozen=True)
class KeySlot:
    """One stored key slot (what ``repo key list`` shows; never the key itself)."""

    id: str
    created_at: str
    hostname: str
    kdf: str


def make_slot(master: bytes, passphrase: str, kdf: str = "default") -> tuple[str, bytes]:
    """Return ``(slot_id, key_file_bytes)`` wrapping ``master`` under ``passphrase``."""
    if kdf not in KDF_PROFILES:
        raise InvalidInput(f"unknown kdf profile {kdf!r} (use one of {sorted(KDF_PROFILES)})")
    if not passphrase:
        raise InvalidInput("the passphrase must not be empty", field="passphrase")
    slot_id = secrets.token_hex(16)
    params: dict[str, Any] = {"algorithm": "argon2id", "profile": kdf, **KDF_PROFILES[kdf]}
    params["salt"] = _b64(os.urandom(16))
    kek = derive_kek(passphrase, params)
    nonce = os.urandom(12)
    wrapped = AESGCM(kek).encrypt(nonce, master, _aad(slot_id))
    doc = {
        "format": KEY_FORMAT,
        "version": KEY_VERSION,
        "id": slot_id,
        "created_at": datetime.now(UTC).isoformat(),
        "hostname": socket.gethostname(),
        "kdf": params,
        "cipher": "aes-256-gcm",
        "nonce": _b64(nonce),
        "wrapped": _b64(wrapped),
    }
    return slot_id, json.dumps(doc, indent=1, sort_keys=True).encode()


def _aad(slot_id: str) -> bytes:
    return b"seawall key slot v1:" + slot_id.encode()


def parse_slot(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != KEY_FORMAT:
            raise ValueError
    except ValueError:
        raise CorruptObject(f"{what}: not a seawall key file") from None
    if doc.get("version") != KEY_VERSION:
        raise UnsupportedVersion(
            f"{what}: key file version {doc.get('version')}, this seawall reads {KEY_VERSION}; "
            "upgrade seawall"
        )
    return doc


def unwrap_slot(doc: dict[str, Any], passphrase: str) -> bytes | None:
    """The master key, or ``None`` if this passphrase does not open this slot."""
    kek = derive_kek(passphrase, doc["kdf"])
    try:
        return AESGCM(kek).decrypt(_unb64(doc["nonce"]), _unb64(doc["wrapped"]), _aad(doc["id"]))
    except InvalidTag:
        return None


def slot_info(doc: dict[str, Any]) -> KeySlot:
    return KeySlot(
        id=str(doc["id"]),
        created_at=str(doc.get("created_at", "")),
        hostname=str(doc.get("hostname", "")),
        kdf=str(doc.get("kdf", {}).get("profile", "?")),
    )
