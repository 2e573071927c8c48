"""Index keys on both paths: creating, opening and re-wrapping an index's DEK.

`StoredKey` is what an index row holds: on the SDK path (`provider="sdk"`) the
DEK wrapped under the client's `index_key`; on the KMS path (`local`, `aws`)
the KmsBlob. Opening goes through the process's TTL cache of ciphers.
Re-wrapping (key rotation) unwraps the DEK afresh, checking the current key,
and wraps the same DEK under the new key: item data is never re-encrypted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from app.crypto.envelope import (
    KeyUnwrapFailed,
    generate_data_key,
    unwrap_data_key,
    wrap_data_key,
)
from app.crypto.index_cipher import IndexCipher
from app.errors import BadRequest, KeySentToKmsIndex, WrongIndexKey
from app.kms.providers import KeyContext
from app.kms.registry import KmsBlob, KmsRegistry
from app.kms.sdk import IndexCipherCache

SDK_PROVIDER = "sdk"


@dataclass(frozen=True, slots=True)
class StoredKey:
    """An index's wrapped DEK and, on the KMS path, which KMS key wrapped it."""

    provider: str
    wrapped: bytes
    kms_name: str | None = None
    key_id: str | None = None
    context: dict[str, str] | None = None

    @property
    def is_kms(self) -> bool:
        """True when a KMS provider, not the client, holds the wrapping key."""
        return self.provider != SDK_PROVIDER

    def blob(self) -> KmsBlob:
        """The KmsBlob of a KMS-backed key."""
        return KmsBlob(
            kms_name=self.kms_name or "", provider=self.provider, key_id=self.key_id or "",
            wrapped=self.wrapped, context=dict(self.context or {}),
        )


@dataclass(frozen=True, slots=True)
class KeyChoice:
    """Exactly one of a client key or a KMS entry name, as create and rotate take them."""

    index_key: bytes | None
    kms_name: str | None


class IndexKeys:
    """The key operations services perform on indexes."""

    def __init__(self, ciphers: IndexCipherCache, registry: KmsRegistry) -> None:
        self.ciphers = ciphers
        self.registry = registry

    async def create(self, context: KeyContext, choice: KeyChoice) -> StoredKey:
        """A fresh DEK wrapped under the chosen key."""
        return await self._wrap(context, generate_data_key(), choice)

    async def open(
        self, context: KeyContext, stored: StoredKey, index_key: bytes | None
    ) -> IndexCipher:
        """The index's cipher: 401 for a missing or wrong client key, 400 for a client
        key sent to a KMS index, 503/502 when the KMS cannot or will not unwrap."""
        name = context.index_name
        if not stored.is_kms:
            if index_key is None:
                raise WrongIndexKey(f"index_key is required for index '{name}'")
            return self.ciphers.open(context.index_id, name, stored.wrapped, index_key)
        if index_key is not None:
            raise KeySentToKmsIndex(
                f"index '{name}' is KMS-backed (provider={stored.provider}); do not supply "
                "index_key, the service resolves the key through its KMS"
            )
        # The blob is bound to the row it was read from, so a rotated blob is a
        # new cache entry and the old one is never consulted again.
        fingerprint = hashlib.sha256(
            b"kms|" + stored.provider.encode() + b"|" + (stored.key_id or "").encode()
            + b"|" + stored.wrapped
        ).digest()
        cached = self.ciphers.get(context.index_id, fingerprint)
        if cached is not None:
            return cached
        dek = await self.registry.unwrap(stored.blob(), context)
        cipher = IndexCipher(dek, context.index_id)
        self.ciphers.put(context.index_id, fingerprint, cipher)
        return cipher

    async def rewrap(
        self,
        context: KeyContext,
        stored: StoredKey,
        index_key: bytes | None,
        new: KeyChoice,
    ) -> StoredKey:
        """The same DEK, wrapped under the new key; the current key must open it."""
        if stored.is_kms:
            if index_key is not None:
                await self.open(context, stored, index_key)  # raises the 400
            dek = await self.registry.unwrap(stored.blob(), context)
        else:
            if index_key is None:
                raise WrongIndexKey(
                    f"index_key (the current key) is required to rotate index "
                    f"'{context.index_name}'"
                )
            try:
                dek = unwrap_data_key(index_key, stored.wrapped, context.index_id)
            except KeyUnwrapFailed as exc:
                raise WrongIndexKey(
                    f"Wrong encryption key for index '{context.index_name}'"
                ) from exc
        return await self._wrap(context, dek, new)

    async def _wrap(self, context: KeyContext, dek: bytes, choice: KeyChoice) -> StoredKey:
        if choice.index_key is not None:
            return StoredKey(SDK_PROVIDER, wrap_data_key(choice.index_key, dek, context.index_id))
        if choice.kms_name is None:
            raise BadRequest("exactly one of kms_name or index_key must be supplied")
        blob = await self.registry.wrap(choice.kms_name, dek, context)
        return StoredKey(
            provider=blob.provider, wrapped=blob.wrapped, kms_name=blob.kms_name,
            key_id=blob.key_id, context=blob.context,
        )
