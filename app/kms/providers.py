"""KMS providers: who wraps an index's data key when the client sends no `index_key`.

A provider turns a DEK into an opaque wrapped blob and back. Both calls are
blocking (a file read is not, but boto3 is), so services reach them only
through `KmsRegistry`, which runs them off the event loop. Every wrap is bound
to its index: the local provider through the AES-GCM associated data, AWS
KMS through an EncryptionContext naming the index (which also shows up in
CloudTrail, so the KMS admin sees which index a Decrypt served).

- `local`: a 256-bit master key read from a file (32 raw bytes or 64 hex
  characters) or an environment variable (64 hex characters), named by
  `key_id`; several entries with distinct key ids form a keyring, so master
  keys can be rotated one index at a time.
- `aws`: AWS KMS Encrypt/Decrypt with a symmetric key (`key_id` is a key id,
  ARN or alias), optionally at a custom `endpoint_url`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.crypto.aead import KEY_BYTES
from app.crypto.envelope import KeyUnwrapFailed, unwrap_data_key, wrap_data_key


class KmsConfigError(Exception):
    """The KMS configuration is unreadable or invalid; the service does not start."""


class ProviderUnavailable(Exception):
    """The KMS could not be reached (network, timeout, throttling, not configured)."""


class ProviderRefused(Exception):
    """The KMS answered and refused: key disabled or missing, access denied, bad blob."""


@dataclass(frozen=True, slots=True)
class KeyContext:
    """The index a wrapped key belongs to; providers bind every wrap to it."""

    index_id: int
    tenant: str
    index_name: str

    def encryption_context(self) -> dict[str, str]:
        """The AWS KMS EncryptionContext (also stored beside the blob, for the DBA)."""
        return {
            "ciphervec:index_id": str(self.index_id),
            "ciphervec:index": f"{self.tenant}/{self.index_name}",
        }


class Provider(Protocol):
    """Wraps and unwraps data keys; both calls may block."""

    name: str
    kind: str
    key_id: str

    def wrap(self, dek: bytes, context: KeyContext) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: KeyContext) -> bytes: ...


class LocalEntry(BaseModel):
    """`provider: local`: a master key in a file or an environment variable."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["local"]
    key_id: str = Field(min_length=1, max_length=200)
    key_file: Path | None = None
    key_env: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> LocalEntry:
        if (self.key_file is None) == (self.key_env is None):
            raise ValueError("a local KMS entry needs exactly one of key_file or key_env")
        return self


class AwsEntry(BaseModel):
    """`provider: aws`: AWS KMS through boto3 (credentials from the usual AWS chain)."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["aws"]
    key_id: str = Field(min_length=1, max_length=2048)
    region: str = Field(min_length=1)
    endpoint_url: str | None = None
    connect_timeout_s: float = Field(default=2.0, gt=0)
    read_timeout_s: float = Field(default=5.0, gt=0)


KmsEntry = Annotated[LocalEntry | AwsEntry, Field(discriminator="provider")]


class KmsRegistryConfig(BaseModel):
    """`kms.registry.<name>` of the YAML file named by CIPHERVEC_KMS_CONFIG."""

    model_config = ConfigDict(extra="forbid")

    registry: dict[str, KmsEntry] = {}


class KmsConfigFile(BaseModel):
    """The whole YAML file: a `kms:` section and nothing else."""

    model_config = ConfigDict(extra="forbid")

    kms: KmsRegistryConfig = KmsRegistryConfig()


def _decode_master_key(raw: bytes, source: str) -> bytes:
    if len(raw) == KEY_BYTES:
        return raw
    text = raw.strip()
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise ProviderUnavailable(
            f"master key from {source} must be 32 raw bytes or 64 hex characters"
        )
    return key


class LocalProvider:
    """AES-256-GCM under a master key that the service reads when it needs it.

    The key is re-read on each (uncached) call rather than held, so replacing
    the file or variable takes effect without a restart.
    """

    kind = "local"

    def __init__(self, name: str, entry: LocalEntry) -> None:
        self.name = name
        self.key_id = entry.key_id
        self._entry = entry

    def _master_key(self) -> bytes:
        entry = self._entry
        if entry.key_file is not None:
            try:
                return _decode_master_key(entry.key_file.read_bytes(), f"file {entry.key_file}")
            except OSError as exc:
                raise ProviderUnavailable(
                    f"cannot read master key file {entry.key_file}: {exc.strerror}"
                ) from exc
        value = os.environ.get(entry.key_env or "")
        if not value:
            raise ProviderUnavailable(f"environment variable {entry.key_env} is not set")
        return _decode_master_key(value.encode(), f"${entry.key_env}")

    def wrap(self, dek: bytes, context: KeyContext) -> bytes:
        return wrap_data_key(self._master_key(), dek, context.index_id)

    def unwrap(self, wrapped: bytes, context: KeyContext) -> bytes:
        try:
            return unwrap_data_key(self._master_key(), wrapped, context.index_id)
        except KeyUnwrapFailed as exc:
            raise ProviderRefused(f"master key '{self.key_id}' does not open this key") from exc


class AwsProvider:
    """AWS KMS Encrypt/Decrypt; the 32-byte DEK is small enough for Encrypt directly."""

    kind = "aws"

    def __init__(self, name: str, entry: AwsEntry) -> None:
        self.name = name
        self.key_id = entry.key_id
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:
            raise KmsConfigError(
                f"KMS entry '{name}' needs boto3: pip install 'ciphervec[kms-aws]'"
            ) from exc
        # Built once, here: creating clients from several threads at once is not
        # safe in boto3, while one client is safe to share between threads.
        # One attempt with short timeouts: the client gets a 503 with
        # Retry-After promptly instead of a request hanging on retries.
        self._client: Any = boto3.session.Session().client(
            "kms",
            region_name=entry.region,
            endpoint_url=entry.endpoint_url,
            config=Config(
                connect_timeout=entry.connect_timeout_s,
                read_timeout=entry.read_timeout_s,
                retries={"max_attempts": 1, "mode": "standard"},
            ),
        )

    def wrap(self, dek: bytes, context: KeyContext) -> bytes:
        def call() -> bytes:
            response = self._client.encrypt(
                KeyId=self.key_id, Plaintext=dek,
                EncryptionContext=context.encryption_context(),
            )
            return bytes(response["CiphertextBlob"])

        return _aws_call(call)

    def unwrap(self, wrapped: bytes, context: KeyContext) -> bytes:
        def call() -> bytes:
            response = self._client.decrypt(
                KeyId=self.key_id, CiphertextBlob=wrapped,
                EncryptionContext=context.encryption_context(),
            )
            return bytes(response["Plaintext"])

        dek = _aws_call(call)
        if len(dek) != KEY_BYTES:
            raise ProviderRefused("KMS returned a key of the wrong length")
        return dek


# Error codes after which trying again later can succeed.
_TRANSIENT_CODES = frozenset({
    "ThrottlingException", "KMSInternalException", "DependencyTimeoutException",
    "ServiceUnavailable", "InternalFailure", "RequestLimitExceeded",
})


def _aws_call(call: Callable[[], bytes]) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        result: bytes = call()
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
        if code in _TRANSIENT_CODES:
            raise ProviderUnavailable(f"AWS KMS is unavailable ({code})") from exc
        raise ProviderRefused(f"AWS KMS refused the request ({code})") from exc
    except NoCredentialsError as exc:
        raise ProviderRefused("no AWS credentials are configured for the KMS") from exc
    except BotoCoreError as exc:
        raise ProviderUnavailable(f"AWS KMS cannot be reached ({type(exc).__name__})") from exc
    return result


def build_provider(name: str, entry: LocalEntry | AwsEntry) -> Provider:
    """The provider for one registry entry."""
    if isinstance(entry, LocalEntry):
        return LocalProvider(name, entry)
    return AwsProvider(name, entry)
