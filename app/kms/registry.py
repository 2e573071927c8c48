"""The KMS registry: named provider entries from CIPHERVEC_KMS_CONFIG, and the async
wrap/unwrap calls services make through them.

The YAML file holds one section, `kms.registry.<name>`, each entry a provider
with its own fields (extra keys are refused at start-up):

    kms:
      registry:
        main:   {provider: local, key_id: master-2026, key_file: /etc/ciphervec/master.key}
        cloud:  {provider: aws, key_id: alias/ciphervec, region: eu-west-1}

A KMS-backed index stores a `KmsBlob` naming the entry, the provider, the key
id and the wrapped DEK. Unwrapping looks the entry up by name and, when the
entry was renamed or now names another key, by (provider, key id): an old
master key stays usable as long as some entry still names it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from app.errors import BadRequest, KmsRefused, KmsUnavailable
from app.kms.providers import (
    KeyContext,
    KmsConfigError,
    KmsConfigFile,
    Provider,
    ProviderRefused,
    ProviderUnavailable,
    build_provider,
)


@dataclass(frozen=True, slots=True)
class KmsBlob:
    """What an index stores about its KMS-wrapped DEK (never the DEK itself)."""

    kms_name: str
    provider: str
    key_id: str
    wrapped: bytes
    context: dict[str, str]


def load_config(path: Path) -> KmsConfigFile:
    """Parse and validate the KMS YAML file."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise KmsConfigError(f"cannot read KMS config {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise KmsConfigError(f"KMS config {path} is not valid YAML: {exc}") from exc
    try:
        return KmsConfigFile.model_validate(raw)
    except ValidationError as exc:
        raise KmsConfigError(f"KMS config {path} is invalid: {exc}") from exc


class KmsRegistry:
    """Named providers; every call runs in a worker thread (boto3 blocks)."""

    def __init__(self, providers: dict[str, Provider]) -> None:
        self._providers = providers

    @classmethod
    def from_file(cls, path: Path | None) -> KmsRegistry:
        """The registry of a config file, or an empty one."""
        if path is None:
            return cls({})
        config = load_config(path)
        return cls({name: build_provider(name, e) for name, e in config.kms.registry.items()})

    def names(self) -> list[str]:
        """Configured entry names."""
        return sorted(self._providers)

    def provider(self, kms_name: str) -> Provider:
        """The entry a client named, or 400 as the reference words it."""
        found = self._providers.get(kms_name)
        if found is None:
            raise BadRequest(f"Unknown KMS registry entry: '{kms_name}'. Known: {self.names()}")
        return found

    async def wrap(self, kms_name: str, dek: bytes, context: KeyContext) -> KmsBlob:
        """Wrap a DEK under the named entry's key."""
        provider = self.provider(kms_name)
        wrapped = await _call(provider, context, provider.wrap, dek)
        return KmsBlob(
            kms_name=kms_name, provider=provider.kind, key_id=provider.key_id,
            wrapped=wrapped, context=context.encryption_context(),
        )

    async def unwrap(self, blob: KmsBlob, context: KeyContext) -> bytes:
        """Open a stored blob with whichever configured entry holds its key."""
        if blob.context != context.encryption_context():
            raise KmsRefused(f"KMS error: the stored key of index '{context.index_name}' "
                             "belongs to another index")
        provider = self._resolve(blob)
        if provider is None:
            raise KmsUnavailable(
                f"KMS key '{blob.key_id}' (provider={blob.provider}, entry '{blob.kms_name}') "
                f"of index '{context.index_name}' is not configured in this service"
            )
        return await _call(provider, context, provider.unwrap, blob.wrapped)

    def _resolve(self, blob: KmsBlob) -> Provider | None:
        named = self._providers.get(blob.kms_name)
        if named is not None and (named.kind, named.key_id) == (blob.provider, blob.key_id):
            return named
        for provider in self._providers.values():
            if (provider.kind, provider.key_id) == (blob.provider, blob.key_id):
                return provider
        return None


async def _call(
    provider: Provider,
    context: KeyContext,
    method: Callable[[bytes, KeyContext], bytes],
    data: bytes,
) -> bytes:
    try:
        result: bytes = await asyncio.to_thread(method, data, context)
    except ProviderUnavailable as exc:
        raise KmsUnavailable(
            f"KMS '{provider.name}' is unavailable for index '{context.index_name}': {exc}; "
            "try again shortly"
        ) from exc
    except ProviderRefused as exc:
        raise KmsRefused(
            f"KMS error: '{provider.name}' refused the key of index '{context.index_name}': {exc}"
        ) from exc
    return result
