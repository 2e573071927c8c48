"""AES-256-GCM sealing with a fresh random nonce per ciphertext.

A sealed blob is `nonce(12) || ciphertext || tag(16)`. Callers always pass
associated data naming where the blob belongs, so a blob copied to another
row, block or index fails to open instead of being served.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32


class AuthenticationFailed(Exception):
    """A ciphertext did not open: wrong key, wrong associated data, or tampering."""


class Aead:
    """One AES-256-GCM key, kept as a ready cipher object."""

    __slots__ = ("_cipher",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("AES-256-GCM needs a 32-byte key")
        self._cipher = AESGCM(key)

    def __repr__(self) -> str:
        return "Aead(<secret>)"

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt and authenticate `plaintext`, bound to `aad`."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._cipher.encrypt(nonce, plaintext, aad)

    def seal_many(self, plaintexts: Sequence[bytes], aads: Sequence[bytes]) -> list[bytes]:
        """`seal` each plaintext with its associated data.

        The nonces come from one read of the OS's generator: a read per
        ciphertext cost about a third of sealing a small payload.
        """
        nonces = os.urandom(NONCE_BYTES * len(plaintexts))
        encrypt = self._cipher.encrypt
        sealed = []
        for start, plaintext, aad in zip(
            range(0, len(nonces), NONCE_BYTES), plaintexts, aads, strict=True
        ):
            nonce = nonces[start : start + NONCE_BYTES]
            sealed.append(nonce + encrypt(nonce, plaintext, aad))
        return sealed

    def open(self, blob: bytes, aad: bytes) -> bytes:
        """Decrypt a sealed blob, or raise AuthenticationFailed."""
        _check_length(blob)
        try:
            return self._cipher.decrypt(blob[:NONCE_BYTES], memoryview(blob)[NONCE_BYTES:], aad)
        except InvalidTag as exc:
            raise AuthenticationFailed("ciphertext failed authentication") from exc

    def open_into(self, blob: bytes, aad: bytes, out: memoryview) -> None:
        """Decrypt a sealed blob into `out` (exactly `plaintext_length(blob)` bytes), or
        raise AuthenticationFailed, after which `out` holds garbage that must not be used.

        Decrypting many blocks into one buffer spares an allocation per block,
        whose page faults cost more than the decryption itself (measured: 60
        blocks of 520 kB, 47 ms one by one, 19 ms into one buffer).
        """
        _check_length(blob)
        try:
            self._cipher.decrypt_into(blob[:NONCE_BYTES], memoryview(blob)[NONCE_BYTES:], aad, out)
        except InvalidTag as exc:
            raise AuthenticationFailed("ciphertext failed authentication") from exc


def plaintext_length(blob: bytes) -> int:
    """Bytes a sealed blob opens to."""
    return len(blob) - NONCE_BYTES - TAG_BYTES


def _check_length(blob: bytes) -> None:
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise AuthenticationFailed("ciphertext too short")
