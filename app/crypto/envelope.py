"""Envelope keys: each index's random data key (DEK), stored only wrapped.

The DEK is wrapped with AES-256-GCM under a key-encryption key (the client's
`index_key` on the SDK path, a KMS key later). The wrap's associated data
names the index, so a wrapped DEK moved to another index's row does not open.
A wrong KEK fails authentication, which is how a wrong `index_key` is detected
before any item is read or written.
"""

from __future__ import annotations

import os

from app.crypto.aead import KEY_BYTES, Aead, AuthenticationFailed

WRAP_FORMAT_V1 = b"\x01"


class KeyUnwrapFailed(Exception):
    """The wrapped data key did not open under the given key-encryption key."""


def generate_data_key() -> bytes:
    """A fresh random 256-bit data key."""
    return os.urandom(KEY_BYTES)


def _wrap_context(index_id: int) -> bytes:
    return b"ciphervec/dek/v1/" + index_id.to_bytes(8, "big")


def wrap_data_key(kek: bytes, dek: bytes, index_id: int) -> bytes:
    """Seal `dek` under `kek`, bound to `index_id`."""
    return WRAP_FORMAT_V1 + Aead(kek).seal(dek, _wrap_context(index_id))


def unwrap_data_key(kek: bytes, wrapped: bytes, index_id: int) -> bytes:
    """Open a wrapped DEK, or raise KeyUnwrapFailed."""
    if not wrapped.startswith(WRAP_FORMAT_V1):
        raise KeyUnwrapFailed("unknown wrap format")
    try:
        dek = Aead(kek).open(wrapped[1:], _wrap_context(index_id))
    except AuthenticationFailed as exc:
        raise KeyUnwrapFailed("wrong key-encryption key") from exc
    if len(dek) != KEY_BYTES:
        raise KeyUnwrapFailed("unwrapped key has the wrong length")
    return dek
